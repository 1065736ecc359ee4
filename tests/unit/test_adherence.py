"""Adherence analysis: CLIPScore (checked against torchmetrics' formula), confusable-class ranks and sweeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.analysis.adherence import (
    CONFUSABLE_SETS,
    MAX_SWEEP_POINTS,
    SCORE_NOTE,
    SWEEP_SETTINGS,
    Sweep,
    guess_class,
    parse_classes,
    parse_sweep_values,
    rank_estimates,
    rank_rows,
    score_reading,
    score_rows,
    sweep_point,
    sweep_requests,
    sweep_rows,
    sweep_title,
)
from core.analysis.stats import Estimate
from core.analysis.zeroshot import CLIPSCORE_WEIGHT, clip_scores, mean_estimate, ranks
from core.pipeline.generate import RunRequest
from core.pipeline.natural import IMAGENETTE_WNIDS
from core.pipeline.registry import GENERATORS, TINY_RANDOM
from core.present.charts import HISTOGRAM_TITLE, rank_chart, score_histogram, sweep_chart


def torchmetrics_clip_score(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """torchmetrics.functional.multimodal.clip_score after feature extraction (torchmetrics is not a dependency):
    normalise both, 100 * the dot product, mean over the batch, clamp at 0."""
    image_features = image_features / image_features.norm(p=2, dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(p=2, dim=-1, keepdim=True)
    score = 100 * (image_features * text_features).sum(axis=-1)
    score = score.mean(0)
    return torch.max(score, torch.zeros_like(score))


# -- CLIPScore -------------------------------------------------------------------------------------------------------
def test_clipscore_agrees_with_the_torchmetrics_formula_at_the_stated_scale():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(12, 32)) * rng.uniform(0.1, 5, size=(12, 1))  # unnormalised, like raw CLIP features
    text = rng.normal(size=32) * 3.0
    ours = clip_scores(images, text)
    for i in range(len(images)):  # per image: torchmetrics on a batch of one
        reference = torchmetrics_clip_score(torch.tensor(images[i : i + 1]), torch.tensor(text[None]))
        assert ours[i] * 100 / CLIPSCORE_WEIGHT == pytest.approx(float(reference), abs=1e-9)
    positive = images[ours > 0]
    batch = torchmetrics_clip_score(torch.tensor(positive), torch.tensor(np.repeat(text[None], len(positive), 0)))
    assert clip_scores(positive, text).mean() * 40 == pytest.approx(float(batch), abs=1e-9)
    cos = images @ text / (np.linalg.norm(images, axis=1) * np.linalg.norm(text))
    assert np.allclose(ours, 2.5 * np.maximum(cos, 0))  # Hessel et al.'s definition
    assert (ours == 0).any() and (ours > 0).any()  # negative cosines are clamped per image
    assert "2.5 x max(cos" in SCORE_NOTE and "100 x" in SCORE_NOTE


def test_score_rows_list_the_least_adherent_first_with_both_scales():
    rows = score_rows({"synthetic": (["s0", "s1"], np.array([0.7, 0.2])), "natural": (["n0"], np.array([0.5]))})
    assert rows["label"].tolist() == ["s1", "n0", "s0"]
    assert rows["torchmetrics scale"].tolist() == pytest.approx([8.0, 20.0, 28.0])
    spec = score_histogram(rows).to_dict()
    assert spec["title"] == HISTOGRAM_TITLE and spec["layer"][0]["encoding"]["y"]["stack"] is None


def test_score_reading_is_honest_about_overlap():
    syn = Estimate("mean CLIPScore", 0.8, 0.78, 0.82, 16)
    assert "more closely" in score_reading(syn, Estimate("mean CLIPScore", 0.6, 0.55, 0.65, 16))
    assert "less than" in score_reading(syn, Estimate("mean CLIPScore", 0.9, 0.85, 0.95, 16))
    assert "overlap" in score_reading(syn, Estimate("mean CLIPScore", 0.81, 0.7, 0.9, 16))
    assert score_reading(syn, None).endswith("(n=16).")
    e = mean_estimate("m", np.array([0.1, 0.2, 0.3, 0.4]))
    assert e.value == pytest.approx(0.25) and e.low < 0.25 < e.high


# -- confusable-class rank ---------------------------------------------------------------------------------------------
def test_rank_of_the_intended_class_with_planted_embeddings():
    classes = np.eye(4)
    images = np.array([[0.9, 0.1, 0.0, 0.0],  # intended (0) first
                       [0.5, 0.8, 0.0, 0.0],  # second
                       [0.1, 0.7, 0.6, 0.3],  # last
                       [0.5, 0.5, 0.0, 0.0]])  # a tie counts in the intended class's favour
    r = ranks(images, classes, 0)
    assert r.tolist() == [1, 2, 4, 1]
    top1, mean_rank = rank_estimates(r)
    assert top1.value == pytest.approx(0.5) and 0 <= top1.low <= top1.high <= 1
    assert mean_rank.value == pytest.approx(2.0)
    rows = rank_rows({"synthetic": r}, 4)
    assert rows["share"].tolist() == pytest.approx([0.5, 0.25, 0, 0.25])
    assert rank_chart(rows).to_dict()["encoding"]["xOffset"]["field"] == "source"
    with pytest.raises(ValueError, match="not among"):
        ranks(images, classes, 7)


def test_class_lists_parse_and_the_prompt_names_its_class():
    names, problems = parse_classes("tench, golf_ball\ngolf ball, parachute,,")
    assert names == ["tench", "golf ball", "parachute"] and not problems
    assert "at least two" in parse_classes("tench")[1][0]
    assert guess_class("a photo of a tiger shark", ["shark", "tiger shark", "tench"]) == "tiger shark"
    assert guess_class("a photo of a cat", ["tench"]) is None
    assert set(CONFUSABLE_SETS["Imagenette classes"]) == set(IMAGENETTE_WNIDS.values())


# -- sweeps ----------------------------------------------------------------------------------------------------------
BASE = RunRequest("a photo of a tench", n=4, generator=TINY_RANDOM, clip=TINY_RANDOM).with_preset_defaults(
    GENERATORS[TINY_RANDOM])


def test_guidance_sweep_is_one_normal_request_per_value_with_the_same_prompt_and_seeds():
    values, problems = parse_sweep_values("guidance", SWEEP_SETTINGS["guidance"].default_values)
    assert values == [1.0, 2.0, 4.0, 7.5, 12.0] and not problems
    reqs, problems = sweep_requests(BASE, Sweep("guidance", tuple(values)))
    assert not problems and [r.guidance for r in reqs] == values
    assert {(r.prompt, tuple(r.seeds), r.generator, r.steps, r.size) for r in reqs} == {
        (BASE.prompt, (0, 1, 2, 3), TINY_RANDOM, 4, 64)}
    assert reqs[3] == BASE  # guidance 7.5 is the page's own run: the same cache entries


def test_guidance_sweep_is_refused_for_models_that_ignore_guidance():
    turbo = RunRequest("a photo of a tench", generator="sd-turbo").with_preset_defaults(GENERATORS["sd-turbo"])
    reqs, problems = sweep_requests(turbo, Sweep("guidance", (1.0, 7.5)))
    assert reqs == [] and "ignores classifier-free guidance" in problems[0]
    reqs, problems = sweep_requests(turbo, Sweep("steps", (1, 2, 4)))
    assert [r.steps for r in reqs] == [1, 2, 4] and not problems


def test_steps_and_model_sweeps_use_the_same_machinery():
    reqs, problems = sweep_requests(BASE, Sweep("steps", (2, 999)))
    assert reqs == [] and "steps 999" in problems[0]
    reqs, problems = sweep_requests(BASE, Sweep("generator", (TINY_RANDOM, "sd-turbo")))
    assert not problems and [r.generator for r in reqs] == [TINY_RANDOM, "sd-turbo"]
    assert (reqs[1].steps, reqs[1].guidance, reqs[1].size) == (2, 0.0, 512)  # each model at its own defaults
    assert reqs[0].seeds == reqs[1].seeds and reqs[0].prompt == reqs[1].prompt


def test_sweep_values_and_params_parse_with_teaching_messages():
    assert parse_sweep_values("guidance", "1, x, nan, 1")[0] == [1.0]
    assert parse_sweep_values("steps", "7.5")[1] == ["'7.5' is not a whole number."]
    assert "unknown model" in parse_sweep_values("generator", "sd-9")[1][0]
    assert "at least one" in parse_sweep_values("steps", " , ")[1][0]
    many = ", ".join(str(i) for i in range(1, MAX_SWEEP_POINTS + 2))
    assert "At most" in parse_sweep_values("steps", many)[1][0]
    sweep = Sweep("guidance", (1.0, 7.5, 12.0))
    assert sweep.to_params() == {"sweep": "guidance", "sweep_values": "1, 7.5, 12"}
    assert Sweep.from_params(sweep.to_params()) == (sweep, [])
    assert Sweep.from_params({}) == (None, [])
    none, problems = Sweep.from_params({"sweep": "temperature", "sweep_values": "1"})
    assert none is None and "temperature" in problems[0]
    partial, problems = Sweep.from_params({"sweep": "guidance", "sweep_values": "1, lots"})
    assert partial == Sweep("guidance", (1.0,)) and "lots" in problems[0]


def test_sweep_points_measure_adherence_and_diversity_with_intervals():
    rng = np.random.default_rng(0)
    orthonormal = np.eye(6, 16)
    same = np.repeat(orthonormal[:1], 6, axis=0)
    text = rng.normal(size=16)
    points = [sweep_point(x, clip_scores(x, text)) for x in (orthonormal, same)]
    assert [e.name for e in points[0]] == ["mean CLIPScore", "Vendi score", "mean pairwise cosine"]
    assert points[0][1].value == pytest.approx(6.0) and points[1][1].value == pytest.approx(1.0)
    assert points[0][2].value == pytest.approx(0.0) and points[1][2].value == pytest.approx(1.0)
    assert np.isnan(sweep_point(orthonormal[:1], np.ones(1))[1].value)
    rows = sweep_rows("guidance", [1.0, 12.0], points)
    assert len(rows) == 6 and set(rows.columns) >= {"guidance", "metric", "estimate", "95% low", "95% high"}
    spec = sweep_chart(rows, "guidance").to_dict()
    assert spec["title"] == sweep_title("guidance") == "Adherence and diversity against guidance"
    assert spec["spec"]["layer"][1]["encoding"]["x"]["type"] == "quantitative"
    model_rows = sweep_rows("generator", ["sd-1.5", "sd-turbo"], points)
    assert sweep_chart(model_rows, "generator").to_dict()["spec"]["layer"][1]["encoding"]["x"]["type"] == "nominal"
    assert json.dumps(spec).count("independent") == 1


def test_a_nan_image_is_refused_rather_than_counted_as_a_top1_success():
    images = np.array([[1.0, 0.0, 0.0], [np.nan, np.nan, np.nan]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        ranks(images, np.eye(3), intended=0)


def test_mean_clipscore_interval_stays_in_clipscores_range():
    from core.analysis.zeroshot import score_estimate

    e = score_estimate("mean CLIPScore", np.array([0.0, 0.0, 0.0, 0.4]))
    assert e.low == 0.0 and e.clipped == "[0, 2.5]" and "interval clipped to [0, 2.5]" in e.format()
