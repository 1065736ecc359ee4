"""The layout check: every page and lesson, its main result shown, at 1400x900 and at a projector's 1024x768, in a
real browser (system Chromium via Playwright). Readable means (tests/layout_support.py): every chart at least
150 px tall, its title and axis titles inside its bounds, every category of an axis labelled, no label or legend cut
short; every table's columns in view without scrolling sideways; the main area never scrolling sideways.

The runs are made once, before the server starts, by the pages themselves (AppTest with Generate pressed, tiny-random
models, small N) into one cache the server then reads: no page generates in the browser. One screenshot per page and
size goes to test-artifacts/layout-<size>-<page>.png (kept as CI artifacts, failing or not).

Needs Chromium on PATH (`apt-get install chromium`); skipped locally without it, a failure in CI.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from unittest import mock
from urllib.parse import urlencode

import pytest
from e2e_support import ARTIFACTS, AppServer, serve, wait_idle
from layout_support import CHARTS_DRAWN_JS, chart_heights, layout_problems, page_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = {"generator": "tiny-random", "clip": "tiny-random"}
SOURCE = "folder:imagenette224"
# (page file, its link): each page's main result, with small runs.
PAGES: list[tuple[str, dict[str, str]]] = [
    ("pages/home.py", {}),
    ("pages/diversity.py", {"prompt": "a photo of a tench", "n": "8", **TINY, "ref": SOURCE, "ref_class": "tench"}),
    ("pages/ambiguity.py", {"prompt": "a photo of a crane", "n": "4", **TINY, "preset": "crane"}),
    ("pages/adherence.py", {"prompt": "a photo of a golf ball", "n": "4", **TINY, "ref": SOURCE,
                            "ref_class": "golf_ball", "classes": "golf ball, tench, parachute",
                            "sweep": "guidance", "sweep_values": "1, 4, 7.5"}),
    ("pages/synthetic_vs_natural.py", {"classes": "tench,church,golf_ball", "ref": SOURCE, "n": "4", "n_nat": "6",
                                       **TINY}),
    ("pages/train_on_synthetic.py", {"classes": "tench,church,golf_ball", "ref": SOURCE, "n": "4", "n_nat": "6",
                                     **TINY}),
    ("pages/clip_geometry.py", {"classes": "tench,church,golf_ball", "ref": SOURCE, "n": "4", "n_nat": "6", **TINY}),
    ("pages/stable_bias.py", {"adj": "-,ambitious,compassionate", "prof": "baker,CEO", "n": "4", "cuts": "2,3",
                              **TINY}),
    *[(f"pages/lesson_{name}.py", dict(TINY)) for name in ("ambiguity", "adherence", "diversity", "concept",
                                                           "geometry")],
    ("pages/demo_packs.py", {}),
]
SIZES = {"1400x900": (1400, 900), "1024x768": (1024, 768)}
PAGE_TIMEOUT_MS = 240_000


def prepare_cache(cache, tiny_folder, photo_roots) -> None:
    """Each page's runs, made by the page itself as if its Generate (or Run) button were pressed."""
    import os

    import streamlit as st
    from app_support import open_page

    from app import ui

    old = {k: os.environ.get(k) for k in ("DDL_CACHE_DIR", "DDL_NATURAL_ROOTS")}
    os.environ["DDL_CACHE_DIR"] = str(cache)
    os.environ["DDL_NATURAL_ROOTS"] = os.pathsep.join(str(root) for root in photo_roots)
    shutil.copytree(tiny_folder, cache / "models" / tiny_folder.name)
    real_runs = ui.runs
    try:
        st.cache_data.clear()
        with mock.patch("app.ui.runs", lambda requests, generate: real_runs(requests, generate=True)):
            for page, params in PAGES:
                at = open_page(page, params, 600)
                assert not at.exception, (page, at.exception)
        at = open_page("pages/clip_geometry.py", dict(PAGES[6][1]), 600)  # the norms chart, measured once
        next(b for b in at.button if b.label.startswith("Measure the norms")).click().run()
    finally:
        st.cache_data.clear()
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, tiny_folder, imagenette_dir, ambiguous_dir) -> AppServer:
    work = tmp_path_factory.mktemp("e2e-layout")
    prepare_cache(work / "cache", tiny_folder, [imagenette_dir, ambiguous_dir])
    with serve(work, [imagenette_dir, ambiguous_dir], cache=work / "cache") as server:
        yield server


@contextmanager
def browser_page(browser, width: int, height: int):
    """A fresh browser context at this window size (the pages' own default timeout), closed afterwards."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_is_readable(e2e_browser, app_server, size):
    problems, heights = [], {}
    with browser_page(e2e_browser, *SIZES[size]) as page:
        for file, params in PAGES:
            name = file.removeprefix("pages/").removesuffix(".py")
            path = "" if name == "home" else name
            page.goto(f"{app_server.url}/{path}" + (f"?{urlencode(params)}" if params else ""))
            page.wait_for_selector("[data-testid='stMain'] h1")  # the page's script has started
            wait_idle(page, PAGE_TIMEOUT_MS, settle_ms=500)
            page.wait_for_function(CHARTS_DRAWN_JS)
            page.wait_for_timeout(300)  # vega's label-overlap pass runs after the first draw
            errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
            if errors.count():
                problems.append(f"{name}: shows an error: {errors.first.inner_text()[:300]}")
            problems += [f"{name}: {p}" for p in layout_problems(page)]
            heights[name] = chart_heights(page)
            page_screenshot(page, ARTIFACTS / f"layout-{size}-{name}.png")
    (ARTIFACTS / f"layout-{size}-chart-heights.json").write_text(json.dumps(heights, indent=1))
    assert not problems, f"At {size}, {len(problems)} layout problems:\n" + "\n".join(problems)


# The Diversity page's statistics chart against the main column's content width (its padding left out).
STATISTICS_WIDTH_JS = """() => {
  const main = document.querySelector("[data-testid='stMainBlockContainer']");
  const style = getComputedStyle(main);
  const column = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const chart = [...document.querySelectorAll("[data-testid='stMain'] .vega-embed")].find(e =>
    [...e.querySelectorAll(".role-title text")].some(t => t.textContent === "Vendi score"));
  return {column, chart: chart ? chart.getBoundingClientRect().width : null};
}"""


@pytest.mark.parametrize("size", list(SIZES))
def test_diversity_statistics_chart_fills_the_main_column(e2e_browser, app_server, size):
    """It used ~60% of the column at 1400 px (a fixed 2 x 260 px facet); now its panels stretch to the column."""
    with browser_page(e2e_browser, *SIZES[size]) as page:
        page.goto(f"{app_server.url}/diversity?{urlencode(PAGES[1][1])}")
        page.wait_for_selector("[data-testid='stMain'] h1")
        wait_idle(page, PAGE_TIMEOUT_MS, settle_ms=500)
        page.wait_for_function(CHARTS_DRAWN_JS)
        # The statistics chart comes after the embeddings: on a busy machine the first charts are drawn before it.
        page.wait_for_function(f"() => ({STATISTICS_WIDTH_JS})().chart !== null")
        measured = page.evaluate(STATISTICS_WIDTH_JS)
    assert measured["chart"] is not None, "no statistics chart with a 'Vendi score' panel"
    assert 0.9 * measured["column"] <= measured["chart"] <= measured["column"] + 1, (size, measured)


def test_lesson_1_opens_its_settings_after_an_error(e2e_browser, app_server):
    """Lesson 1 with its default models missing offline: after the click, the error points to "Settings used", and
    the box is open in the browser (its model switch in view), with the Run button and "Try it yourself" still there.
    """
    with browser_page(e2e_browser, 1024, 768) as page:
        page.goto(f"{app_server.url}/lesson_ambiguity")
        page.wait_for_selector("[data-testid='stMain'] h1")
        wait_idle(page, PAGE_TIMEOUT_MS)
        generator = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']", has_text="Generator")
        assert not generator.is_visible()  # collapsed before anything went wrong
        page.get_by_role("button", name="Run the experiment").click()
        page.wait_for_selector("[data-testid='stAlertContentError']")
        wait_idle(page, PAGE_TIMEOUT_MS)
        assert "Settings used" in page.locator("[data-testid='stAlertContentError']").first.inner_text()
        assert generator.is_visible()
        assert page.get_by_role("button", name="Run the experiment").is_visible()
        assert page.get_by_text("Try it yourself").is_visible()
