"""core.pipeline.sweep: plans checked before any work; a local Ray cluster (2 CPUs) runs a grid with the tiny models
into Parquet shards keyed and drawn exactly as the app draws them; a killed sweep resumes with nothing lost or
redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from suite import REPO_ROOT
from sweep_support import PLAN, sweep

from core.pipeline.sweep import MAX_ROWS_WITHOUT_YES, Plan, PlanError


def plan(**changes) -> dict:
    import tomllib

    return {**tomllib.loads(PLAN), **changes}


# -- 1. the plan is checked before any work ---------------------------------------------------------------------------
def test_a_plan_is_a_grid_of_prompts_generators_and_seeds():
    p = Plan.from_dict(plan(templates=["a photo of a {}", "{} in the wild"], prompts=["a red car"]))
    assert [prompt for _, prompt in p.prompts] == ["a red car", "a photo of a tench", "tench in the wild",
                                                   "a photo of a church", "church in the wild"]
    assert p.rows == 5 * 1 * 8 and p.clip == ("tiny-random",) and p.batch == 2
    assert Plan.from_dict(plan(classes=["golf_ball"])).prompts == (("golf_ball", "a photo of a golf ball"),)


@pytest.mark.parametrize("changes, message", [
    ({"classes": []}, "no 'classes' and no 'prompts'"),
    ({"seeds": {"first": -1, "count": 8}}, "seeds must be"),
    ({"seeds": {"first": 0, "count": 0}}, "seeds must be"),
    ({"clip": []}, "no 'clip' models"),
    ({"templates": ["a photo"]}, "has no '{}'"),
    ({"batch": 0}, "'batch' must be a whole number"),
    ({"generators": [{"steps": 2}]}, "needs a 'preset'"),
    ({"colour": "red"}, "Unknown setting 'colour'"),
])
def test_a_malformed_plan_is_refused_with_every_problem(changes, message):
    with pytest.raises(PlanError, match="The plan cannot run") as info:
        Plan.from_dict(plan(**changes))
    assert message in str(info.value)


def test_unknown_models_bad_ranges_and_huge_grids_are_refused_before_any_work():
    bad = Plan.from_dict(plan(clip=["ViT-Q-99"], generators=[{"preset": "tiny-random", "steps": 99}]))
    problems = " ".join(bad.problems())
    assert "Unknown CLIP model 'ViT-Q-99'" in problems and "takes 1 to 50 steps (got 99)" in problems
    assert "Generator 'no-such-model'" in " ".join(Plan.from_dict(plan(generators=[{"preset": "no-such-model"}]))
                                                   .problems())
    huge = Plan.from_dict(plan(seeds={"first": 0, "count": MAX_ROWS_WITHOUT_YES}))
    assert "Add --yes" in " ".join(huge.problems()) and huge.problems(yes=True) == []


def test_the_command_line_explains_a_bad_plan(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(PLAN.replace('clip = ["tiny-random"]', 'clip = ["ViT-Q-99"]'))
    out = subprocess.run([sys.executable, "-m", "core.pipeline.sweep", str(path), "--out", str(tmp_path / "out")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Unknown CLIP model 'ViT-Q-99'" in out.stderr
    assert not (tmp_path / "out").exists()  # nothing started


# -- 2. on a local Ray cluster ------------------------------------------------------------------------------------
def pixels(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def assert_same_pixels(pngs_a, pngs_b) -> None:
    """Within one 8-bit level: a seed drawn in a batch of another size moves by ~1e-6 before rounding (NOTES: "the
    same seed inside a different batch differs by ~1e-6"), which can flip a pixel's last level, never more."""
    for a, b in zip(pngs_a, pngs_b, strict=True):
        assert np.abs(pixels(a) - pixels(b)).max() <= 1


def read(out):
    import pandas as pd

    images = pd.read_parquet(out / "images").sort_values("key").reset_index(drop=True)
    embeddings = pd.read_parquet(out / "embeddings").drop_duplicates(["key", "clip_key"]).sort_values("key")
    return images, embeddings.reset_index(drop=True)


@pytest.fixture
def finished(finished_sweep):
    return finished_sweep


@pytest.mark.slow
def test_a_sweep_writes_the_apps_images_and_embeddings_as_shards(finished, cpu, tiny_pipe, tiny_clip, monkeypatch):
    from core.analysis.diversity import embed_set, synthetic_set
    from core.pipeline.cache import Cache
    from core.pipeline.engine import Engine
    from core.pipeline.generate import RunRequest
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    tmp, out, log = finished
    assert "plan: 16 images, 0 already in finished shards, 16 to make" in log and "generate: 16 images" in log
    images, embeddings = read(out)
    assert len(images) == 16 and images["key"].is_unique and len(embeddings) == 16
    assert sorted(images["seed"].tolist()) == sorted(list(range(8)) * 2)
    assert (out / "manifest.json").is_file() and (out / "settings.parquet").is_file()
    assert not (out / ".work").exists()  # the actors' scratch caches are gone
    import pandas as pd

    from core.pipeline.cache import THUMB_SIZE

    thumbs = pd.read_parquet(out / "thumbnails")
    assert set(thumbs["size"]) == {THUMB_SIZE} and set(thumbs["sha256"]) == set(images["sha256"])
    # Deterministic, and the app's: the engine in this process makes the same keys and the same PNG bytes.
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp / "cache"))
    app = Cache(tmp / "app-cache")
    requests = [RunRequest(f"a photo of a {c}", n=8, generator=TINY_RANDOM, clip=TINY_RANDOM)
                .with_preset_defaults(GENERATORS[TINY_RANDOM]) for c in ("tench", "church")]
    runs, _ = Engine(app, cpu, lambda folder: tiny_pipe).run(requests)
    mine = {im.key: im.path.read_bytes() for run in runs for im in run.images}
    assert set(mine) == set(images["key"])  # the same keys...
    assert_same_pixels([mine[k] for k in images["key"]], images["png"])  # ...and the same pixels
    # The embeddings equal what the app computes from the same images.
    ours = embed_set(app, tiny_clip.key, synthetic_set([im for run in runs for im in run.images]), lambda: tiny_clip)
    by_sha = {k: np.asarray(v) for k, v in zip(embeddings["key"], embeddings["vector"])}
    sha_of = dict(zip(images["key"], images["sha256"]))
    theirs = np.stack([by_sha[sha_of[im.key]] for run in runs for im in run.images])
    np.testing.assert_allclose(theirs, ours, atol=1e-3)  # within the pixels' last level
    assert set(embeddings["clip_key"]) == {tiny_clip.key}


@pytest.mark.slow
def test_a_killed_sweep_resumes_with_nothing_lost_and_nothing_done_twice(finished, tmp_path):
    _, uninterrupted, _ = finished
    out = tmp_path / "out"
    proc = sweep(tmp_path, out, wait=False)
    deadline = time.monotonic() + 300
    while not (list((out / "images").glob("*.parquet")) if (out / "images").is_dir() else []):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no shard was written in 5 minutes"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, the local cluster and its workers, mid-sweep
    proc.wait()
    partial = len(read(out)[0])
    assert 2 <= partial < 16
    log = sweep(tmp_path, out)
    assert f"{partial} already in finished shards, {16 - partial} to make" in log
    assert f"generate: {16 - partial} images" in log  # only the missing rows were made
    (images, embeddings), (expected, expected_emb) = read(out), read(uninterrupted)
    columns = ["key", "settings_key", "prompt", "seed"]
    assert images[columns].equals(expected[columns])  # every row once, keyed as an uninterrupted run keys it
    assert_same_pixels(images["png"], expected["png"])
    by_sha = dict(zip(embeddings["key"], embeddings["vector"]))
    expected_by_sha = dict(zip(expected_emb["key"], expected_emb["vector"]))
    mine = np.stack([by_sha[s] for s in images["sha256"]])
    theirs = np.stack([expected_by_sha[s] for s in expected["sha256"]])
    np.testing.assert_allclose(mine, theirs, atol=1e-3)
