"""The app through Streamlit's AppTest, with the offline tiny-random models."""

from __future__ import annotations

import re
from unittest import mock

from app_support import chart_frames, table_elements, vega_charts
from streamlit.testing.v1 import AppTest

TIMEOUT = 180
RUN = {"prompt": "a photo of a tench", "n": "8", "generator": "tiny-random", "clip": "tiny-random"}


def diversity(params: dict | None = None) -> AppTest:
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT)
    at.switch_page("pages/diversity.py")
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def generate(at: AppTest, prompt="a photo of a tench", n=8) -> AppTest:
    at.selectbox(key="generator").set_value("tiny-random").run()
    at.selectbox(key="clip").set_value("tiny-random")
    at.text_input[0].set_value(prompt)
    at.number_input[0].set_value(n)
    return at.button[0].click().run()


def charts(at: AppTest) -> list[dict]:
    return [spec for spec, _ in vega_charts(at)]


def chart_rows(at: AppTest, index: int) -> list[dict]:
    """The data rows of the index-th chart."""
    return chart_frames(vega_charts(at)[index][1])[0].to_dict("records")


def test_home_renders_and_links_the_pages():
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Diffusion Diversity Lab"
    assert [s.value for s in at.subheader][:5] == ["Lack of diversity", "Ambiguity", "Adherence to prompt",
                                                   "Inability to represent the concept", "Geometry of CLIP embeddings"]
    assert "2311.00056" in at.markdown[0].value
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Device:** cpu, float32" in sidebar and "Cache:**" in sidebar


def test_diversity_page_renders_empty():
    at = diversity()
    assert not at.exception
    assert at.info[0].value == "Type a prompt and press Generate."


def test_generate_shows_grid_charts_statistics_and_url():
    at = generate(diversity(), n=8)
    assert not at.exception, at.exception
    counts = re.fullmatch(r"(\d+) images generated, (\d+) reused from the cache\.", at.success[0].value)
    assert counts and int(counts[1]) + int(counts[2]) == 8
    images = at.get("image")
    assert len(images) == 8
    kinds = [c.get("mark", {}).get("type") if "vconcat" not in c else "vconcat" for c in charts(at)]
    assert kinds == ["vconcat", "rect", "circle"]  # statistics (one panel per statistic), heatmap, map
    table = table_elements(at)[0].value
    assert list(table["statistic"]) == ["mean pairwise cosine", "Vendi score", "effective rank",
                                        "variance in first 2 PCs"]
    assert (table["n"] == 8).all() and (table["95% low"] <= table["value"]).all()
    assert at.query_params["prompt"] == "a photo of a tench" and at.query_params["n"] == "8"
    assert at.get("download_button")


def test_reopening_the_url_serves_from_cache_without_loading_the_generator():
    generate(diversity(), n=8)  # make sure the run is cached (no-op when an earlier test made it)
    with mock.patch("core.pipeline.models.load_pipeline", side_effect=AssertionError("generator loaded")), \
            mock.patch("core.pipeline.generate.generate_missing", side_effect=AssertionError("generation ran")):
        at = diversity(RUN)
    assert not at.exception, at.exception
    assert len(at.get("image")) == 8 and not at.success and not at.warning


def test_asking_for_more_generates_only_the_new_images(app_cache):
    from core.pipeline.cache import Cache

    generate(diversity(), n=8)
    at = generate(diversity(), n=12)
    assert not at.exception
    assert at.success[0].value == "4 images generated, 8 reused from the cache."
    assert len(at.get("image")) == 12
    # The sidebar's cache line counts the 4 new images in the same run (it is drawn before generation starts).
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert f"Cache:** {Cache(app_cache).count_images()} images" in sidebar, sidebar
    assert not at.get("button") or all(b.label != "Cancel" for b in at.button)  # gone once the run finished


def diversity_against(params: dict) -> tuple[AppTest, str]:
    """The Diversity page with a natural reference (its 8-image run generated if the cache lacks it) and its one
    sentence comparing the Vendi scores."""
    at = diversity(params)
    if at.warning:  # not cached yet in this order of tests
        at = generate(at, n=8)
    assert not at.exception, at.exception
    reading = [m.value for m in at.markdown if "Synthetic Vendi" in m.value]
    assert len(reading) == 1, reading
    return at, reading[0]


def test_natural_reference_from_a_local_folder():
    at, reading = diversity_against({**RUN, "ref": "folder:imagenette224", "ref_class": "tench"})
    assert "(n=8)" in reading and "natural" in reading
    table = table_elements(at)[0].value
    assert sorted(set(table["source"])) == ["natural", "synthetic"]
    sources = {row["source"] for row in chart_rows(at, -1)}
    assert sources == {"synthetic", "natural"}


def test_clicking_a_heatmap_cell_highlights_the_pair_in_the_map():
    at = diversity(RUN)
    if at.warning:
        at = generate(at, n=8)
    at.session_state["heatmap"] = {"selection": {"pair": [{"seed_a": 2, "seed_b": 5}]}}
    at.run()
    assert not at.exception
    assert any(c.value == "Highlighted in the map: seed 2, seed 5" for c in at.caption)
    rows = chart_rows(at, -1)
    assert sorted(r["label"] for r in rows if r["highlighted"]) == ["seed 2", "seed 5"]


def test_tampered_url_gets_messages_not_a_traceback():
    at = diversity({"prompt": "x", "n": "lots", "generator": "no-such-model"})
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "'n'" in warnings and "no-such-model" in warnings


def test_missing_weights_offline_show_the_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    at = diversity({"prompt": "a tench", "generator": "sd-turbo", "clip": "tiny-random"})
    assert not at.exception
    assert "stabilityai/sd-turbo" in at.error[0].value and "Fix:" in at.error[0].value


def test_switching_pages_and_coming_back_keeps_the_run():
    at = generate(diversity(), n=8)
    at.query_params.clear()  # navigating in the browser drops the URL's params; the session must remember
    at.switch_page("pages/home.py").run()
    assert not at.exception
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Generator:** tiny-random" in sidebar and "CLIP:** tiny-random" in sidebar  # the page's choice
    with mock.patch("core.pipeline.models.load_pipeline", side_effect=AssertionError("generator loaded")):
        at.switch_page("pages/diversity.py").run()
    assert not at.exception and len(at.get("image")) == 8
    assert at.query_params["prompt"] == "a photo of a tench"


def test_fewer_photos_than_images_are_compared_at_equal_n_with_a_curve(tmp_path, monkeypatch):
    # Three photos of the class against 8 generated images: the sentence compares Vendi at n = 3 (the synthetic set
    # subsampled) and the page draws Vendi against n for both sets.
    import numpy as np
    from PIL import Image

    folder = tmp_path / "few" / "tench"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"photo{i}.png")
    monkeypatch.setenv("DDL_NATURAL_ROOTS", str(tmp_path / "few"))
    at, reading = diversity_against({**RUN, "ref": "folder:few", "ref_class": "tench"})
    assert "(n=3) vs natural" in reading and "at equal n (synthetic:" in reading
    assert "Vendi score against n" in [c.get("title") for c in charts(at)]


def test_a_bad_upload_names_the_uploaded_file_and_gives_an_upload_fix():
    """A file that is not an image, uploaded as the natural reference: the error names the file as the user named it
    (not Pillow's '<_io.BytesIO object at 0x...>') and gives advice for an upload, not for a folder."""
    at = diversity({**RUN, "ref": "uploads"})
    if at.warning:  # not cached yet in this order of tests
        at = generate(at, n=8)
    assert not at.exception, at.exception
    at.text_input(key="upload_class").set_value("tench")
    at.get("file_uploader")[0].set_value(("holiday snap.jpg", b"#!/bin/sh\necho not a photo\n", "image/jpeg"))
    at = next(b for b in at.button if b.label == "Add photos").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "holiday snap.jpg" in errors[0] and "not a readable image" in errors[0]
    assert "BytesIO" not in errors[0] and "0x" not in errors[0]
    assert "from the folder" not in errors[0] and "upload that file" in errors[0]
