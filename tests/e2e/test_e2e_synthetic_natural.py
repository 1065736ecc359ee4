"""End to end: the three class-list pages in a real browser (system Chromium driven by Playwright), with the
offline tiny-random generator and CLIP model and the shared Imagenette photos.

A fresh `streamlit run Home.py` server (its own cache in a temp dir) is opened on a deep link to Synthetic vs
natural carrying the whole experiment (2 classes, 4 synthetic images and 6 natural photos each). The test presses
Generate, hovers a point of the shared map for its thumbnail, then moves to Train on synthetic and to CLIP geometry
through the sidebar (the session must remember the experiment: the browser drops the query string) and clicks a
point of each page's interactive chart to see its effect.

Server, browser, failure screenshots and the idle wait come from tests/e2e_support.py. Needs Chromium on
PATH: skipped locally without it, a failure in CI (CI set). On failure a screenshot is saved to
test-artifacts/e2e-<test name>.png and the server's stderr tail is added to the message.
"""

from __future__ import annotations

import re
import shutil
from urllib.parse import urlencode

import pytest
from e2e_support import AppServer, chart_titled, failure_report, serve
from e2e_support import wait_idle as _wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


RUN_TIMEOUT_MS = 150_000  # the first run loads the libraries and the tiny models, generates and embeds
EXPERIMENT = {"classes": "tench,church", "n": "4", "n_nat": "6", "generator": "tiny-random", "clip": "tiny-random",
              "ref": "folder:imagenette224"}
N_IMAGES = 2 * 4
MAP_TITLE = "Synthetic images, natural photos and prompts in CLIP space (PCA)"
DIVERSITY_TITLE = "Diversity of each class's synthetic images vs its accuracy (click a point)"
CLOSENESS_TITLE = "Nearer its prompt? (click a class)"


# --- the app server (as tests/test_e2e.py) ------------------------------------------------------------------------

@pytest.fixture
def app_server(tmp_path, tiny_folder, imagenette_dir) -> AppServer:
    """A fresh Streamlit server on a free port with an empty cache (plus the tiny model, copied rather than
    rebuilt); always stopped afterwards."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_folder, cache / "models" / tiny_folder.name)
    with serve(tmp_path, [imagenette_dir], cache) as server:
        yield server


def wait_idle(page, timeout: float = RUN_TIMEOUT_MS, settle_ms: int = 300) -> None:
    _wait_idle(page, timeout, settle_ms)


def symbols(chart_locator):
    """The chart's point marks (Vega's SVG renderer draws point/circle marks as paths in g.mark-symbol.role-mark)."""
    return chart_locator.locator("g.mark-symbol.role-mark path")  # not the legend's symbols


def click_a_point_until(page, points, shown) -> None:
    """Click points one by one until `shown` (a locator) becomes visible: a point may lie under a label."""
    from playwright.sync_api import expect

    count = points.count()
    for i in range(count):
        points.nth(i).click(force=True)
        try:
            expect(shown).to_be_visible(timeout=8_000)
            return
        except AssertionError:
            if i == count - 1:
                raise


# --- the test -------------------------------------------------------------------------------------------------------

def test_three_pages_generate_hover_and_click(e2e_page, app_server, request):
    from playwright.sync_api import expect

    page = e2e_page
    with failure_report(page, app_server, request.node.name):
        # 1. Synthetic vs natural, from a deep link holding the experiment as the fresh server's first request
        # (url_path = file stem, see Home.py): nothing cached yet, so press Generate.
        page.goto(f"{app_server.url}/synthetic_vs_natural?{urlencode(EXPERIMENT)}")
        expect(page.get_by_role("dialog")).to_have_count(0)  # no "Page not found" over the page
        expect(page.get_by_role("heading", name="Synthetic vs natural", exact=True)).to_be_visible(timeout=60_000)
        generate = page.get_by_test_id("stFormSubmitButton").get_by_role("button",
                                                                         name="Generate missing images and analyse")
        expect(generate).to_be_visible(timeout=60_000)
        wait_idle(page, timeout=90_000)
        expect(page.get_by_test_id("stAlert").filter(has_text="not in the cache yet")).to_be_visible()
        generate.click()
        expect(page.get_by_test_id("stAlert").filter(has_text=f"{N_IMAGES} images generated")).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        expect(page.get_by_role("heading", name="Nearest natural photos", exact=True)).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        for key, value in EXPERIMENT.items():
            expect(page).to_have_url(re.compile(rf"[?&]{re.escape(key)}={re.escape(urlencode({'': value})[1:])}"
                                                rf"(&|$)"))

        # The shared map: hovering an image point shows its thumbnail.
        shared_map = chart_titled(page, MAP_TITLE)
        expect(shared_map).to_have_count(1)
        points = symbols(shared_map)
        expect(points).to_have_count(N_IMAGES + 2 * 6 + 2)  # synthetic, natural, prompts
        tooltip_img = page.locator("#vg-tooltip-element.visible img")
        for i in range(points.count()):
            points.nth(i).hover(force=True)
            try:
                expect(tooltip_img).to_be_visible(timeout=3_000)
                break
            except AssertionError:
                if i == points.count() - 1:
                    raise
        assert (tooltip_img.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
        page.mouse.move(0, 0)

        # 2. Train on synthetic, through the sidebar: the session brings the experiment back.
        page.get_by_test_id("stSidebarNavLink").get_by_text("Train on synthetic", exact=True).click()
        expect(page.get_by_role("heading", name="Diversity vs accuracy", exact=True)).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        expect(page).to_have_url(re.compile(r"[?&]classes=tench%2Cchurch(&|$)"))
        expect(page.get_by_text("Click a point to see that class's images.")).to_be_visible()
        diversity = chart_titled(page, DIVERSITY_TITLE)
        expect(symbols(diversity)).to_have_count(2)
        click_a_point_until(page, symbols(diversity),
                            # plain text (st.text), not a heading: it quotes a class and its prompt
                            page.get_by_text(re.compile(r"^(tench|church): synthetic images")))
        wait_idle(page)
        expect(page.get_by_text("Click a point to see that class's images.")).to_have_count(0)

        # 3. CLIP geometry: clicking a class shows its projection on the synthetic direction.
        page.get_by_test_id("stSidebarNavLink").get_by_text("CLIP geometry", exact=True).click()
        expect(page.get_by_role("heading", name="Is there one 'synthetic direction'?")).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        closeness = chart_titled(page, CLOSENESS_TITLE)
        expect(symbols(closeness)).to_have_count(2)
        click_a_point_until(page, symbols(closeness),
                            page.get_by_role("heading", name=re.compile(r"^Selected: (tench|church)$")))
        wait_idle(page)
        expect(page.locator("[aria-label^=\"Title text '\"][aria-label$=\": images along the mean offset'\"]")) \
            .to_have_count(1)
