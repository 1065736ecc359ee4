"""The class-list experiment spec: URL round trip, tampered links, prompts from the template table, validation,
stacking, and prompt embeddings kept in the disk cache."""

import hashlib

import numpy as np
import pytest

from core.analysis.classes import (
    BACKGROUND_BLOCK,
    CLASS_LEXICON,
    CLASS_LIST_PARAMS,
    CLASS_TEMPLATES,
    IMAGENETTE_CLASSES,
    PLACES365_BACKGROUNDS,
    WORDNET_IMAGENETTE,
    ClassData,
    ClassListData,
    ClassListSpec,
    background_for,
    default_classes,
    format_user_lexicon,
    parse_user_lexicon,
    prompt_ensemble,
    prompt_for,
    validate_spec,
)
from core.analysis.diversity import ImageSet
from core.pipeline.registry import GENERATORS, TINY_RANDOM


def spec(**kw):
    values = dict(classes=("tench", "church"), source="folder:imagenette224", n=6, n_natural=10,
                  generator=TINY_RANDOM, clip=TINY_RANDOM)
    return ClassListSpec(**{**values, **kw})


def test_params_round_trip():
    s = spec(template="hypernym", first_seed=7)
    parsed, problems = ClassListSpec.from_params(s.to_params())
    assert parsed == s and problems == []
    assert set(s.to_params()) == {p.name for p in CLASS_LIST_PARAMS if not p.optional}


def test_no_classes_parameter_means_no_experiment_yet():
    assert ClassListSpec.from_params({"n": "4"}) == (None, [])


def test_tampered_params_get_sentences_and_defaults():
    parsed, problems = ClassListSpec.from_params({"classes": "tench,,tench, church ", "n": "lots", "n_nat": "1e3",
                                                  "generator": "nope", "clip": "bad", "template": "???"})
    assert parsed.classes == ("tench", "church")  # blanks dropped, duplicates once, spaces trimmed
    text = " ".join(problems)
    for fragment in ("'n'", "'n_nat'", "'generator' is 'nope'", "unknown CLIP model 'bad'", "template '???'"):
        assert fragment in text, fragment
    assert parsed.generator == ClassListSpec.generator and parsed.template == "photo"


def test_prompts_from_each_template():
    assert prompt_for("golf_ball", "photo") == ("a photo of a golf ball", False)
    assert prompt_for("golf_ball", "name") == ("golf ball", False)
    assert prompt_for("tench", "hypernym") == ("a photo of a tench, a type of fish", False)
    assert prompt_for("tench", "definition") == ("a photo of a tench, a freshwater fish of the carp family", False)


def test_unknown_classes_fall_back_to_the_plain_template():
    assert prompt_for("axolotl", "hypernym") == ("a photo of a axolotl", True)
    assert prompt_for("axolotl", "name") == ("axolotl", False)  # needs no lexicon entry
    s = spec(classes=("tench", "axolotl"), template="definition")
    assert s.fallback_classes() == ["axolotl"]
    assert s.prompts()["axolotl"] == "a photo of a axolotl"


def test_the_lexicon_covers_imagenette_and_every_template_has_a_class_slot():
    assert set(IMAGENETTE_CLASSES) <= set(CLASS_LEXICON)
    assert all("{class}" in t.pattern and "{class}" in t.fallback for t in CLASS_TEMPLATES.values())


def test_requests_one_per_class_with_preset_defaults():
    reqs = spec(first_seed=3).requests()
    preset = GENERATORS[TINY_RANDOM]
    assert [r.prompt for r in reqs] == ["a photo of a tench", "a photo of a church"]
    assert all(r.n == 6 and r.first_seed == 3 and r.steps == preset.default_steps and r.size == preset.default_size
               for r in reqs)


@pytest.mark.parametrize("kw,fragment", [
    (dict(classes=()), "Choose at least 1 class"),
    (dict(n=1), "a class with one image"),
    (dict(n=10_000), "between 2 and"),
    (dict(n_natural=1), "Natural photos per class"),
    (dict(classes=("tench", "unicorn")), "no class 'unicorn'"),
    (dict(first_seed=-1), "first seed"),
])
def test_validation_says_what_to_change(kw, fragment):
    problems = validate_spec(spec(**kw), ["tench", "church"])
    assert any(fragment in p for p in problems), problems


def test_validation_passes_a_good_spec_and_counts_classes():
    assert validate_spec(spec(), ["tench", "church"]) == []
    assert any("at least 2 classes" in p for p in validate_spec(spec(classes=("tench",)), None, min_classes=2))


def test_default_classes():
    assert default_classes(sorted(IMAGENETTE_CLASSES) + ["extra"]) == IMAGENETTE_CLASSES
    assert default_classes([f"c{i}" for i in range(12)]) == tuple(f"c{i}" for i in range(10))


def test_experiment_stacks_sources_in_class_order():
    def image_set(n):
        return ImageSet("synthetic", [str(i) for i in range(n)], [str(i) for i in range(n)], [None] * n, [None] * n)

    rng = np.random.default_rng(0)
    classes = [ClassData(name, name, image_set(n), image_set(m), rng.normal(size=(n, 4)), rng.normal(size=(m, 4)),
                         rng.normal(size=4)) for name, n, m in (("a", 2, 3), ("b", 4, 5))]
    exp = ClassListData(spec(), classes)
    x, y = exp.stacked("synthetic")
    assert x.shape == (6, 4) and list(y) == [0, 0, 1, 1, 1, 1]
    x, y = exp.stacked("natural")
    assert x.shape == (8, 4) and list(y) == [0, 0, 0, 1, 1, 1, 1, 1]
    assert exp.texts().shape == (2, 4) and exp.names == ["a", "b"]
    assert exp.counts()[1] == {"class": "b", "prompt": "b", "synthetic images": 4, "natural photos": 5}


def test_text_embeddings_are_cached_and_never_collide_with_images(tmp_path, tiny_clip, counted_clip):
    from core.pipeline.cache import Cache
    from core.pipeline.embed import embed_texts, text_embeddings, text_key

    cache = Cache(tmp_path)
    get_clip = counted_clip

    prompts = ["a photo of a tench", "a photo of a church"]
    first = text_embeddings(cache, tiny_clip.key, prompts, get_clip)
    second = text_embeddings(cache, tiny_clip.key, prompts[::-1], get_clip)
    assert np.allclose(first, embed_texts(tiny_clip, prompts), atol=1e-6)
    assert np.array_equal(second, first[::-1]) and get_clip.loads == 1
    assert len(text_key("x")) == 64 and text_key("x") != hashlib.sha256(b"x").hexdigest()


def _embedding_keys(cache) -> list[str]:
    with cache._connect() as db:
        return sorted(k for (k,) in db.execute("SELECT image_sha256 FROM embeddings"))


def test_a_prompt_embedded_by_the_class_pages_and_by_zero_shot_is_stored_once(tmp_path, tiny_clip):
    """One home for a text's embedding: the Synthetic vs natural pages (a class prompt) and the zero-shot pages
    (class vectors from templates) reach the same row, so the second path needs no CLIP model."""
    from core.analysis.zeroshot import class_vectors
    from core.pipeline.cache import Cache
    from core.pipeline.embed import text_embeddings, text_key

    cache = Cache(tmp_path)
    prompt = "a photo of a tench."
    text_embeddings(cache, tiny_clip.key, [prompt], lambda: tiny_clip)
    assert _embedding_keys(cache) == [text_key(prompt)]

    def no_clip():
        raise AssertionError("the text was cached: no CLIP model needed")

    class_vectors(cache, tiny_clip.key, ["tench"], no_clip, templates=("a photo of a {}.",))
    assert _embedding_keys(cache) == [text_key(prompt)]


def test_a_text_cached_under_the_old_class_page_key_is_still_read(tmp_path, tiny_clip):
    from core.pipeline.cache import Cache
    from core.pipeline.embed import embed_texts, legacy_text_key, text_embeddings

    cache = Cache(tmp_path)
    prompt = "a photo of a church"
    vector = embed_texts(tiny_clip, [prompt])[0]
    cache.put_embeddings(tiny_clip.key, {legacy_text_key(prompt): vector})
    assert legacy_text_key(prompt) == "text:" + hashlib.sha256(prompt.encode()).hexdigest()

    def no_clip():
        raise AssertionError("the old row answers: no CLIP model needed")

    assert np.array_equal(text_embeddings(cache, tiny_clip.key, [prompt], no_clip)[0], vector)


# -- Sariyildiz et al. 2023's templates, WordNet data, backgrounds, the user's lexicon ------------------------------

@pytest.mark.parametrize("name,template,expected", [
    ("tench", "name", "tench"),
    ("tench", "wn-hypernym", "tench, cyprinid"),
    ("english_springer", "wn-hypernym", "english springer, springer spaniel"),
    ("church", "wn-hypernym", "church, place of worship"),
    ("golf_ball", "wn-hypernym", "golf ball, ball"),
    ("church", "wn-definition", "church, a place for public (especially Christian) worship"),
    ("garbage_truck", "wn-definition", "garbage truck, a truck for collecting domestic refuse"),
    ("chain_saw", "wn-definition", "chain saw, portable power saw; teeth linked to form an endless chain"),
    ("parachute", "wn-hypernym", "parachute, rescue equipment"),
])
def test_sariyildiz_templates_golden_strings(name, template, expected):
    assert prompt_for(name, template) == (expected, False)


def test_background_template_and_its_seed_blocks():
    assert prompt_for("french_horn", "wn-background", background="kitchen") == (
        "french horn, brass inside kitchen", False)
    assert PLACES365_BACKGROUNDS[:2] == ("airfield", "alley") and BACKGROUND_BLOCK == 4
    s = spec(template="wn-background", n=7, first_seed=2)
    (name, reqs), _ = s.class_requests()
    assert name == "tench"
    assert [(r.prompt, r.first_seed, r.n) for r in reqs] == [("tench, cyprinid inside airfield", 2, 2),
                                                              ("tench, cyprinid inside alley", 4, 4),
                                                              ("tench, cyprinid inside beach", 8, 1)]
    assert s.prompts()["tench"] == "tench, cyprinid inside <Places365 scene>"
    assert background_for(4 * len(PLACES365_BACKGROUNDS)) == "airfield"  # the list cycles
    assert len(s.requests()) == 6  # 2 classes x 3 blocks


def test_wordnet_table_matches_imagenette_ids(real_imagenette_dir):
    """Against the real Imagenette labels.csv (ImageNet's own WordNet ids), not a folder the tests generated."""
    import csv

    imagenette_dir = real_imagenette_dir
    with open(imagenette_dir / "labels.csv") as f:
        wnids = {row["class_name"]: row["wnid"] for row in csv.DictReader(f)}
    assert {name: e.wnid for name, e in WORDNET_IMAGENETTE.items()} == wnids
    assert all(len(e.hypernym_offset) == 8 and e.hypernym and e.definition for e in WORDNET_IMAGENETTE.values())
    assert not any('"' in e.definition for e in WORDNET_IMAGENETTE.values())  # examples stripped, as NLTK does


def test_unknown_classes_fall_back_visibly_and_user_entries_fill_them():
    assert prompt_for("axolotl", "wn-hypernym") == ("axolotl", True)
    assert prompt_for("axolotl", "wn-background", background="beach") == ("axolotl inside beach", True)
    lexicon, problems = parse_user_lexicon("# mine\naxolotl: salamander | a larval salamander of Mexican lakes\n\n"
                                           "Tench: carp\nno colon here\naxolotl: again\nempty:\n")
    assert lexicon == (("axolotl", "salamander", "a larval salamander of Mexican lakes"), ("Tench", "carp", ""))
    assert len(problems) == 3 and "Line 5" in problems[0] and "repeats 'axolotl'" in problems[1]
    assert prompt_for("axolotl", "wn-hypernym", lexicon) == ("axolotl, salamander", False)
    assert prompt_for("axolotl", "hypernym", lexicon) == ("a photo of a axolotl, a type of salamander", False)
    assert prompt_for("tench", "wn-hypernym", lexicon) == ("tench, carp", False)  # the user's entry comes first
    assert prompt_for("tench", "wn-definition", lexicon) == ("tench", True)  # a hypernym alone: no definition
    s = spec(classes=("tench", "axolotl"), template="wn-definition", lexicon=lexicon)
    assert s.fallback_classes() == ["tench"]
    assert format_user_lexicon(lexicon).splitlines()[1] == "Tench: carp"


def test_optional_params_round_trip_and_stay_out_of_old_links():
    s = spec(template="wn-background", steps=50, guidance=2.0, generator="sd-1.5",
             lexicon=(("axolotl", "salamander", "a larval salamander"),))
    params = s.to_params()
    assert {"steps", "guidance", "lex"} <= set(params) and params["guidance"] == "2"
    assert ClassListSpec.from_params(params) == (s, [])
    assert not set(spec().to_params()) & {p.name for p in CLASS_LIST_PARAMS if p.optional}
    parsed, problems = ClassListSpec.from_params({**spec().to_params(), "steps": "x", "guidance": "nan",
                                                  "lex": "{not json"})
    assert parsed.steps is None and parsed.guidance is None and len(problems) == 3


def test_steps_and_guidance_reach_the_requests_and_are_validated():
    reqs = spec(generator="sd-1.5", steps=50, guidance=2.0).requests()
    assert all(r.steps == 50 and r.guidance == 2.0 for r in reqs)
    assert any("ignores classifier-free guidance" in p
               for p in validate_spec(spec(generator="sd-turbo", guidance=2.0)))
    assert any("takes 1 to 4 steps" in p for p in validate_spec(spec(generator="sd-turbo", steps=50)))


def test_prompt_ensemble_is_the_normalised_mean():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert np.allclose(prompt_ensemble(vectors), [2 ** -0.5, 2 ** -0.5])
