"""The demo-pack promise, end to end: build runs for every page with tiny-random models, through the app's own
actions (each page's Generate, uploading photos on Diversity, CLIP geometry's "Measure the norms"), export them as a
pack, import it into an empty cache in a fresh process that has no generator and no CLIP model, and check that every
page shows the same numbers (texts, metrics, tables, chart data) from the same links: every kind of row the app
stores survives the trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from pack_roundtrip_support import SCENARIOS, UPLOAD_CLASS, UPLOADS_LINK, first_difference, numbers, render

from core.present.markup import md_literal

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_every_page_shows_the_same_numbers_after_a_pack_round_trip(tmp_path, monkeypatch, imagenette_dir,
                                                                       ambiguous_dir):
    import streamlit as st

    from app import ui
    from core.pipeline.cache import Cache
    from core.present.pack import main as pack_main

    source = tmp_path / "gpu-box-cache"
    monkeypatch.setenv("DDL_CACHE_DIR", str(source))
    monkeypatch.setenv("DDL_NATURAL_ROOTS", os.pathsep.join([str(imagenette_dir), str(ambiguous_dir)]))
    st.cache_data.clear()

    # 1. "On the GPU box": each link generates what it needs (as if Generate were pressed), then a fresh render
    #    from the cache gives the numbers to match.
    #    The link compared is the page's URL after that run: what a user copies and shares.
    real_runs = ui.runs
    links = {}
    with mock.patch("app.ui.runs", lambda requests, generate: real_runs(requests, generate=True)):
        for page, params in SCENARIOS:
            at = render(page, params)
            assert not at.exception, (page, at.exception)
            links[page] = {k: at.query_params[k] for k in at.query_params}
            assert links[page].items() >= params.items(), (page, links[page])
        links[UPLOADS_LINK] = upload_photos(imagenette_dir)
    measure_the_norms(links["pages/clip_geometry.py"])
    expected = {}
    for page in links:
        expected[page] = numbers(render(page, links[page]))
        assert expected[page]["charts"], f"{page} showed no chart: the round trip would compare nothing"
    # The Ambiguity link calibrates on the flat folder of labelled photos: the laptop has that folder only in the pack.
    assert any("Zero-shot sense accuracy on" in t for t in expected["pages/ambiguity.py"]["text"])
    images = Cache(source).count_images()

    # 2. Export everything (every run; the natural classes some analysis embedded).
    pack = tmp_path / "demo.zip"
    assert pack_main(["export", str(pack), "--title", "round trip"]) == 0

    # 3. "On the laptop": a fresh process, an empty cache, no natural-photo folders, no models.
    laptop = tmp_path / "laptop-cache"
    env = {k: v for k, v in os.environ.items() if k != "DDL_NATURAL_ROOTS"}
    env["DDL_CACHE_DIR"] = str(laptop)
    out = tmp_path / "laptop.json"
    (tmp_path / "links.json").write_text(json.dumps(links))
    child = [sys.executable, str(HERE.parent / "pack_roundtrip_child.py"), str(pack), str(tmp_path / "links.json"),
             str(out)]
    proc = subprocess.run(child, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(out.read_text())
    assert f"({images} images)" in got["imported"]
    for page in links:
        # Paths differ between the two caches: <cache> stands for either (pack_roundtrip_support.numbers).
        assert (diff := first_difference(json.loads(json.dumps(expected[page])), got["pages"][page])) is None, \
            f"{page}: {diff}"


def upload_photos(imagenette_dir) -> dict[str, str]:
    """Diversity's "Upload photos": four photos under a class name, then that class as the reference. Returns the
    page's link."""
    at = render(UPLOADS_LINK, {"prompt": "a photo of a tench", "n": "4", "generator": "tiny-random",
                               "clip": "tiny-random", "ref": "uploads"})
    at.text_input(key="upload_class").set_value(UPLOAD_CLASS)
    photos = sorted((imagenette_dir / "tench").iterdir())[10:14]
    at.get("file_uploader")[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in photos])
    at = next(b for b in at.button if b.label == "Add photos").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    at.selectbox(key="div_ref_class").set_value(UPLOAD_CLASS).run()
    assert not at.exception, at.exception
    assert any("photos of" in c.value and md_literal(UPLOAD_CLASS) in c.value for c in at.caption), \
        [c.value for c in at.caption]
    return {k: at.query_params[k] for k in at.query_params}


def measure_the_norms(link: dict[str, str]) -> None:
    """CLIP geometry's "Measure the norms": lengths before normalisation, kept in the embeddings table."""
    at = render("pages/clip_geometry.py", link)
    at = next(b for b in at.button if b.label.startswith("Measure the norms")).click().run()
    assert not at.exception, at.exception
    assert any("Median image norm" in m.value for m in at.markdown)
