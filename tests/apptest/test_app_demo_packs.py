"""The Demo packs page (AppTest, tiny-random models): export from one cache, import into an empty one with no
models, and the imported run's link reopens on the Diversity page with the same numbers; bad uploads say why.
Also ui.runs: a run made on another device reopens from the cache without loading or generating anything."""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import app_support
import pytest
from streamlit.testing.v1 import AppTest
from suite import PHOTOS_PER_CLASS

from core.pipeline.models import ModelUnavailableError

TIMEOUT = 180
LINK = {"prompt": "a photo of a tench", "n": "4", "generator": "tiny-random", "clip": "tiny-random",
        "ref": "folder:imagenette224", "ref_class": "tench"}


def page(path: str, params: dict | None = None) -> AppTest:
    return app_support.open_page(path, params, TIMEOUT)


def shown(at: AppTest) -> tuple[list[str], list[dict]]:
    """The Diversity page's reading sentence and its statistics table (values with n and intervals)."""
    reading = [m.value for m in at.markdown if "Synthetic Vendi" in m.value]
    return reading, app_support.table_elements(at)[0].value.round(6).to_dict("records")


def no_models(*args, **kwargs):
    raise ModelUnavailableError("no weights here (test)")


BLOCKED = ("app.ui.load_pipeline", "app.ui.load_clip", "core.pipeline.engine.locate_generator")


@pytest.fixture
def blocked_models():
    patches = [mock.patch(t, no_models) for t in BLOCKED] + [mock.patch(f"{module}.generator_present", lambda p: False)
                                                        for module in ("app.ui", "core.pipeline.engine")]
    for p in patches:
        p.start()
    yield
    for p in patches:
        p.stop()


@pytest.fixture(scope="module")
def built_pack(tmp_path_factory, imagenette_dir):
    """(pack bytes, the Diversity page's metrics) made through the pages in a 'GPU box' cache."""
    import streamlit as st

    from app import ui

    cache_root = tmp_path_factory.mktemp("box")
    with mock.patch.dict("os.environ", {"DDL_CACHE_DIR": str(cache_root), "DDL_NATURAL_ROOTS": str(imagenette_dir)}):
        st.cache_data.clear()
        real = ui.runs
        with mock.patch("app.ui.runs", lambda requests, generate: real(requests, generate=True)):
            assert not page("pages/diversity.py", LINK).exception
        numbers = shown(page("pages/diversity.py", LINK))
        at = page("pages/demo_packs.py")
        assert not at.exception
        picked = at.multiselect(key="pack_natural").value
        assert [p for p in picked if "tench" in p] == picked and len(picked) == 1, picked  # the compared class
        at.text_input(key="pack_title").set_value("Tench lecture")
        at = at.button(key="pack_build").click().run()
        assert not at.exception
        built = at.success[0].value
        assert f"'Tench lecture': 1 runs (4 images), {PHOTOS_PER_CLASS} natural photos in 1 classes" in built
        data, _ = at.session_state["pack_built"]
    return data, numbers


def test_export_builds_a_pack_of_the_run_and_the_compared_class(built_pack):
    from core.present.pack import read_pack

    data, _ = built_pack
    manifest, tables = read_pack(data)
    assert [(r["prompt"], r["seeds"]) for r in manifest["runs"]] == [("a photo of a tench", [0, 1, 2, 3])]
    assert manifest["natural"] == [{"source_id": "folder:imagenette224", "label": manifest["natural"][0]["label"],
                                    "class": "tench", "photos": PHOTOS_PER_CLASS}]
    assert len(tables["images"]) == 4 and len(tables["natural"]) == PHOTOS_PER_CLASS


def test_import_then_the_link_reopens_with_the_same_numbers(built_pack, tmp_path, monkeypatch, blocked_models):
    data, numbers = built_pack
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "laptop"))
    monkeypatch.delenv("DDL_NATURAL_ROOTS", raising=False)
    at = page("pages/demo_packs.py")
    at.get("file_uploader")[0].set_value(("lecture.zip", data, "application/zip"))
    at = at.run().button(key="pack_import").click().run()
    assert not at.exception
    imported = f"Imported 'Tench lecture': 1 runs (4 images), {PHOTOS_PER_CLASS} natural photos"
    assert at.success[0].value.startswith(imported)
    links = [link for link in at.get("page_link") if link.proto.label == "Open in Diversity"]
    assert len(links) == 1
    params = dict(link_params(links[0]))
    assert params.items() >= {k: v for k, v in LINK.items() if k not in ("clip", "ref", "ref_class")}.items()
    # The link the presenter opens (with the reference class they had chosen): same numbers, no model loaded.
    reopened = page("pages/diversity.py", LINK)
    assert not reopened.exception, reopened.exception
    assert shown(reopened) == numbers and numbers[0] and len(numbers[1]) == 8  # 4 statistics x 2 sources


def link_params(link) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(link.proto.query_string)) if getattr(link.proto, "query_string", "") else {}


@pytest.mark.parametrize("upload, message", [
    (b"garbage", "not a zip file"),
    (b"PK\x05\x06" + bytes(18), "has no manifest.json"),  # an empty zip
])
def test_a_bad_upload_says_why_and_changes_nothing(tmp_path, monkeypatch, upload, message):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "c"))
    at = page("pages/demo_packs.py")
    at.get("file_uploader")[0].set_value(("x.zip", upload, "application/zip"))
    at = at.run().button(key="pack_import").click().run()
    assert not at.exception
    assert message in at.error[0].value and "Fix:" in at.error[0].value
    from core.pipeline.cache import Cache

    assert Cache(tmp_path / "c").count_images() == 0


def test_empty_cache_export_tab_explains(tmp_path, monkeypatch):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "c"))
    at = page("pages/demo_packs.py")
    assert not at.exception
    assert any("holds no runs yet" in i.value for i in at.info)


def test_a_run_made_on_another_device_reopens_without_any_model(tmp_path, monkeypatch, tiny_pipe, tiny_folder, cpu,
                                                               blocked_models):
    """The cache holds the run only under cuda/float16 settings (as a pack from a GPU box would bring it): the
    page shows its 4 images and says where they were made; no model is located, loaded or run."""
    from core.pipeline.cache import Cache
    from core.pipeline.generate import RunRequest, generate_missing, resolve_settings
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "c"))
    req = RunRequest("a photo of a tench", n=4, generator=TINY_RANDOM).with_preset_defaults(GENERATORS[TINY_RANDOM])
    gpu = replace(resolve_settings(req, tiny_folder, cpu), device_type="cuda", dtype="float16")
    generate_missing(tiny_pipe, gpu, req.prompt, req.seeds, Cache(tmp_path / "c"))
    with mock.patch("app.ui.pipeline", no_models):
        at = page("pages/diversity.py", {k: v for k, v in LINK.items() if k not in ("ref", "ref_class")})
    assert not at.exception, at.exception
    assert not at.error
    assert any("Images made on cuda (float16) on another machine" in c.value for c in at.caption)
    assert len(at.get("image")) == 4
