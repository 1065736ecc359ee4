"""The class-list experiment spec: URL round trip, tampered links, prompts from the template table, validation,
stacking, and prompt embeddings kept in the disk cache."""

import numpy as np
import pytest

from core.classes import (
    CLASS_LEXICON,
    CLASS_TEMPLATES,
    IMAGENETTE_CLASSES,
    ClassData,
    ClassListSpec,
    Experiment,
    default_classes,
    prompt_for,
    text_cache_key,
    text_embeddings,
    validate_spec,
)
from core.diversity import ImageSet
from core.registry import GENERATORS, TINY_RANDOM


def spec(**kw):
    values = dict(classes=("tench", "church"), source="folder:imagenette224", n=6, n_natural=10,
                  generator=TINY_RANDOM, clip=TINY_RANDOM)
    return ClassListSpec(**{**values, **kw})


def test_params_round_trip():
    s = spec(template="hypernym", first_seed=7)
    parsed, problems = ClassListSpec.from_params(s.to_params())
    assert parsed == s and problems == []
    assert set(s.to_params()) == set(ClassListSpec.PARAMS)


def test_no_classes_parameter_means_no_experiment_yet():
    assert ClassListSpec.from_params({"n": "4"}) == (None, [])


def test_tampered_params_get_sentences_and_defaults():
    parsed, problems = ClassListSpec.from_params({"classes": "tench,,tench, church ", "n": "lots", "n_nat": "1e3",
                                                  "generator": "nope", "clip": "bad", "template": "???"})
    assert parsed.classes == ("tench", "church")  # blanks dropped, duplicates once, spaces trimmed
    text = " ".join(problems)
    for fragment in ("'n'", "'n_nat'", "unknown generator 'nope'", "unknown CLIP model 'bad'", "template '???'"):
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
    exp = Experiment(spec(), classes)
    x, y = exp.stacked("synthetic")
    assert x.shape == (6, 4) and list(y) == [0, 0, 1, 1, 1, 1]
    x, y = exp.stacked("natural")
    assert x.shape == (8, 4) and list(y) == [0, 0, 0, 1, 1, 1, 1, 1]
    assert exp.texts().shape == (2, 4) and exp.names == ["a", "b"]
    assert exp.counts()[1] == {"class": "b", "prompt": "b", "synthetic images": 4, "natural photos": 5}


def test_text_embeddings_are_cached_and_never_collide_with_images(tmp_path, tiny_clip):
    from core.cache import Cache
    from core.embed import embed_texts

    cache = Cache(tmp_path)
    loads = []

    def get_clip():
        loads.append(1)
        return tiny_clip

    prompts = ["a photo of a tench", "a photo of a church"]
    first = text_embeddings(cache, tiny_clip.key, prompts, get_clip)
    second = text_embeddings(cache, tiny_clip.key, prompts[::-1], get_clip)
    assert np.allclose(first, embed_texts(tiny_clip, prompts), atol=1e-6)
    assert np.array_equal(second, first[::-1]) and loads == [1]
    assert text_cache_key("x").startswith("text:") and len(text_cache_key("x")) == 5 + 64
