"""End to end: the Diversity page in a real browser (system Chromium driven by Playwright), with the offline
tiny-random generator and CLIP model.

A fresh `streamlit run Home.py` server (its own empty cache in a temp dir) is opened on the deep link /diversity,
so this also checks that a fresh server's first request routes through Home.py's st.navigation. The test then
generates 4 images, checks the grid, the success message and the URL, hovers a point of the embedding map for its
thumbnail, downloads the run's zip and reads it back, and reloads the page to see the run come back from the cache.

Needs Chromium on PATH (`apt-get install chromium`; Playwright cannot download browsers here). Without it the test
is skipped locally and fails in CI (CI set), where it must run. On failure a screenshot is saved to
test-artifacts/e2e-<test name>.png and the server's stderr tail is added to the message.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pytest
from e2e_support import REPO_ROOT, failure_report, serve
from e2e_support import choose as _choose
from e2e_support import wait_idle as _wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_MS = 120_000  # the first run builds the tiny models (about 10 s on 2 cores) and generates

PROMPT = "a photo of a tench"
N = 4
MAP_TITLE = "CLIP image embeddings (PCA)"


@pytest.fixture
def app_server(tmp_path, imagenette_dir):
    """A fresh Streamlit server on a free port with an empty cache; always stopped afterwards."""
    with serve(tmp_path, [imagenette_dir]) as server:
        yield server


def wait_idle(page, timeout: float = RUN_TIMEOUT_MS, settle_ms: int = 300) -> None:
    _wait_idle(page, timeout, settle_ms)


def choose(page, label: str, option_prefix: str) -> None:
    _choose(page, label, option_prefix, RUN_TIMEOUT_MS)


def assert_grid(page, n: int) -> None:
    from playwright.sync_api import expect

    images = page.get_by_test_id("stImage")
    expect(images).to_have_count(n, timeout=RUN_TIMEOUT_MS)
    expect(images.get_by_test_id("stImageCaption")).to_have_text([f"seed {i}" for i in range(n)])
    for i in range(n):
        expect(images.nth(i).locator("img")).to_be_visible()
    # Loaded, not just present: every grid image has decoded pixels.
    page.wait_for_function(
        """n => { const imgs = [...document.querySelectorAll("[data-testid='stImage'] img")];
                  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }""", arg=n)


def test_diversity_page_generate_hover_download_reload(e2e_page, app_server, tmp_path, request):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect

    page = e2e_page

    with failure_report(page, app_server, request.node.name):
        # A deep link as a fresh server's first request: routed through Home.py's st.navigation.
        page.goto(f"{app_server.url}/diversity")
        # The first run imports the heavy libraries: give it time, then let any rerun it asked for finish.
        expect(page.get_by_role("heading", name="Lack of diversity")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Generate")).to_be_visible(timeout=60_000)
        wait_idle(page, timeout=60_000)
        # Home.py's navigation, not pages/ mode (which would list file names such as "home" and "diversity").
        nav = page.get_by_test_id("stSidebarNavLink")
        # All of them (the lecturer's Classroom page is hidden from students): the menu is expanded, not cut at ten
        # with "View more".
        expect(nav).to_have_count(15)
        expect(nav).to_contain_text(["Home", "Diversity", "Ambiguity", "Adherence", "Synthetic vs natural",
                                     "Train on synthetic", "CLIP geometry", "Stable Bias portraits", "1. Ambiguity",
                                     "2. Adherence to prompt", "3. Lack of diversity", "4. Inability to represent",
                                     "5. CLIP geometry", "Demo packs", "Open a dataset"])

        # 1. The form.
        choose(page, "Generator", "tiny-random")
        # Choosing a generator reruns the page with its defaults: wait for that rerun to land and finish.
        expect(page.get_by_role("spinbutton", name="Size (px)")).to_have_value("64")
        wait_idle(page)
        choose(page, "CLIP model", "tiny-random")
        prompt = page.get_by_role("textbox", name="Prompt", exact=True)
        prompt.fill(PROMPT)
        expect(prompt).to_have_value(PROMPT)
        n_input = page.get_by_role("spinbutton", name="Images (N)")
        n_input.fill(str(N))
        expect(n_input).to_have_value(str(N))
        page.get_by_test_id("stFormSubmitButton").get_by_role("button", name="Generate").click()

        # 2. The run: success message, then the whole page (the download button comes last).
        success = page.get_by_test_id("stAlert").filter(has_text=f"{N} images generated")
        expect(success).to_be_visible(timeout=RUN_TIMEOUT_MS)
        download = page.get_by_test_id("stDownloadButton").get_by_role("button", name="Download this run (.zip)")
        expect(download).to_be_visible(timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        expect(success).to_contain_text(f"{N} images generated, 0 reused from the cache")
        assert_grid(page, N)
        # Settings live in the URL.
        expect(page).to_have_url(re.compile(r"[?&]prompt=a\+photo\+of\+a\+tench(&|$)"))
        for param in (f"n={N}", "generator=tiny-random", "clip=tiny-random"):
            expect(page).to_have_url(re.compile(rf"[?&]{re.escape(param)}(&|$)"))
        run_url = page.url

        # 3. The embedding map: hovering a point shows its thumbnail.
        chart = page.get_by_test_id("stVegaLiteChart").filter(
            has=page.locator(f"[aria-label=\"Title text '{MAP_TITLE}'\"]"))
        expect(chart).to_have_count(1)
        points = chart.locator("path[aria-roledescription='circle']")  # Streamlit renders Vega as SVG
        expect(points).to_have_count(N)
        tooltip_img = page.locator("#vg-tooltip-element.visible img")
        for i in range(N):  # a point may lie under another: the first that shows a tooltip will do
            points.nth(i).hover(force=True)
            try:
                expect(tooltip_img).to_be_visible(timeout=3_000)
                break
            except AssertionError:
                if i == N - 1:
                    raise
        assert (tooltip_img.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
        expect(page.locator("#vg-tooltip-element")).to_contain_text("seed ")
        page.mouse.move(0, 0)

        # 4. The run as a zip.
        try:
            with page.expect_download(timeout=30_000) as download_info:
                download.click()
        except PlaywrightTimeoutError as exc:
            pending = download.is_disabled()  # the button is disabled (spinner) while it awaits the server's reply
            raise AssertionError(
                "No download within 30 s of clicking 'Download this run (.zip)'"
                + ("; the button is still waiting for the server's reply. Streamlit 1.67 drops a deferred "
                   "file's reply (backend_operation_response) that is queued just before a rerun starts: the "
                   "click's own rerun clears the browser queue. st.download_button(..., on_click='ignore') "
                   "avoids that rerun." if pending else ".")) from exc
        saved = tmp_path / "run.zip"
        download_info.value.save_as(saved)
        assert download_info.value.suggested_filename.endswith(f"-n{N}.zip")
        with zipfile.ZipFile(saved) as z:
            names = set(z.namelist())
            pngs = {f"images/seed_{i}.png" for i in range(N)}
            assert pngs | {"images.csv", "embeddings.npy", "statistics.json", "settings.json"} <= names, names
            assert {n for n in names if n.endswith(".png")} == pngs
            for png in pngs:
                assert z.read(png).startswith(b"\x89PNG\r\n\x1a\n"), png
            embeddings = np.load(io.BytesIO(z.read("embeddings.npy")))
            assert embeddings.ndim == 2 and embeddings.shape[0] == N and embeddings.shape[1] > 0, embeddings.shape
            assert np.isfinite(embeddings).all()
            assert len(z.read("images.csv").decode().strip().splitlines()) == N + 1
            statistics = json.loads(z.read("statistics.json"))
            assert "synthetic" in statistics and statistics["synthetic"], statistics
            settings = json.loads(z.read("settings.json"))
            assert settings["request"]["prompt"] == PROMPT
            assert settings["request"]["n"] == N
            assert settings["request"]["generator"] == "tiny-random"
            assert settings["library_versions"].get("streamlit"), settings["library_versions"]
            for local in (REPO_ROOT, tmp_path):
                assert str(local) not in json.dumps(settings), f"settings.json names a local path ({local})"

        # 5. A reload shows the run again, from the cache, without pressing Generate.
        page.reload()
        expect(page).to_have_url(run_url)
        assert_grid(page, N)
        expect(page.get_by_test_id("stDownloadButton").filter(has_text="Download this run (.zip)")).to_be_visible()
        wait_idle(page)
        expect(page.get_by_text("images generated")).to_have_count(0)
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)  # nothing was generating
        expect(page.get_by_role("spinbutton", name="Images (N)")).to_have_value(str(N))
        expect(page.get_by_role("combobox", name="Generator", exact=True)).to_have_value(re.compile("^tiny-random"))
