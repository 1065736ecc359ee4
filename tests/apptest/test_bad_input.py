"""The bad-input catalogue as the user meets it: each case shows a clear message in the app, never a traceback.

Core-level cases (image files, uploads, statistics, paths, the cache) are tested beside their modules; here each one
is driven through the Diversity page with AppTest and the tiny-random models.
"""

from __future__ import annotations

import io
import sqlite3

import pytest
from app_support import table_elements
from PIL import Image
from streamlit.testing.v1 import AppTest

TIMEOUT = 180
RUN = {"prompt": "a photo of a tench", "n": "4", "generator": "tiny-random", "clip": "tiny-random"}


@pytest.fixture(autouse=True)
def env(cache_root, monkeypatch, tmp_path):
    import streamlit as st

    monkeypatch.setenv("DDL_NATURAL_ROOTS", str(tmp_path / "photos"))
    monkeypatch.setenv("DDL_MODEL_ROOTS", str(tmp_path / "models"))
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def page(params: dict) -> AppTest:
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT)
    at.switch_page("pages/diversity.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def messages(at: AppTest) -> str:
    return " | ".join(e.value for kind in (at.error, at.warning, at.info) for e in kind)


@pytest.mark.parametrize("params,expected", [
    ({"prompt": "   "}, "The prompt is empty: type what the images should show."),
    ({"n": "0"}, "N must be between 1 and 256 (got 0)."),
    ({"n": "-5"}, "N must be between 1 and 256 (got -5)."),
    ({"n": "99999"}, "The link asks for 99999 images; the most one run makes is 256"),
    ({"steps": "0"}, "takes 1 to 50 steps (got 0)"),
    ({"steps": "1000"}, "takes 1 to 50 steps (got 1000)"),
    ({"guidance": "-2"}, "Guidance must be between 0 and 30 (got -2)."),
    ({"guidance": "nan"}, "The link's 'guidance' is 'nan', not a number: the default is used."),
    ({"guidance": "lots"}, "The link's 'guidance' is 'lots', not a number: the default is used."),
    ({"size": "100"}, "Size must be a multiple of 16"),
    ({"generator": "sd-9000"}, "The link's 'generator' is 'sd-9000': Unknown generator 'sd-9000'"),
    ({"generator": "local:/etc"}, "is outside the model folders this app may read"),
    ({"clip": "ViT-Z-99"}, "The link names an unknown CLIP model 'ViT-Z-99': the default is used."),
    ({"prompt": "fish " * 100}, "The prompt is 100 tokens; the text encoder reads only the first 75, so the images "
                                "follow: \"" + " ".join(["fish"] * 75) + "\""),
    ({"prompt": "x" * 5000}, "The prompt is 5000 characters; the limit is 1000"),
    ({"first_seed": "-3"}, "The first seed must be at least 0 (got -3)."),
])
def test_bad_settings_in_a_link_get_a_message_not_a_traceback(params, expected):
    at = page({**RUN, **params})
    assert not at.exception, at.exception
    assert expected in messages(at), messages(at)


def test_a_local_folder_that_is_not_a_pipeline_is_explained(tmp_path):
    folder = tmp_path / "models" / "half-downloaded"
    folder.mkdir(parents=True)
    at = page({**RUN, "generator": f"local:{folder}"})
    assert not at.exception
    assert "is not a diffusers pipeline folder: it has no model_index.json" in messages(at)


@pytest.fixture
def awkward_photos(tmp_path):
    cls = tmp_path / "photos" / "tench"
    cls.mkdir(parents=True)
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (32, 32), colour).save(cls / f"ok{i}.png")
    Image.new("CMYK", (32, 32), (10, 200, 30, 0)).save(cls / "cmyk.jpg")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="JPEG")
    (cls / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    (cls / "notes.jpg").write_text("not an image")
    Image.new("1", (8000, 7000)).save(cls / "bomb.png")
    single = tmp_path / "photos" / "lonely"
    single.mkdir()
    Image.new("RGB", (32, 32), "red").save(single / "only.png")
    return tmp_path / "photos"


def generated_if_needed(at: AppTest) -> AppTest:
    """Generate the page's run (tiny models, 4 images) when the cache lacks it (tests run alone or in any order)."""
    if "Press Generate" in messages(at):
        at.selectbox(key="generator").set_value("tiny-random").run()
        at.selectbox(key="clip").set_value("tiny-random")
        at.number_input[0].set_value(4)
        at = at.button[0].click().run()
    return at


def test_a_photo_folder_with_broken_files_keeps_the_good_ones_and_lists_the_rest(awkward_photos):
    at = page({**RUN, "ref": "folder:photos", "ref_class": "tench"})
    at = generated_if_needed(at)
    assert not at.exception, at.exception
    expander = next(e for e in at.expander if "file(s) in 'tench' were left out" in e.label)
    assert expander.label.startswith("3 file(s)")
    listed = " ".join(t.value for t in expander.text)  # file names: plain text, never Markdown
    assert "truncated.jpg" in listed and "notes.jpg" in listed and "50-megapixel limit" in listed
    table = table_elements(at)[0].value
    assert set(table[table["source"] == "natural"]["n"]) == {4}  # ok0-2 and the CMYK photo


def test_a_class_with_a_single_photo_says_statistics_need_two(awkward_photos):
    at = page({**RUN, "ref": "folder:photos", "ref_class": "lonely"})
    at = generated_if_needed(at)
    assert not at.exception, at.exception
    table = table_elements(at)[0].value
    natural = table[table["source"] == "natural"]
    assert (natural["n"] == 1).all() and natural["value"].isna().all()
    assert "not enough images to compare" in " ".join(m.value for m in at.markdown)


def test_an_unwritable_cache_is_explained_in_the_sidebar(monkeypatch):
    import core.pipeline.cache

    monkeypatch.setattr(core.pipeline.cache.os, "access", lambda path, mode: False)
    at = page(RUN)
    assert not at.exception
    assert "is not writable" in " ".join(e.value for e in at.sidebar.error)


def test_a_corrupt_index_is_rebuilt_and_the_user_told(cache_root):
    at = page(RUN)
    at.selectbox(key="generator").set_value("tiny-random").run()
    at.selectbox(key="clip").set_value("tiny-random")
    at.number_input[0].set_value(4)
    at.button[0].click().run()
    db = cache_root / "index.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.write_bytes(b"garbage" * 1000)
    at = page(RUN)
    assert not at.exception
    assert "4 images restored" in " ".join(w.value for w in at.sidebar.warning)
    assert len(at.get("image")) == 4 and "Press Generate" not in messages(at)  # served from the rebuilt index
    at.sidebar.button(key="cache_verify").click().run()
    assert "4 indexed images, index ok" in at.sidebar.success[0].value


@pytest.mark.parametrize("page_file", ["pages/adherence.py", "pages/ambiguity.py"])
@pytest.mark.parametrize("params", [{"n": "0"}, {"steps": "1000"}, {"guidance": "-2"}, {"first_seed": "-3"}])
def test_the_other_run_forms_survive_out_of_range_links_too(page_file, params):
    """The run inputs are shared (ui.run_settings_inputs): a bad value in a link is clamped in the form and the
    page explains the problem instead of crashing."""
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT)
    at.switch_page(page_file)
    for k, v in {**RUN, "prompt": "crane", **params}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    assert at.error or at.warning, "the bad value was not reported"
