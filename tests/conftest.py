"""Shared fixtures. Tests never reach the hub: tiny random-weight models built in code from the real classes."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: a hub name must fail at once, not after 20-40 s of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from suite import (  # noqa: E402
    AMBIGUOUS_STEMS,
    PHOTOS_PER_CLASS,
    REAL_AMBIGUOUS,
    REAL_IMAGENETTE,
    REQUIRE_REAL_PHOTOS,
)


@pytest.fixture(scope="session")
def imagenette_dir(tmp_path_factory) -> Path:
    """Generated photos in the Imagenette layout (<class>/<photo>, labels.csv; the ten class names), under the same
    folder name, so source ids ("folder:imagenette224") read as with the real set."""
    from core.pipeline.natural import IMAGENETTE_WNIDS
    from core.pipeline.tiny import write_tiny_photo_folder

    return write_tiny_photo_folder(tmp_path_factory.mktemp("photos") / "imagenette224", IMAGENETTE_WNIDS,
                                   PHOTOS_PER_CLASS)


@pytest.fixture(scope="session")
def ambiguous_dir(tmp_path_factory) -> Path:
    """Generated flat files named as the ImageNet photos of ambiguous class names (n02012849_crane.JPEG, ...)."""
    from core.pipeline.tiny import write_tiny_flat_photos

    return write_tiny_flat_photos(tmp_path_factory.mktemp("photos") / "imagenet_samples_ambiguous", AMBIGUOUS_STEMS)


def real_photos(folder: Path) -> Path:
    """`folder` when the real photos are there; else skip, or fail where DDL_REQUIRE_REAL_PHOTOS=1 (CI)."""
    if folder.is_dir():
        return folder
    message = (f"Real photos not found at {folder}: this test checks the real ImageNet photos kept beside the "
               f"repository (../shared/data), which a clone does not have.")
    if os.environ.get(REQUIRE_REAL_PHOTOS) == "1":
        pytest.fail(message + f" {REQUIRE_REAL_PHOTOS}=1 requires them here.")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_imagenette_dir() -> Path:
    return real_photos(REAL_IMAGENETTE)


@pytest.fixture(scope="session")
def real_ambiguous_dir() -> Path:
    return real_photos(REAL_AMBIGUOUS)


def pytest_collection_modifyitems(items):
    """Mark each test by its folder's kind (`-m apptest`, `-m e2e`); mark every test that reads the real photos, so
    `-m real_photos` / `-m "not real_photos"` select them; skip the `gpu` tests where torch sees no CUDA device (CI has
    none: they run on a GPU machine, `-m gpu`)."""
    for item in items:
        kind = item.path.parent.name  # the folder says the kind: unit/, apptest/ (Streamlit's AppTest), e2e/ (Chromium)
        if kind in ("apptest", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))
        if {"real_imagenette_dir", "real_ambiguous_dir"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_photos)
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            reason = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
            for item in items:
                if item.get_closest_marker("gpu"):
                    item.add_marker(reason)


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    """A fresh, empty cache directory for this test (DDL_CACHE_DIR)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DDL_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def session_cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session-cache")


@pytest.fixture(scope="session")
def tiny_folder(session_cache_root) -> Path:
    """The tiny-random pipeline saved as a diffusers folder (built once per test session)."""
    from core.pipeline.tiny import ensure_tiny_sd_folder

    return ensure_tiny_sd_folder(session_cache_root / "models")


@pytest.fixture(scope="session")
def cpu():
    from core.pipeline.config import DeviceSpec

    return DeviceSpec("cpu", "float32")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_folder, cpu):
    from core.pipeline.models import load_pipeline

    return load_pipeline(tiny_folder, cpu)


@pytest.fixture(scope="session")
def tiny_clip(cpu):
    from core.pipeline.models import load_clip
    from core.pipeline.registry import CLIP_MODELS, TINY_RANDOM

    return load_clip(CLIP_MODELS[TINY_RANDOM], cpu)


class CountingClip:
    """A `get_clip` for functions that load CLIP only when they must: returns the tiny CLIP and counts the calls."""

    def __init__(self, clip):
        self.clip, self.loads = clip, 0

    def __call__(self):
        self.loads += 1
        return self.clip


@pytest.fixture
def counted_clip(tiny_clip) -> CountingClip:
    return CountingClip(tiny_clip)


# -- the real browser (tests marked e2e; helpers in tests/e2e_support.py) -----------------------------------------
@pytest.fixture(scope="module")
def e2e_browser():
    """The system Chromium driven by Playwright: skipped locally without it, a failure in CI, where it must run."""
    import shutil

    from e2e_support import CHROMIUM_ARGS

    chromium = shutil.which("chromium")
    if chromium is None:
        message = "Chromium is not on PATH: the e2e test drives the system Chromium (apt-get install chromium)."
        if os.environ.get("CI"):
            pytest.fail(message + " In CI this test must run, not be skipped.")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def e2e_page(e2e_browser):
    from e2e_support import EXPECT_TIMEOUT_MS
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = e2e_browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
        expect.set_options(timeout=5_000)


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """An uninterrupted `./lab sweep` of the tiny plan (2 classes x 8 seeds) on a 2-CPU local Ray cluster, run once
    for the session: (its folder, the output folder, its log). The output's cache folder is <folder>/cache."""
    from sweep_support import sweep

    tmp = tmp_path_factory.mktemp("sweep")
    log = sweep(tmp, tmp / "out")
    return tmp, tmp / "out", log
