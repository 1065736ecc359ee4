"""Shared fixtures. Tests never reach the hub: tiny random-weight models built in code from the real classes."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: a hub name must fail at once, not after 20-40 s of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()
IMAGENETTE = SHARED_DATA / "imagenette224"
AMBIGUOUS = SHARED_DATA / "imagenet_samples_ambiguous"


@pytest.fixture(scope="session")
def imagenette_dir() -> Path:
    if not IMAGENETTE.is_dir():
        pytest.fail(f"The shared test photos are missing: expected {IMAGENETTE} (shared/ beside the repo).")
    return IMAGENETTE


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
    from core.tiny import ensure_tiny_sd_folder

    return ensure_tiny_sd_folder(session_cache_root / "models")


@pytest.fixture(scope="session")
def cpu():
    from core.config import DeviceSpec

    return DeviceSpec("cpu", "float32")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_folder, cpu):
    from core.models import load_pipeline

    return load_pipeline(tiny_folder, cpu)


@pytest.fixture(scope="session")
def tiny_clip(cpu):
    from core.models import load_clip
    from core.registry import CLIP_MODELS, TINY_RANDOM

    return load_clip(CLIP_MODELS[TINY_RANDOM], cpu)


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
