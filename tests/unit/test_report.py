"""core/present/report.py: the experiment report, checked on known inputs.

The HTML is parsed (html.parser) and every image decoded; a bar chart of known values is drawn and its pixels
measured; numbers, escaping, the Markdown zip and determinism are compared with exact expectations.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import datetime, timezone

import altair as alt
import numpy as np
import pandas as pd
import pytest
from markdown_support import render, shown_text
from PIL import Image
from report_support import ParsedHTML, assert_self_contained

from core.analysis.stats import Estimate
from core.pipeline.cache import data_uri
from core.pipeline.config import library_versions
from core.pipeline.generate import GenerationSettings, RunRequest
from core.pipeline.registry import CLIP_MODELS, GENERATORS, TINY_RANDOM
from core.present.charts import embedding_map, similarity_heatmap
from core.present.report import (
    CHART_SCALE,
    REPORT_LIBRARIES,
    Report,
    generation_defaults,
    render_png,
    report_file_stem,
    vega_lite_spec,
)

WHEN = datetime(2026, 3, 4, 5, 6, tzinfo=timezone.utc)
LINK = "http://127.0.0.1:8501/diversity?prompt=a+photo+of+a+tench&n=8"
EVIL = "<script>alert('x')</script> & \"quotes\" | pipes"


def jpeg(width: int, height: int, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


def bar_chart(title: str | None = None) -> alt.Chart:
    """Bars 1, 3, 2 in pure red on white, no axes, no padding, no title: every pixel's place is known."""
    df = pd.DataFrame({"k": ["a", "b", "c"], "v": [1, 3, 2]})
    return alt.Chart(df).mark_bar(color="#ff0000").encode(
        x=alt.X("k:N", axis=None, scale=alt.Scale(paddingInner=0.5, paddingOuter=0.25)),
        y=alt.Y("v:Q", axis=None, scale=alt.Scale(domain=[0, 3])),
    ).properties(width=300, height=200, padding=0, background="white",
                 **({"title": title} if title else {})).configure_view(stroke=None)


def settings_of(model_id="tiny-random", revision="local-0123456789abcdef") -> GenerationSettings:
    return GenerationSettings(model_id=model_id, revision=revision, pipeline_class="StableDiffusionPipeline",
                              scheduler={"_class_name": "DDIMScheduler", "beta_start": 0.00085}, steps=4,
                              guidance=7.5, width=64, height=64, versions={"diffusers": "0.42.1", "torch": "2.14.1"})


ESTIMATES = [Estimate("Vendi score", 3.14159, 2.5, 3.75, 8), Estimate("mean pairwise cosine", 0.8125, 0.75, 0.875, 8),
             Estimate("effective rank", float("nan"), float("nan"), float("nan"), 1, "needs at least 2 images")]


def full_report(created=WHEN, title="Lack of diversity: a photo of a tench") -> Report:
    r = Report(title, "Diversity", LINK, created=created)
    r.text("**Run:** `a photo of a tench` · *eight* images")
    r.images([jpeg(64, 48), png_bytes(32, 32)], ["seed 0", "seed 1"], title="Generated images")
    r.chart(bar_chart(), "Known bars", caption="Three known bars.")
    r.numbers({"synthetic": ESTIMATES}, title="Diversity statistics", caption="estimate [95% interval]")
    r.table(pd.DataFrame({"variant": ["bare"], "share": [0.5], "ok": [True]}), title="A table")
    r.settings({"request": {"prompt": "a photo of a tench", "n": 8, "guidance": 7.5, "negative_prompt": ""},
                "projection": "pca"})
    r.provenance([settings_of(), settings_of()], CLIP_MODELS[TINY_RANDOM], "clipkey123")
    r.lab_defaults({"steps": "4: the lab's default for tiny-random"})
    return r


# -- the HTML ----------------------------------------------------------------------------------------------------------
def test_html_is_self_contained_and_every_image_decodes_at_its_size():
    doc = ParsedHTML(full_report().to_html())
    assert_self_contained(doc, LINK)
    images = doc.images()
    assert len(images) == 3
    (a0, thumb_jpeg, m0), (a1, thumb_png, m1), (a2, chart, m2) = images
    assert (m0, thumb_jpeg.format, thumb_jpeg.size) == ("image/jpeg", "JPEG", (64, 48))
    assert (m1, thumb_png.format, thumb_png.size) == ("image/png", "PNG", (32, 32))
    assert a1["alt"] == "seed 1" and int(a0["width"]) == 64 and int(a0["height"]) == 48
    # The chart: drawn at CHART_SCALE pixels per CSS pixel, shown at its CSS size (sharp on slides and retina).
    assert m2 == "image/png" and chart.format == "PNG"
    assert chart.size == (300 * CHART_SCALE, 200 * CHART_SCALE)
    assert (int(a2["width"]), int(a2["height"])) == (300, 200)
    assert "Known bars" == a2["alt"]
    assert "Lack of diversity: a photo of a tench" in doc.text and "Created: 2026-03-04 05:06 UTC" in doc.text
    assert "Page: Diversity" in doc.text
    assert [t for t, _ in doc.tags].count("h1") == 1


def test_a_bar_chart_of_known_values_draws_those_bars():
    png = render_png(vega_lite_spec(bar_chart()))
    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert im.shape == (200 * CHART_SCALE, 300 * CHART_SCALE, 3)
    red = (im[..., 0] > 200) & (im[..., 1] < 60) & (im[..., 2] < 60)
    # Bands of 100 px at scale 2 with half of each band empty: bars at x = 50-149, 250-349, 450-549.
    columns = np.flatnonzero(red.any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert [int(x) for r in runs for x in (r[0], r[-1])] == pytest.approx([50, 149, 250, 349, 450, 549], abs=2)
    height = im.shape[0]
    for run, value in zip(runs, [1, 3, 2]):
        assert red[:, run[len(run) // 2]].sum() == pytest.approx(height * value / 3, abs=3)
    white = (im == 255).all(axis=-1)
    assert (red | white).mean() > 0.99  # nothing else drawn: no axes, no stray marks


def test_charts_with_image_tooltips_and_more_than_5000_rows_convert():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    points = pd.DataFrame({"x": rng.normal(size=80), "y": rng.normal(size=80), "source": "synthetic",
                           "label": [f"seed {i}" for i in range(80)], "image": data_uri(jpeg(80, 80)),
                           "highlighted": False})
    r = Report("maps", "Diversity", created=WHEN)
    r.chart(embedding_map(points, "PCA")).chart(similarity_heatmap(x @ x.T, list(range(80))))  # 6,400 cells
    doc = ParsedHTML(r.to_html())
    assert "could not be drawn" not in doc.text
    sizes = [im.size for _, im, _ in doc.images()]
    assert len(sizes) == 2 and all(w >= 500 and h >= 500 for w, h in sizes), sizes
    # The map fills the report's column (the page lets it stretch): 560 px wide plus its axes and legend.
    assert sizes[0][0] > 560 * CHART_SCALE


def test_a_chart_that_cannot_be_drawn_is_named_and_the_rest_still_comes():
    spec = {"data": {"url": "http://example.com/data.json"}, "mark": "point", "title": "Remote data"}
    r = Report("broken", "Diversity", created=WHEN).chart(spec).numbers(ESTIMATES[:1])
    doc = ParsedHTML(r.to_html())
    assert "Remote data could not be drawn" in doc.text and "not allowed" in doc.text  # no network fetch either
    assert doc.rows_with("Vendi score", "3.142 [2.500, 3.750]", "8")
    assert not doc.images()


# -- numbers, tables, settings, provenance -----------------------------------------------------------------------------
def test_numbers_show_value_interval_and_n_as_documented():
    doc = ParsedHTML(full_report().to_html())
    header = next(t[0] for t in doc.tables if "estimate [95% interval]" in t[0])
    assert header == ["source", "statistic", "estimate [95% interval]", "n", "note"]
    assert doc.rows_with("synthetic", "Vendi score", "3.142 [2.500, 3.750]", "8", "")
    assert doc.rows_with("synthetic", "mean pairwise cosine", "0.812 [0.750, 0.875]", "8")
    assert doc.rows_with("effective rank", "n/a (needs at least 2 images)", "1", "needs at least 2 images")
    # Digits on request; a DataFrame of estimates (the pages' tables) reads the same.
    frame = pd.DataFrame({"variant": ["a crane", "a crane"], "sense": ["bird", "machine"], "share": [0.25, 0.75],
                          "95% low": [0.0, 0.4], "95% high": [0.6, 1.0], "n": [4, 4]})
    doc = ParsedHTML(Report("t", "p").numbers(frame, value="share", digits=2).numbers([ESTIMATES[0]], digits=1)
                     .to_html())
    assert doc.rows_with("a crane · bird", "0.25 [0.00, 0.60]", "4")
    assert doc.rows_with("a crane · machine", "0.75 [0.40, 1.00]", "4")
    assert doc.rows_with("Vendi score", "3.1 [2.5, 3.8]", "8")
    with pytest.raises(ValueError, match="95% low"):
        Report("t", "p").numbers(frame.drop(columns=["95% low"]), value="share")


def test_settings_and_provenance_are_listed_exactly():
    doc = ParsedHTML(full_report().to_html())
    for name, value in [("request.prompt", "a photo of a tench"), ("request.n", "8"), ("request.guidance", "7.5"),
                        ("request.negative_prompt", "(empty)"), ("projection", "pca")]:
        assert doc.rows_with(name, value), name
    # Two runs of the same model are listed once; the versions that made the images; the CLIP model and its key.
    assert doc.rows_with("generator model", "tiny-random") and doc.rows_with("generator revision",
                                                                             "local-0123456789abcdef")
    assert doc.rows_with("generator scheduler", "DDIMScheduler")
    assert doc.rows_with("generator generated with", "diffusers 0.42.1, torch 2.14.1")
    assert doc.rows_with("CLIP architecture", "ViT-S-32") and doc.rows_with("CLIP embedding key", "clipkey123")
    assert doc.rows_with("CLIP weights", "random weights (offline test model)")
    libraries = next(row[1] for row in doc.rows_with("libraries (this report)"))
    versions = library_versions(REPORT_LIBRARIES)
    for name in ("python", "altair", "vl-convert-python", "torch", "streamlit"):
        assert f"{name} {versions[name]}" in libraries
    assert doc.rows_with("variant", "share", "ok") and doc.rows_with("bare", "0.500", "yes")
    assert "Defaults that are the lab's own choice" in doc.text and "steps: 4: the lab's default" in doc.text
    # Different models (a model sweep) are each listed.
    rows = Report("t", "p").provenance([settings_of(), settings_of("stabilityai/sd-turbo", "abc")])
    doc = ParsedHTML(rows.to_html())
    assert doc.rows_with("generator 1: model", "tiny-random") and doc.rows_with("generator 2: revision", "abc")


def test_generation_defaults_say_which_values_are_the_labs_and_which_were_set():
    tiny = GENERATORS[TINY_RANDOM]
    req = RunRequest("a photo of a tench", n=8, generator=TINY_RANDOM, steps=10).with_preset_defaults(tiny)
    notes = generation_defaults(req, tiny)
    assert notes["images (N)"] == "8: set for this run (the default is 16)"
    assert notes["steps"] == "10: set for this run (the default is 4)"
    assert notes["guidance"] == "7.5: the lab's default for tiny-random"
    assert notes["size (px)"] == "64: the lab's default for tiny-random"
    assert notes["generator"] == "tiny-random: set for this run (the default is sd-turbo)"
    assert notes["first seed"] == "0: the lab's default"
    turbo = GENERATORS["sd-turbo"]
    notes = generation_defaults(RunRequest("x").with_preset_defaults(turbo), turbo)
    assert notes["guidance"].startswith("0: the lab's default for sd-turbo") and "ignores guidance" in notes["guidance"]
    assert notes["generator"] == "sd-turbo: the lab's default"


# -- user text ---------------------------------------------------------------------------------------------------------
def test_user_text_is_escaped_everywhere():
    r = Report(f"Lack of diversity: {EVIL}", EVIL, created=WHEN)
    r.text(f"**Run:** `{EVIL}` and {EVIL}").heading(EVIL).chart(bar_chart(EVIL), caption=EVIL)
    r.images([jpeg(8, 8)], [EVIL]).table(pd.DataFrame({EVIL: [EVIL]})).settings({"request": {"prompt": EVIL}})
    r.numbers({EVIL: [Estimate(EVIL, 1.0, 0.5, 1.5, 3)]}).lab_defaults({EVIL: EVIL})
    page = r.to_html()
    doc = ParsedHTML(page)
    assert_self_contained(doc, None)
    assert "<script>" not in page and "alert('x')" not in page  # quotes escaped too (attribute safety)
    assert doc.text.count("<script>alert('x')</script>") >= 10  # shown as text, intact
    assert doc.rows_with("request.prompt", EVIL) and doc.rows_with(EVIL, EVIL, "1.000 [0.500, 1.500]", "3")
    md = r.to_markdown()
    rendered = render(md)  # as a Markdown viewer shows report.md
    assert "<script" not in rendered and shown_text(rendered).count("<script>alert('x')</script>") >= 10
    assert "\\| pipes" in md  # a pipe cannot break a Markdown table row
    # A link must be http(s) or relative: anything else is left out.
    for bad in ("javascript:alert(1)", "data:text/html,<b>x</b>"):
        doc = ParsedHTML(Report("t", "p", bad).to_html())
        assert not [a for t, a in doc.tags if t == "a"]


def test_text_blocks_understand_bold_italic_code_and_lists_only():
    page = Report("t", "p").text("**bold** *it* `a <b> c` [site](http://example.com/x)\n\n- one\n- two").to_html()
    assert "<strong>bold</strong> <em>it</em> <code>a &lt;b&gt; c</code> site (http://example.com/x)" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert_self_contained(ParsedHTML(page), None)  # a Markdown link is shown, not linked


# -- the Markdown zip, determinism -------------------------------------------------------------------------------------
def test_markdown_zip_holds_report_md_and_exactly_the_files_it_references():
    r = full_report()
    r.chart(bar_chart("Second chart"))
    archive = zipfile.ZipFile(io.BytesIO(r.to_markdown_zip()))
    names = archive.namelist()
    assert names[0] == "report.md"
    md = archive.read("report.md").decode()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md)
    assert sorted(referenced) == sorted(names[1:])  # every file referenced, every reference a file
    figures = [n for n in names if n.endswith(".png") and n.startswith("figures/")]
    assert figures == ["figures/fig01-known-bars.png", "figures/fig02-second-chart.png"]
    assert [n for n in names if n.startswith("images/")] == ["images/set01-01-seed-0.jpg",
                                                              "images/set01-02-seed-1.png"]
    for name in names[1:]:
        im = Image.open(io.BytesIO(archive.read(name)))
        assert im.format == ("PNG" if name.endswith(".png") else "JPEG")
    assert Image.open(io.BytesIO(archive.read(figures[0]))).size == (600, 400)
    assert "| synthetic | Vendi score | 3.142 [2.500, 3.750] | 8 |" in md
    assert "| request.prompt | a photo of a tench |" in md
    assert f"(<{LINK}>)" in md and "Created: 2026-03-04 05:06 UTC" in md
    assert "## Defaults that are the lab's own choice" in md


def test_outputs_are_deterministic_except_for_the_timestamp():
    a, b = full_report(), full_report()
    assert a.to_html() == b.to_html()
    assert a.to_markdown_zip() == b.to_markdown_zip()
    later = full_report(created=datetime(2027, 1, 1, tzinfo=timezone.utc)).to_html()
    diff = [(x, y) for x, y in zip(a.to_html().splitlines(), later.splitlines()) if x != y]
    assert len(diff) == 1 and "2026-03-04 05:06 UTC" in diff[0][0] and "2027-01-01 00:00 UTC" in diff[0][1]


def test_keyed_blocks_are_replaced_in_place_and_image_sets_are_capped():
    r = Report("t", "p").text("first").chart(bar_chart("old map"), key="map").text("last")
    r.chart(bar_chart("new map"), key="map")
    md = r.to_markdown()
    assert "fig01-new-map.png" in md and "old map" not in md
    assert md.index("first") < md.index("new map") < md.index("last")
    many = Report("t", "p").images([jpeg(8, 8)] * 50, [f"seed {i}" for i in range(50)], limit=48)
    doc = ParsedHTML(many.to_html())
    assert len(doc.images()) == 48 and "The first 48 of 50 images." in doc.text
    with pytest.raises(ValueError, match="one caption per image"):
        Report("t", "p").images([jpeg(8, 8)], [])
    assert report_file_stem("Diversity", "ab12", "n8") == "diversity-report-ab12-n8"
