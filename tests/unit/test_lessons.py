"""core.present.lessons: the lesson registry's properties, "Try it yourself" links parsed by each full page's own
parser, natural-source choice, and the two helpers (recognition shares, prompt closeness) on constructed embeddings
whose answers are known."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.analysis.adherence import parse_classes
from core.analysis.ambiguity import AmbiguityRequest, validate_ambiguity
from core.analysis.classes import ClassListSpec, validate_spec
from core.analysis.geometry import source_geometry
from core.pipeline.generate import RunRequest, validate_request
from core.pipeline.natural import NaturalFolder
from core.pipeline.registry import GENERATORS, TINY_RANDOM
from core.present.lessons import (
    FROM_PAPER,
    LAB_CHOICE,
    LESSONS,
    TRY_IT_BUILDERS,
    YOUR_CHOICE,
    LessonExperiment,
    closeness_reading,
    closeness_rows,
    pick_natural_source,
    recognition_reading,
    recognition_rows,
    settings_table,
    summary_text,
    try_it_params,
    weakest_class,
)

REPO = Path(__file__).resolve().parents[2]
SOURCE = "folder:imagenette224"
MODELS = [None, (TINY_RANDOM, TINY_RANDOM)]  # the lessons' own real models, and the offline test models


def experiment(lesson, models) -> LessonExperiment:
    return lesson.experiment if models is None else lesson.experiment.with_models(*models)


# -- the registry ------------------------------------------------------------------------------------------------------
def test_five_lessons_in_the_papers_order_each_with_its_own_page_registered_in_home():
    home = (REPO / "Home.py").read_text()
    assert [lesson.number for lesson in LESSONS.values()] == [1, 2, 3, 4, 5]
    assert [lesson.finding for lesson in LESSONS.values()] == [
        "Ambiguity", "Adherence to prompt", "Lack of diversity", "Inability to represent the concept",
        "Geometry of CLIP embeddings"]
    for key, lesson in LESSONS.items():
        assert lesson.key == key and (REPO / lesson.page).is_file(), lesson.page
        assert f'st.Page("{lesson.page}"' in home and f'url_path="{lesson.url_path}"' in home
        assert f'app.lessons.show("{key}")' in (REPO / lesson.page).read_text()
        assert (REPO / lesson.full_page).is_file() and f'st.Page("{lesson.full_page}"' in home


@pytest.mark.parametrize("key", list(LESSONS))
def test_a_lesson_asks_one_question_and_gives_two_or_three_things_to_look_for(key):
    lesson = LESSONS[key]
    assert lesson.question.endswith("?") and lesson.question.count("?") == 1
    assert not re.search(r"[.!;]\s", lesson.question), "one sentence"
    assert 2 <= len(lesson.look_for) <= 3 and all(b.strip() and len(b) < 260 for b in lesson.look_for)
    assert lesson.chart_title and lesson.try_it in TRY_IT_BUILDERS
    # Small enough for a live demo: at most ~24 images per click with the real model.
    assert 1 <= sum(r.n for r in lesson.experiment.requests(SOURCE)) <= 24


@pytest.mark.parametrize("models", MODELS)
@pytest.mark.parametrize("key", list(LESSONS))
def test_every_lesson_experiment_validates(key, models, imagenette_dir):
    exp = experiment(LESSONS[key], models)
    available = NaturalFolder(imagenette_dir).classes()
    assert exp.problems(available) == []
    assert set(exp.natural_classes()) <= set(available)
    assert all(r.generator == exp.generator and r.clip == exp.clip for r in exp.requests(SOURCE))


def test_an_experiment_that_cannot_run_says_what_to_change():
    base = LESSONS["diversity"].experiment
    assert "N must be between" in " ".join(replace(base, n=0).problems())
    assert "Unknown generator" in replace(base, generator="nope").problems()[0]
    assert "Unknown CLIP" in replace(base, clip="nope").problems()[0]
    concept = LESSONS["concept"].experiment
    assert "missing: tench" in " ".join(replace(concept, candidates=("church", "golf_ball")).problems())
    assert "no class 'unicorn'" in " ".join(replace(concept, classes=("unicorn",)).problems(["tench"]))


# -- "Try it yourself": the full page's own parser accepts the link, and it names the lesson's runs -------------------
def _parse(page: str, params: dict[str, str], available: list[str]) -> tuple[list[RunRequest], list[str]]:
    """(the runs the full page will show, problems) exactly as that page reads its URL."""
    if page == "pages/ambiguity.py":
        req, problems = AmbiguityRequest.from_params(params)
        preset = GENERATORS[req.run.generator]
        req = replace(req, run=req.run.with_preset_defaults(preset))
        return req.run_requests(), problems + validate_request(req.run, preset) + validate_ambiguity(req)
    if page in ("pages/adherence.py", "pages/diversity.py"):
        req, problems = RunRequest.from_params(params)
        preset = GENERATORS[req.generator]
        req = req.with_preset_defaults(preset)
        problems += validate_request(req, preset)
        if params.get("ref_class") not in available:
            problems.append(f"ref_class {params.get('ref_class')!r} is not a class of the natural folder")
        if "classes" in params:  # the Adherence page's confusable classes
            names, class_problems = parse_classes(params["classes"])
            problems += class_problems + ([] if params.get("intended") in names else ["intended not in classes"])
        return [req], problems
    spec, problems = ClassListSpec.from_params(params)
    return spec.requests(), problems + validate_spec(spec, available)


@pytest.mark.parametrize("models", MODELS)
@pytest.mark.parametrize("key", list(LESSONS))
def test_try_it_parses_with_the_full_pages_parser_and_opens_the_same_runs(key, models, imagenette_dir):
    lesson = LESSONS[key]
    exp = experiment(lesson, models)
    available = NaturalFolder(imagenette_dir).classes()
    params = try_it_params(lesson, exp, SOURCE)
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in params.items()), params
    runs, problems = _parse(lesson.full_page, params, available)
    assert problems == []
    if lesson.try_it == "one class among candidates":  # the full page shows one class of the lesson's list
        assert runs == exp.requests(SOURCE)[:1]
    else:  # the same runs: the full page reopens the lesson's images from the cache
        assert runs == exp.requests(SOURCE)
    if "ref" in params or lesson.full_page.endswith(("clip_geometry.py",)):
        assert params["ref"] == SOURCE


def test_the_concept_link_opens_the_class_asked_for_with_every_candidate_name():
    lesson = LESSONS["concept"]
    params = try_it_params(lesson, lesson.experiment, SOURCE, focus="french_horn")
    assert params["prompt"] == "a photo of a french horn" and params["ref_class"] == "french_horn"
    assert params["intended"] == "french horn"
    assert parse_classes(params["classes"])[0] == [c.replace("_", " ") for c in lesson.experiment.candidates]
    assert try_it_params(lesson, lesson.experiment, SOURCE, focus="unicorn")["ref_class"] == "tench"  # first class


# -- settings and their origins ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(LESSONS))
def test_settings_say_where_each_comes_from(key):
    lesson = LESSONS[key]
    rows = settings_table(lesson, lesson.experiment, "Imagenette")
    assert [r.name for r in rows if r.origin == FROM_PAPER] == ["Finding"]
    assert "2311.00056" in rows[0].value and lesson.finding in rows[0].value
    assert {r.origin for r in rows} == {FROM_PAPER, LAB_CHOICE}
    by_name = {r.name: r.value for r in rows}
    exp = lesson.experiment
    assert by_name["Images"] == f"{exp.n} per prompt, seeds 0-{exp.n - 1}"
    assert "SD-Turbo" in by_name["Generator"] and "2 steps" in by_name["Generator"] and "512 px" in by_name["Generator"]
    assert ("Natural photos" in by_name) == bool(exp.natural_classes())
    chosen = settings_table(lesson, exp.with_models(TINY_RANDOM, TINY_RANDOM), "", models_chosen=True)
    assert {r.name: r.origin for r in chosen}["Generator"] == YOUR_CHOICE
    assert "64 px" in {r.name: r.value for r in chosen}["Generator"]
    assert "{" not in summary_text(lesson, exp) and str(exp.n) in summary_text(lesson, exp)


# -- natural photos: which source --------------------------------------------------------------------------------------
def test_natural_source_prefers_the_links_then_the_first_that_has_every_class():
    available = {"imagenette": [], "folder:a": ["tench"], "folder:b": ["tench", "church"], "uploads": []}
    assert pick_natural_source(available, ["tench", "church"]) == ("folder:b", [])
    assert pick_natural_source(available, ["tench"]) == ("folder:a", [])
    assert pick_natural_source(available, ["tench"], "folder:b") == ("folder:b", [])
    source, problems = pick_natural_source(available, ["tench", "church"], "folder:a")
    assert source == "folder:b" and "lacks church" in problems[0] and "using 'folder:b'" in problems[0]
    source, problems = pick_natural_source(available, ["tench"], "folder:nowhere")
    assert source == "folder:a" and "not configured" in problems[0]
    assert pick_natural_source(available, ["parachute"]) == (None, [])


# -- lesson 4: recognition among class names (constructed embeddings) --------------------------------------------------
def _unit(*rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


E = np.eye(4)  # four candidate class vectors, orthonormal


def test_recognition_counts_top1_among_the_candidates_per_class_and_source():
    candidates = ("tench", "church", "chain_saw", "golf_ball")
    classes = ("tench", "chain_saw")
    syn = [_unit(E[0], E[1], E[0] + 0.1 * E[3]), _unit(E[1], E[1])]  # tench 2 of 3 right; chain saw drawn as church
    nat = [_unit(E[0], E[0]), _unit(E[2], E[2] + 0.2 * E[0])]  # every photo right
    rows = recognition_rows(classes, {"synthetic": syn, "natural": nat}, E, candidates)
    got = {(r["class"], r["source"]): (r["value"], r["recognised"], r["n"]) for _, r in rows.iterrows()}
    assert got == {("tench", "synthetic"): (pytest.approx(2 / 3), 2, 3), ("tench", "natural"): (1.0, 2, 2),
                   ("chain saw", "synthetic"): (0.0, 0, 2), ("chain saw", "natural"): (1.0, 2, 2)}
    assert weakest_class(rows) == "chain saw"
    text = recognition_reading(rows, len(candidates))
    assert text.startswith("CLIP names 2 of 5 generated images (40%) and 4 of 4 real photos (100%) as their own "
                           "class among 4 class names (chance 25%).")
    assert "Furthest behind: 'chain saw', 0 of 2 generated vs 2 of 2 real." in text


def test_recognition_breaks_ties_in_the_intended_class_favour_and_names_no_laggard_when_none_lags():
    rows = recognition_rows(("tench",), {"synthetic": [_unit(E[0] + E[1])], "natural": [_unit(E[0])]}, E,
                            ("tench", "church", "chain_saw", "golf_ball"))
    assert list(rows["value"]) == [1.0, 1.0]  # a tie with another class still counts as recognised (rank 1)
    assert "Furthest behind" not in recognition_reading(rows, 4)


# -- lesson 5: closeness to the prompt ---------------------------------------------------------------------------------
def test_closeness_is_the_cosine_of_the_prompt_with_the_normalised_centroid_as_the_geometry_page_computes_it():
    texts = _unit(E[0], E[1])
    syn = [_unit(E[0], E[0] + E[2]), _unit(E[1], E[1])]  # class 0 a little off its prompt, class 1 on it
    nat = [_unit(E[2], E[0] + E[3]), _unit(E[3], E[1] + E[3])]
    rows = closeness_rows(("tench", "church"), {"synthetic": syn, "natural": nat}, texts)
    value = {(r["class"], r["source"]): r["value"] for _, r in rows.iterrows()}
    centroid = syn[0].mean(axis=0)
    assert value[("tench", "synthetic")] == pytest.approx(centroid[0] / np.linalg.norm(centroid))
    assert value[("church", "synthetic")] == pytest.approx(1.0)
    page = [e for e in source_geometry(nat[1], np.full(2, 1), texts) if e.name == "cos(prompt, centroid)"][0]
    church_nat = rows[(rows["class"] == "church") & (rows["source"] == "natural")].iloc[0]
    assert (church_nat["value"], church_nat["low"], church_nat["high"]) == (page.value, page.low, page.high)
    assert closeness_reading(rows).startswith("In 2 of 2 classes the generated images' centre sits closer")
