"""End to end: the Diversity page's HTML report in a real browser (system Chromium driven by Playwright), with the
offline tiny-random models.

A fresh `streamlit run Home.py` server (empty cache) opens a link carrying the settings (4 images, tiny-random, the
Imagenette tench photos as reference); Generate; "Download report (HTML)"; the saved file is then opened from disk
(file://) and read like a colleague would: its title, its charts loaded as images, the page's reading and numbers,
and the settings table. The browser must not request anything but the file itself.

Needs Chromium on PATH (`apt-get install chromium`). Without it the test is skipped locally and fails in CI. On
failure a screenshot is saved to test-artifacts/e2e-<test name>.png with the server's stderr tail in the message.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from e2e_support import failure_report, serve
from e2e_support import wait_idle as _wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_MS = 120_000  # the first run builds the tiny models (about 10 s on 2 cores) and generates
PROMPT = "a photo of a tench"
N = 4
PARAMS = {"prompt": PROMPT, "n": str(N), "generator": "tiny-random", "clip": "tiny-random",
          "ref": "folder:imagenette224", "ref_class": "tench"}
TITLE = f"Lack of diversity: {PROMPT}"


@pytest.fixture
def app_server(tmp_path, imagenette_dir):
    with serve(tmp_path, [imagenette_dir]) as server:
        yield server


def test_diversity_html_report_opens_from_disk_with_its_charts_numbers_and_settings(e2e_page, app_server, tmp_path,
                                                                                    request):
    from playwright.sync_api import expect

    page = e2e_page
    with failure_report(page, app_server, request.node.name):
        # 1. The run, from a link that carries its settings.
        page.goto(f"{app_server.url}/diversity?{urlencode(PARAMS)}")
        generate = page.get_by_test_id("stFormSubmitButton").get_by_role("button", name="Generate")
        expect(generate).to_be_visible(timeout=60_000)
        _wait_idle(page, 60_000)
        generate.click()
        expect(page.get_by_text(f"{N} images generated")).to_be_visible(timeout=RUN_TIMEOUT_MS)
        button = page.get_by_test_id("stDownloadButton").get_by_role("button", name="Download report (HTML)")
        expect(button).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_idle(page, RUN_TIMEOUT_MS)
        reading = page.get_by_text(re.compile(r"^Synthetic Vendi .* \(n=4\) vs natural"))
        expect(reading).to_be_visible()
        shown_reading = reading.inner_text().strip()

        # 2. The download: built on the click (charts drawn then), the page not rerun.
        with page.expect_download(timeout=60_000) as download_info:
            button.click()
        assert download_info.value.suggested_filename.startswith("diversity-report-")
        assert download_info.value.suggested_filename.endswith(f"-n{N}.html")
        saved = tmp_path / "report.html"
        download_info.value.save_as(saved)
        expect(page.get_by_text(f"{N} images generated")).to_be_visible()  # no rerun: the message is still there

    # 3. The saved file, opened from disk in a new tab.
    report = page.context.new_page()
    requested: list[str] = []
    report.on("request", lambda r: requested.append(r.url))
    with failure_report(report, app_server, request.node.name + "-file"):
        report.goto(saved.as_uri())
        assert report.title() == TITLE
        expect(report.get_by_role("heading", level=1)).to_have_text(TITLE)
        # Every image has loaded (decoded pixels): the 3 charts and the 4 thumbnails.
        report.wait_for_function("""() => { const imgs = [...document.images];
            return imgs.length === 7 && imgs.every(i => i.complete && i.naturalWidth > 0); }""")
        chart = report.get_by_role("img", name="CLIP image embeddings (PCA)")
        expect(chart).to_be_visible()
        assert chart.evaluate("i => i.naturalWidth") >= 2 * chart.evaluate("i => i.clientWidth") - 2  # 2x for slides
        # The page's reading and its numbers with n, visible.
        expect(report.get_by_text(shown_reading)).to_be_visible()
        vendi = report.get_by_role("row").filter(has_text="Vendi score").filter(has_text="synthetic")
        expect(vendi).to_have_count(1)
        expect(vendi).to_be_visible()
        expect(vendi.get_by_role("cell").nth(2)).to_have_text(re.compile(r"^\d+\.\d{3} \[\d+\.\d{3}, \d+\.\d{3}\]$"))
        expect(vendi.get_by_role("cell").nth(3)).to_have_text(str(N))
        # The settings table.
        expect(report.get_by_role("heading", name="Settings")).to_be_visible()
        prompt_row = report.get_by_role("row").filter(has_text="request.prompt")
        expect(prompt_row).to_have_count(1)
        expect(prompt_row.get_by_role("cell").nth(1)).to_have_text(PROMPT)
        expect(report.get_by_role("row").filter(has_text="generator revision")).to_be_visible()
        # Nothing but the file itself was fetched.
        assert requested and all(u.startswith(("file://", "data:")) for u in requested), requested
