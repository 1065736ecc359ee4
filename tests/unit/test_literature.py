"""The presets registry: every preset cites a complete source, every value it sets is valid for the form it fills
and has a stated origin, and applying a preset gives the published values."""

import dataclasses

import pytest

from core.analysis.bias import BiasSpec
from core.analysis.classes import CLASS_TEMPLATES, ClassListSpec, validate_spec
from core.pipeline.registry import CLIP_MODELS, GENERATORS, TINY_RANDOM
from core.present.literature import (
    CLASS_PAGES,
    ORIGIN_CODE,
    ORIGIN_LAB,
    ORIGIN_PAPER,
    PRESETS,
    SOURCES,
    matching_presets,
    presets_for,
)

# Which setting names a form value must be explained by (the UI lists them beside the citation).
EXPLAINED_BY = {"template": "prompt", "generator": "generator", "steps": "steps", "guidance": "guidance",
                "clip": "CLIP"}


def spec(**kw):
    return ClassListSpec(**{**dict(classes=("tench", "church"), source="folder:imagenette224", n=6, n_natural=10,
                                   generator=TINY_RANDOM, clip=TINY_RANDOM), **kw})


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_every_preset_is_cited_and_every_value_has_an_origin(key):
    preset = PRESETS[key]
    source = SOURCES[preset.source]
    citation = preset.citation()
    surname = source.authors.split(",")[0].split()[-1]
    for part in (surname, str(source.year), source.title, f"arXiv:{source.arxiv}", source.venue):
        assert part in citation, part
    assert preset.pages and preset.settings and preset.summary
    assert all(s.origin in (ORIGIN_PAPER, ORIGIN_CODE, ORIGIN_LAB) for s in preset.settings)
    names = " ".join(s.name for s in preset.settings)
    for field_name, _ in preset.form:
        assert EXPLAINED_BY[field_name] in names, (key, field_name)
    # A value the lab could not re-check is said so in its line; the lab's own choices are labelled as such.
    for s in preset.settings:
        if not s.checked and s.origin != ORIGIN_LAB:
            assert "not re-checked" in s.line()
        if s.origin == ORIGIN_LAB:
            assert "the lab's own choice" in s.line()


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_form_values_are_valid_for_the_form_they_fill(key):
    preset = PRESETS[key]
    target = BiasSpec if "stable_bias" in preset.pages else ClassListSpec
    fields = {f.name for f in dataclasses.fields(target)}
    for name, value in preset.form:
        assert name in fields, (key, name)
        if name == "template":
            assert value in CLASS_TEMPLATES
        if name == "generator":
            assert value in GENERATORS
        if name == "clip":
            assert value in CLIP_MODELS
    values = preset.form_values
    if "steps" in values:
        assert 1 <= values["steps"] <= GENERATORS[values["generator"]].max_steps
    if "guidance" in values:
        assert GENERATORS[values["generator"]].supports_guidance, "a guidance preset needs a model that uses it"


def test_when_pretty_isnt_useful_gives_the_published_generation_settings():
    preset = PRESETS["adamkiewicz2026"]
    applied = preset.apply(spec(n=8, first_seed=3))
    assert (applied.template, applied.steps, applied.guidance, applied.generator, applied.clip) == (
        "name", 50, 2.0, "sd-1.5", "ViT-B-32/laion2b")
    assert (applied.n, applied.first_seed, applied.classes) == (8, 3, ("tench", "church"))  # the user's stay
    assert validate_spec(applied) == []
    reqs = applied.requests()
    assert [r.prompt for r in reqs] == ["tench", "church"]
    assert all(r.steps == 50 and r.guidance == 2.0 and r.generator == "sd-1.5" for r in reqs)
    assert preset.differences(applied) == [] and preset.differences(spec()) == ["template", "generator", "steps",
                                                                                "guidance", "clip"]
    assert "sd-1.5" in applied.to_params()["generator"] and applied.to_params()["steps"] == "50"


def test_sariyildiz_presets_set_the_four_templates():
    templates = {k: p.form_values["template"] for k, p in PRESETS.items() if p.source == "sariyildiz2023"}
    assert templates == {"sariyildiz2023-c": "name", "sariyildiz2023-ch": "wn-hypernym",
                         "sariyildiz2023-cd": "wn-definition", "sariyildiz2023-chb": "wn-background"}
    prompts = {k: PRESETS[k].apply(spec()).requests()[0].prompt for k in templates}
    assert prompts == {"sariyildiz2023-c": "tench", "sariyildiz2023-ch": "tench, cyprinid",
                       "sariyildiz2023-cd": "tench, freshwater dace-like game fish of Europe and western Asia noted "
                                            "for ability to survive outside water",
                       "sariyildiz2023-chb": "tench, cyprinid inside airfield"}


def test_pages_offer_their_presets_and_links_find_their_citation():
    assert set(presets_for("synthetic_vs_natural")) == set(presets_for("clip_geometry")) == {
        "sariyildiz2023-c", "sariyildiz2023-ch", "sariyildiz2023-cd", "sariyildiz2023-chb", "adamkiewicz2026"}
    assert set(presets_for("train_on_synthetic")) == set(presets_for("clip_geometry")) | {"he2023"}
    assert set(presets_for("stable_bias")) == {"luccioni2023"}
    assert all(p in CLASS_PAGES or p == "stable_bias" for preset in PRESETS.values() for p in preset.pages)
    he = PRESETS["he2023"]
    assert he.page_values == {"cf": "on", "cf_t": ""} and he.form == ()
    applied = PRESETS["adamkiewicz2026"].apply(spec())
    assert [p.key for p in matching_presets(applied, "synthetic_vs_natural")] == ["sariyildiz2023-c",
                                                                                   "adamkiewicz2026"]
    assert matching_presets(spec(), "synthetic_vs_natural") == []
