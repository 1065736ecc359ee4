"""User text is data: a prompt, a negative prompt, a class name, a file name, a hypernym, a definition and a pack's
title and descriptions show as the characters typed, on the page, in both reports and on the Demo packs page.

The payload (tests/markdown_support.py) closes a code span, asks for bold, a javascript: link, an image from an
outside address and raw HTML: rendered as Markdown, a shared link would make every viewer's browser fetch it.
Tiny-random models, N = 2: seconds per page."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from unittest import mock

import pytest
from markdown_support import NAME_PAYLOAD, PAYLOAD, assert_literal, assert_literal_html, assert_literal_markdown
from test_app_report import open_page

from core.pipeline.registry import TINY_RANDOM

TINY = {"generator": TINY_RANDOM, "clip": TINY_RANDOM, "n": "2"}
PHOTOS = "user-photos"  # the DDL_NATURAL_ROOTS folder made below: source id "folder:user-photos"


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory, imagenette_dir):
    """Two classes of photos, one named by the payload (less '/'), with an unreadable file named by it too."""
    root = tmp_path_factory.mktemp("roots") / PHOTOS
    for name, source in ((NAME_PAYLOAD, "tench"), ("axolotl", "church")):
        (root / name).mkdir(parents=True)
        for photo in sorted((imagenette_dir / source).iterdir())[:3]:
            shutil.copy(photo, root / name / photo.name)
    (root / NAME_PAYLOAD / f"{NAME_PAYLOAD}.jpg").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def natural_roots(photo_root):
    """The app sees only the payload-named photos (tests/apptest/conftest.py's app_env sets DDL_NATURAL_ROOTS)."""
    return [photo_root]


@pytest.fixture(scope="module")
def payload_run():
    """Diversity with the payload as prompt and negative prompt (generated once for the module)."""
    return open_page("pages/diversity.py", {**TINY, "prompt": PAYLOAD, "negative_prompt": PAYLOAD})


def report_md(downloads) -> str:
    return zipfile.ZipFile(io.BytesIO(downloads.report(".zip"))).read("report.md").decode()


def test_prompt_and_negative_prompt_show_as_typed_on_the_page_and_in_both_reports(payload_run):
    at, downloads = payload_run
    run_line = next(c for c in at.caption if c.value.startswith("**Run:**"))
    # The run line names both: once as the prompt, once as the negative prompt.
    assert assert_literal(at) >= 1 and run_line.value.count("BOLD") == 2
    assert_literal_html(downloads.report(".html").decode())
    assert_literal_markdown(report_md(downloads))


def test_class_and_file_names_show_as_typed(app_cache):
    at, downloads = open_page("pages/diversity.py", {**TINY, "prompt": "a photo of a tench",
                                                     "ref": f"folder:{PHOTOS}", "ref_class": NAME_PAYLOAD})
    assert at.selectbox(key="div_ref_class").value == NAME_PAYLOAD
    # The class in the sample caption and the left-out file's label; the file's own name in its message.
    assert assert_literal(at, NAME_PAYLOAD) >= 2
    assert_literal_html(downloads.report(".html").decode(), NAME_PAYLOAD)
    assert_literal_markdown(report_md(downloads), NAME_PAYLOAD)


def test_hypernym_and_definition_show_as_typed_in_the_reports():
    from app import ui

    lexicon = [[NAME_PAYLOAD, PAYLOAD, PAYLOAD], ["axolotl", PAYLOAD, PAYLOAD]]
    real_runs = ui.runs  # as if the page's Generate button were pressed
    with mock.patch("app.ui.runs", lambda requests, generate: real_runs(requests, generate=True)):
        at, downloads = open_page("pages/synthetic_vs_natural.py", {
            **TINY, "classes": f"{NAME_PAYLOAD},axolotl", "ref": f"folder:{PHOTOS}", "n_nat": "3",
            "template": "hypernym", "lex": json.dumps(lexicon)})
    assert_literal(at, NAME_PAYLOAD)
    html = downloads.report(".html").decode()
    assert_literal_html(html)  # the prompts and the lexicon in the settings
    assert_literal_markdown(report_md(downloads))


def test_a_packs_title_and_run_descriptions_show_as_typed(payload_run, app_cache, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.pipeline.cache import Cache
    from core.pipeline.generate import cached_runs
    from core.present.pack import export_pack, import_pack

    pack = tmp_path / "pack.zip"
    export_pack(pack, Cache(app_cache), cached_runs(Cache(app_cache)), [], {}, title=PAYLOAD)
    laptop = tmp_path / "laptop"
    monkeypatch.setenv("DDL_CACHE_DIR", str(laptop))
    import_pack(pack, Cache(laptop))
    at = AppTest.from_file("../../Home.py", default_timeout=120)
    at.switch_page("pages/demo_packs.py")
    at.run()
    assert not at.exception, at.exception
    # The pack's title in its expander's label, the prompt in its runs' descriptions.
    assert assert_literal(at) >= 2
