"""core.pipeline.engine: requests -> cached images and embeddings, the one path every page, command and benchmark
takes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from suite import REPO_ROOT

from core.analysis.diversity import embed_set, synthetic_set
from core.pipeline.cache import Cache
from core.pipeline.engine import Engine, Progress
from core.pipeline.generate import RunRequest, cached_images
from core.pipeline.models import ModelUnavailableError
from core.pipeline.registry import GENERATORS, TINY_RANDOM

TINY = GENERATORS[TINY_RANDOM]


def request(prompt: str = "a photo of a tench", n: int = 6, first_seed: int = 0) -> RunRequest:
    return RunRequest(prompt, n=n, generator=TINY_RANDOM, clip=TINY_RANDOM,
                      first_seed=first_seed).with_preset_defaults(TINY)


@pytest.fixture
def engine(tmp_path, monkeypatch, cpu, tiny_pipe, tiny_clip):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "cache"))  # where the tiny model folder is located
    loads = []
    eng = Engine(Cache(tmp_path / "cache"), cpu, lambda folder: loads.append(folder) or tiny_pipe,
                 load_clip=lambda key: tiny_clip, lock=threading.Lock())
    eng.loads = loads
    return eng


def test_run_generates_the_missing_images_and_embeds_them_from_memory(engine, tiny_clip):
    seen: list[Progress] = []
    (first,), totals = engine.run([request(n=6)], on_progress=seen.append)
    assert (totals.generated, totals.reused, totals.cancelled) == (6, 0, False)
    assert [im.seed for im in first.images] == list(range(6)) and first.missing == 0
    # Progress counts images in the cache: never backwards, and it ends at the total.
    assert [p.done for p in seen] == sorted(p.done for p in seen) and seen[-1].done == seen[-1].total == 6
    assert all(p.runs == 1 and 1 <= p.step <= p.steps for p in seen)
    # The fresh images were embedded from their pixels as they were committed: the page finds every vector, and
    # they equal what embedding the PNG files gives.
    images = synthetic_set(first.images)
    stored = engine.cache.get_embeddings(tiny_clip.key, images.shas)
    assert set(stored) == set(images.shas)
    again = embed_set(Cache(engine.cache.root / "fresh"), tiny_clip.key, images, lambda: tiny_clip)
    np.testing.assert_allclose(np.stack([stored[s] for s in images.shas]), again, atol=1e-5)


def test_more_images_and_several_requests_share_one_progress(engine):
    engine.run([request(n=2)])
    seen: list[Progress] = []
    runs, totals = engine.run([request(n=4), request("a photo of a church", n=2)], on_progress=seen.append)
    assert (totals.generated, totals.reused) == (4, 2)  # seeds 0-1 of the tench were cached
    assert [len(r.images) for r in runs] == [4, 2]
    assert {p.total for p in seen} == {6} and {p.run for p in seen} == {1, 2} and seen[-1].done == 6
    assert "run 2 of 2" in seen[-1].describe() and "6 of 6 images done" in seen[-1].describe()


def test_a_cached_run_reopens_without_loading_the_generator(engine):
    engine.run([request(n=3)])
    engine.loads.clear()
    plan = engine.plan([request(n=3)], generate=True)
    runs = engine.runs(plan)
    assert engine.generate(plan).generated == 0 and [len(r.images) for r in runs] == [3]
    assert engine.loads == []


def test_a_run_made_on_another_device_reopens_with_no_model_at_all(engine, monkeypatch):
    """A demo pack's images, made on a GPU: the recipe matches, nothing is located, loaded or generated."""
    from dataclasses import replace

    import core.pipeline.engine
    from core.pipeline.generate import resolve_settings

    req = request(n=2)
    gpu = replace(resolve_settings(req, _tiny_folder(), engine.device), device_type="cuda", dtype="bfloat16")
    # Put the "GPU" images in the cache as a pack import would: the same files under the other settings' keys.
    (local,), _ = engine.run([req])
    engine.cache.put_settings(gpu.key(), gpu.to_dict())
    engine.cache.put_images(gpu.key(), req.prompt, [(gpu.image_key(req.prompt, im.seed), im.seed,
                                                     im.path.read_bytes()) for im in local.images])
    for image in local.images:  # this machine's own images are gone: only the GPU's remain
        engine.cache._query("DELETE FROM images WHERE key=?", (image.key,))

    def unavailable(*args, **kwargs):
        raise ModelUnavailableError("no generator here")

    monkeypatch.setattr(core.pipeline.engine, "generator_present", lambda preset: False)
    monkeypatch.setattr(core.pipeline.engine, "locate_generator", unavailable)
    plan = engine.plan([req], generate=False)
    assert plan.to_generate == [] and plan.made_elsewhere(engine.device) == ["cuda (bfloat16)"]
    assert [im.seed for im in engine.runs(plan)[0].images] == [0, 1]


def _tiny_folder():
    from core.pipeline.config import cache_dir
    from core.pipeline.tiny import ensure_tiny_sd_folder

    return ensure_tiny_sd_folder(cache_dir() / "models")


def test_cancel_keeps_the_finished_batches(engine):
    seen: list[Progress] = []
    runs, totals = engine.run([request(n=8)], on_progress=seen.append,
                              should_cancel=lambda: bool(seen) and seen[-1].done >= 4)
    assert totals.cancelled and totals.generated == 4  # the CPU batch is 4: one batch committed, one dropped
    assert [im.seed for im in runs[0].images] == [0, 1, 2, 3]


def test_commits_overlap_the_next_batch(tmp_path, tiny_pipe, monkeypatch, cpu):
    """Batch k's PNG encoding and cache writes run while the pipeline computes batch k+1: a slow disk (each
    commit made to take 0.3 s) overlaps the pipeline call of the batch after it."""
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "cache"))
    cache = Cache(tmp_path / "cache")
    calls, commits = [], []
    put_images = cache.put_images

    def slow_put_images(*args, **kwargs):
        start = time.perf_counter()
        time.sleep(0.3)
        out = put_images(*args, **kwargs)
        commits.append((start, time.perf_counter(), threading.current_thread().name))
        return out

    def timed_pipe(**kwargs):
        start = time.perf_counter()
        out = tiny_pipe(**kwargs)
        calls.append((start, time.perf_counter()))
        return out

    cache.put_images = slow_put_images
    eng = Engine(cache, cpu, lambda folder: timed_pipe)
    (run,), totals = eng.run([request(n=12)])
    assert totals.generated == 12 and len(run.images) == 12 and len(calls) == len(commits) == 3
    assert all(name.startswith("ddl-commit") for *_, name in commits)  # never in the caller's thread
    for (c_start, c_end, _), (p_start, p_end) in zip(commits[:-1], calls[1:]):
        assert c_start < p_end and p_start < c_end  # commit k and pipeline call k+1 share time
    assert cache.verify().ok


def test_a_missing_clip_model_fails_the_run_before_any_image_is_made(tmp_path, tiny_pipe, cpu, monkeypatch):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "cache"))
    made = []

    def no_clip(key):
        raise ModelUnavailableError(f"CLIP '{key}' is not downloaded")

    eng = Engine(Cache(tmp_path / "cache"), cpu, lambda folder: lambda **kw: made.append(kw), load_clip=no_clip)
    with pytest.raises(ModelUnavailableError, match="CLIP 'tiny-random' is not downloaded"):
        eng.run([request(n=2)])
    assert made == [] and eng.cache.count_images() == 0


def test_generation_and_embedding_import_no_ui_or_chart_library():
    """bench.gpu and a scale-out worker run where streamlit and altair are not installed."""
    code = ("import sys, core.pipeline.engine, core.pipeline.generate, core.pipeline.embed, core.analysis.diversity, "
            "core.pipeline.models, core.pipeline.natural; "
            "print(sorted(m for m in ('streamlit', 'altair', 'vl_convert') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_progress_describes_compilation_and_where_it_is():
    p = Progress(done=3, total=8, step=2, steps=4, run=1, runs=2, compiling=True)
    assert p.describe().startswith("3 of 8 images done, step 2/4 of the current batch (run 1 of 2); compiling")
    assert p.fraction == pytest.approx((3 + 0.5) / 8)
    assert Progress(8, 8, 4, 4, 1, 1).fraction == 1.0


def test_the_cached_images_follow_seed_order(engine):
    engine.run([request(n=3, first_seed=5)])
    req = request(n=3, first_seed=4)
    (run,), totals = engine.run([req])
    assert totals.generated == 1 and [im.seed for im in run.images] == [4, 5, 6]
    assert [im.seed for im in cached_images(run.settings, req.prompt, req.seeds, engine.cache)] == [4, 5, 6]


@pytest.mark.slow
def test_the_command_line_generates_embeds_and_reuses(tmp_path):
    env = {**__import__("os").environ, "DDL_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "core.pipeline.engine", "a photo of a tench", "--n", "2", "--generator", TINY_RANDOM,
           "--clip", TINY_RANDOM]
    first = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("2 images generated, 0 reused; 2 of 2 in") and "2 of 2 images done" in first.stderr
    cache = Cache(tmp_path / "cache")
    assert cache.count_images() == 2 and len(cache.embedding_keys()) == 2  # embedded as they were made
    again = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.startswith("0 images generated, 2 reused")
    bad = subprocess.run([*cmd[:3], "", "--generator", TINY_RANDOM], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "The prompt is empty" in bad.stderr


@pytest.mark.gpu
def test_on_a_gpu_the_engine_runs_the_gpu_recipe_and_keys_bf16_embeddings(tmp_path, tiny_folder, monkeypatch):
    """On CUDA: the tiny pipeline through the engine with the device's recipe, CLIP under bf16 autocast (on GPUs
    with native bf16) and its vectors under the precision's key; the images equal the CPU's within a level."""
    from core.pipeline import config
    from core.pipeline.models import load_clip, load_pipeline
    from core.pipeline.registry import CLIP_MODELS

    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "cache"))
    device = config.select_device()
    assert device.device == "cuda"
    clip = load_clip(CLIP_MODELS[TINY_RANDOM], device)
    pipe = load_pipeline(tiny_folder, device)
    engine = Engine(Cache(tmp_path / "cache"), device, lambda folder: pipe, load_clip=lambda key: clip)
    (run,), totals = engine.run([request(n=4)])
    assert totals.generated == 4 and clip.precision == config.clip_precision(device)
    assert clip.key.endswith(":bfloat16-autocast") == (clip.precision == "bfloat16")
    images = synthetic_set(run.images)
    assert set(engine.cache.get_embeddings(clip.key, images.shas)) == set(images.shas)


def test_a_generating_run_names_every_missing_model_at_once(engine, monkeypatch):
    """Offline with the default CLIP model not downloaded: the run stops before any work, naming it; a run that
    only reopens the cache is not blocked by it."""
    from core.pipeline.registry import DEFAULT_CLIP

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("core.pipeline.models.clip_present", lambda preset: preset.pretrained is None)
    req = RunRequest("a photo of a tench", n=2, generator=TINY_RANDOM, clip=DEFAULT_CLIP).with_preset_defaults(TINY)
    with pytest.raises(ModelUnavailableError, match=r"CLIP: The weights of .* are not on this machine"):
        engine.plan([req], generate=True)
    assert engine.cache.count_images() == 0
    engine.plan([req], generate=False)  # reopening what is cached needs no CLIP download: no error
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine.run([replace(req, clip=TINY_RANDOM)])  # the images are now cached...
    monkeypatch.setattr("core.pipeline.models.clip_present", lambda preset: preset.pretrained is None)
    engine.plan([req], generate=True)  # ...so Generate makes nothing and needs no CLIP download: no error


def test_embedding_reports_progress_per_committed_batch(tmp_path, tiny_clip, imagenette_dir):
    from core.analysis.diversity import natural_set
    from core.pipeline.natural import NaturalFolder

    photos = natural_set(NaturalFolder(imagenette_dir).images("tench"), n=10)
    seen = []
    embed_set(Cache(tmp_path), tiny_clip.key, photos, lambda: tiny_clip, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 10) and seen[-1] == (10, 10) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    again = []
    embed_set(Cache(tmp_path), tiny_clip.key, photos, lambda: tiny_clip, progress=lambda d, t: again.append((d, t)))
    assert again == []  # all cached: nothing to report
