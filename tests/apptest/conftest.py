"""What every AppTest module shares: one app cache per module (runs build on each other, as for a user), the
environment the app reads, and fresh Streamlit data caches per test."""

import os
import shutil

import pytest


@pytest.fixture(scope="module")
def app_cache(tmp_path_factory, tiny_folder, request):
    root = tmp_path_factory.mktemp(f"app-cache-{request.module.__name__.rsplit('.', 1)[-1]}")
    shutil.copytree(tiny_folder, root / "models" / tiny_folder.name)  # the session's tiny model, not rebuilt
    return root


@pytest.fixture(scope="module")
def natural_roots(imagenette_dir, ambiguous_dir):
    """The photo folders the app sees (DDL_NATURAL_ROOTS): both generated ones, Imagenette-like class folders and
    the flat photos of ambiguous names. A module that needs fewer overrides this fixture."""
    return [imagenette_dir, ambiguous_dir]


@pytest.fixture(scope="module", autouse=True)
def app_env(app_cache, natural_roots):
    """The module's cache and photo folders. Module-scoped, so module-scoped fixtures that drive the app see the
    same environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DDL_CACHE_DIR", str(app_cache))
        mp.setenv("DDL_NATURAL_ROOTS", os.pathsep.join(map(str, natural_roots)))
        yield


@pytest.fixture(autouse=True)
def fresh_streamlit_caches():
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()
