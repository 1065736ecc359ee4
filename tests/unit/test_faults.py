"""Faults lose nothing and corrupt nothing: kills mid-generation and mid-embedding, concurrent writers, a corrupt
index, a deleted PNG, a full disk, a read-only cache, a UI-style interrupt. Each is a real process or a real file."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.pipeline.cache import Cache, CacheError
from core.pipeline.generate import RunRequest, cached_images, generate_missing, resolve_settings
from core.pipeline.registry import GENERATORS, TINY_RANDOM

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = GENERATORS[TINY_RANDOM]
SEEDS = list(range(12))


@pytest.fixture
def settings(tiny_folder, cpu):
    req = RunRequest("a photo of a tench", n=len(SEEDS), generator=TINY_RANDOM).with_preset_defaults(TINY)
    return resolve_settings(req, tiny_folder, cpu)


# A child process that generates SEEDS into a cache, one image per batch, printing after each committed batch.
_GENERATOR = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from core.pipeline.cache import Cache
    from core.pipeline.config import DeviceSpec
    from core.pipeline.generate import RunRequest, generate_missing, resolve_settings
    from core.pipeline.models import load_pipeline
    from core.pipeline.registry import GENERATORS, TINY_RANDOM
    cpu = DeviceSpec("cpu", "float32")
    folder = Path({folder!r})
    req = RunRequest("a photo of a tench", n={n}, generator=TINY_RANDOM).with_preset_defaults(GENERATORS[TINY_RANDOM])
    settings = resolve_settings(req, folder, cpu)
    pipe = load_pipeline(folder, cpu)
    cache = Cache(Path({root!r}))
    print("loaded", flush=True)
    report = generate_missing(pipe, settings, req.prompt, req.seeds, cache, batch_size=1,
                              on_progress=lambda done, total, step, steps: print("done", done, flush=True)
                              if step == steps else None)
    print("finished", report.generated, report.reused, flush=True)
""")


def start_generator(root: Path, folder: Path, n: int = len(SEEDS)) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _GENERATOR.format(repo=str(REPO_ROOT), folder=str(folder),
                                                                    root=str(root), n=n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_generation_killed_midway_keeps_complete_entries_and_resumes(tmp_path, tiny_folder, tiny_pipe, settings):
    root = tmp_path / "cache"
    proc = start_generator(root, tiny_folder)
    assert proc.stdout.readline().strip() == "loaded", proc.stderr.read()
    while True:  # kill right after the third committed image, while the fourth is being denoised
        line = proc.stdout.readline().split()
        if line[:2] == ["done", "3"]:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cache = Cache(root)
    report = cache.verify()
    assert report.ok, report.summary()
    written = cache.count_images()
    assert 3 <= written < len(SEEDS)  # killed mid-run: some, not all
    resumed = generate_missing(tiny_pipe, settings, "a photo of a tench", SEEDS, cache, batch_size=4)
    assert (resumed.reused, resumed.generated) == (written, len(SEEDS) - written)
    assert cache.verify().ok and cache.count_images() == len(SEEDS)


@pytest.mark.slow
def test_two_processes_generating_the_same_run_at_once_agree(tmp_path, tiny_folder, tiny_pipe, settings):
    root = tmp_path / "cache"
    procs = [start_generator(root, tiny_folder, n=6) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    cache = Cache(root)
    assert cache.verify().ok and cache.count_images() == 6
    seeds = list(range(6))
    images = cached_images(settings, "a photo of a tench", seeds, cache)
    assert [im.seed for im in images] == seeds  # each entry exactly once, from whichever process was first
    again = generate_missing(tiny_pipe, settings, "a photo of a tench", seeds, cache)
    assert again.generated == 0 and again.reused == 6


_EMBEDDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from core.pipeline.cache import Cache
    from core.pipeline.config import DeviceSpec
    from core.pipeline.embed import embeddings_for
    from core.pipeline.models import load_clip
    from core.pipeline.natural import NaturalFolder
    from core.pipeline.registry import CLIP_MODELS, TINY_RANDOM
    clip = load_clip(CLIP_MODELS[TINY_RANDOM], DeviceSpec("cpu", "float32"))
    photos = NaturalFolder(Path({photos!r})).images("tench")
    cache = Cache(Path({root!r}))
    original = cache.put_embeddings
    def put_and_report(key, vectors):
        original(key, vectors)
        print("stored", len(vectors), flush=True)
    cache.put_embeddings = put_and_report
    print("loaded", flush=True)
    embeddings_for(cache, "clip", [(p.sha256, p.load) for p in photos], lambda: clip, batch_size=8)
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_embedding_killed_midway_keeps_complete_vectors_and_resumes(tmp_path, imagenette_dir, tiny_clip):
    from core.pipeline.embed import embeddings_for
    from core.pipeline.natural import NaturalFolder

    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _EMBEDDER.format(repo=str(REPO_ROOT), root=str(root),
                                                                   photos=str(imagenette_dir))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "loaded", proc.stderr.read()
    assert proc.stdout.readline().split() == ["stored", "8"]
    proc.send_signal(signal.SIGKILL)  # while the second batch is being embedded
    proc.wait()
    photos = NaturalFolder(imagenette_dir).images("tench")
    cache = Cache(root)
    stored = cache.get_embeddings("clip", [p.sha256 for p in photos])
    assert 8 <= len(stored) < len(photos)
    dims = {v.shape for v in stored.values()}
    assert len(dims) == 1 and all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in stored.values())
    loads = []
    vectors = embeddings_for(cache, "clip", [(p.sha256, lambda p=p: loads.append(1) or p.load()) for p in photos],
                             lambda: tiny_clip)
    assert len(loads) == len(photos) - len(stored)  # only the missing ones are decoded and embedded again
    fresh = embeddings_for(Cache(tmp_path / "fresh"), "clip", [(p.sha256, p.load) for p in photos], lambda: tiny_clip)
    np.testing.assert_allclose(vectors, fresh, atol=1e-5)  # resumed vectors equal an uninterrupted run's


# -- the index and the files --------------------------------------------------------------------------------------
@pytest.fixture
def filled(tmp_path, tiny_pipe, settings):
    cache = Cache(tmp_path / "cache")
    generate_missing(tiny_pipe, settings, "a photo of a tench", SEEDS[:4], cache, batch_size=4)
    return cache


def test_a_corrupt_index_is_moved_aside_and_rebuilt_from_the_images(filled, settings):
    before = [(im.seed, im.sha256) for im in cached_images(settings, "a photo of a tench", SEEDS[:4], filled)]
    filled.db_path.write_bytes(b"this is not an SQLite file" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{filled.db_path}{suffix}").unlink(missing_ok=True)
    reopened = Cache(filled.root)
    assert reopened.recovered and "4 images restored" in reopened.recovered
    assert list(filled.root.glob("index.sqlite.corrupt-*"))  # kept for inspection, not deleted
    after = [(im.seed, im.sha256) for im in cached_images(settings, "a photo of a tench", SEEDS[:4], reopened)]
    assert after == before
    assert reopened.get_settings(settings.key()) == settings.to_dict()
    assert reopened.verify().ok


def test_a_deleted_png_is_reported_repaired_and_regenerated(filled, tiny_pipe, settings):
    victim = cached_images(settings, "a photo of a tench", SEEDS[:4], filled)[1]
    victim.path.unlink()
    report = filled.verify()
    assert report.missing_files == [victim.key] and not report.ok
    assert "1 missing files" in report.summary()
    filled.repair()
    assert filled.verify().ok and filled.count_images() == 3
    again = generate_missing(tiny_pipe, settings, "a photo of a tench", SEEDS[:4], filled)
    assert (again.generated, again.reused) == (1, 3)


def test_repair_reindexes_orphan_images_that_carry_their_metadata(filled, settings):
    with sqlite3.connect(filled.db_path) as db:  # rows lost (e.g. an index restored from an old backup)
        db.execute("DELETE FROM images WHERE seed IN (0, 1)")
    report = filled.verify()
    assert len(report.orphan_files) == 2
    filled.repair()
    assert filled.verify().ok and filled.count_images() == 4


def test_a_full_disk_fails_with_a_fix_and_keeps_earlier_entries(filled, tiny_pipe, settings, monkeypatch):
    import core.pipeline.cache

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core.pipeline.cache.os, "fsync", no_space)
    with pytest.raises(CacheError, match="the disk is full.*Everything saved before this is intact.*Fix"):
        generate_missing(tiny_pipe, settings, "a photo of a tench", SEEDS[:8], filled, batch_size=2)
    monkeypatch.undo()
    report = filled.verify()
    assert report.ok and report.rows == 4  # no half-written file, no row without a file, nothing lost
    assert not list(filled.images_dir.rglob(".tmp-*"))


def test_a_read_only_cache_folder_is_explained(tmp_path, monkeypatch):
    import core.pipeline.cache

    # Simulated: tests often run as root, for whom chmod does not stop writes.
    monkeypatch.setattr(core.pipeline.cache.os, "access", lambda path, mode: False)
    with pytest.raises(CacheError, match="is not writable.*Fix: make it writable, or set DDL_CACHE_DIR"):
        Cache(tmp_path / "cache")


def test_a_cache_path_that_cannot_be_a_folder_is_explained(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(CacheError, match="Could not write images to the cache.*DDL_CACHE_DIR"):
        Cache(blocker / "cache")


def test_cache_command_verifies_and_repairs(filled, settings):
    run = [sys.executable, "-m", "core.pipeline.cache"]
    ok = subprocess.run([*run, "verify", str(filled.root)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "4 indexed images, index ok" in ok.stdout and "all good" in ok.stdout
    cached_images(settings, "a photo of a tench", SEEDS[:1], filled)[0].path.write_bytes(b"garbage")
    bad = subprocess.run([*run, "verify", str(filled.root)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "1 corrupt files" in bad.stdout
    fixed = subprocess.run([*run, "repair", str(filled.root)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert fixed.returncode == 0 and "after repair: 3 indexed images, index ok" in fixed.stdout, fixed.stdout


# -- interrupts and threads -------------------------------------------------------------------------------------------
class Interrupt(Exception):
    """Stands in for Streamlit's StopException: raised from the progress callback when the user clicks Cancel."""


def test_an_interrupt_from_the_ui_releases_the_lock_at_once_and_the_next_run_starts(tmp_path, tiny_pipe, settings):
    cache, lock = Cache(tmp_path), threading.Lock()

    def on_progress(done, total, step, steps):
        if done == 2 and step == 1:  # the second batch has started
            raise Interrupt()

    with pytest.raises(Interrupt):
        generate_missing(tiny_pipe, settings, "p", SEEDS[:4], cache, batch_size=2, lock=lock, on_progress=on_progress)
    assert not lock.locked() and not tiny_pipe._interrupt
    assert cache.count_images() == 2
    t = time.perf_counter()
    nxt = generate_missing(tiny_pipe, settings, "p", SEEDS[:4], cache, batch_size=2, lock=lock)
    assert (nxt.generated, nxt.reused, nxt.cancelled) == (2, 2, False)
    assert time.perf_counter() - t < 60  # not waiting on a leaked lock (generous: this is a liveness check)


def test_sessions_in_threads_never_run_the_pipeline_at_once(tmp_path, tiny_pipe, settings):
    """Four threads (as four Streamlit sessions) share one pipeline through the generation lock."""
    cache, lock = Cache(tmp_path), threading.Lock()
    active, overlaps, errors = [0], [], []
    real_call = type(tiny_pipe).__call__

    class Watched(type(tiny_pipe)):
        def __call__(self, *args, **kwargs):
            active[0] += 1
            overlaps.append(active[0])
            try:
                return real_call(self, *args, **kwargs)
            finally:
                active[0] -= 1

    original_class = tiny_pipe.__class__
    tiny_pipe.__class__ = Watched
    try:
        def session(i):
            try:
                generate_missing(tiny_pipe, settings, f"prompt {i}", [0, 1], cache, batch_size=1, lock=lock)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        tiny_pipe.__class__ = original_class
    assert not errors and max(overlaps) == 1 and len(overlaps) == 8
    for i in range(4):
        assert len(cached_images(settings, f"prompt {i}", [0, 1], cache)) == 2
