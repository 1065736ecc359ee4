"""End to end: the three class-list pages in a real browser (system Chromium driven by Playwright), with the
offline tiny-random generator and CLIP model and the shared Imagenette photos.

A fresh `streamlit run Home.py` server (its own cache in a temp dir) is opened on a deep link to Synthetic vs
natural carrying the whole experiment (2 classes, 4 synthetic images and 6 natural photos each). The test presses
Generate, hovers a point of the shared map for its thumbnail, then moves to Train on synthetic and to CLIP geometry
through the sidebar (the session must remember the experiment: the browser drops the query string) and clicks a
point of each page's interactive chart to see its effect.

Helpers copied from tests/test_e2e.py (server fixture, browser, failure screenshots, idle wait). Needs Chromium on
PATH: skipped locally without it, a failure in CI (CI set). On failure a screenshot is saved to
test-artifacts/e2e-<test name>.png and the server's stderr tail is added to the message.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
NATURAL_ROOT = (REPO_ROOT.parent / "shared" / "data" / "imagenette224").resolve()
ARTIFACTS = REPO_ROOT / "test-artifacts"

STARTUP_TIMEOUT_S = 60
EXPECT_TIMEOUT_MS = 20_000
RUN_TIMEOUT_MS = 150_000  # the first run loads the libraries and the tiny models, generates and embeds
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
EXPERIMENT = {"classes": "tench,church", "n": "4", "n_nat": "6", "generator": "tiny-random", "clip": "tiny-random",
              "ref": "folder:imagenette224"}
N_IMAGES = 2 * 4
MAP_TITLE = "Synthetic images, natural photos and prompts in CLIP space (PCA)"
DIVERSITY_TITLE = "One point per class: diversity of its synthetic set vs its accuracy (click a point)"
CLOSENESS_TITLE = "Nearer its prompt: synthetic or natural? (click a class)"


# --- the app server (as tests/test_e2e.py) ------------------------------------------------------------------------

class AppServer:
    def __init__(self, proc: subprocess.Popen, port: int, stderr_path: Path):
        self.proc, self.port, self.stderr_path = proc, port, stderr_path
        self.url = f"http://127.0.0.1:{port}"

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server stderr: {exc})"
        return text[-chars:] if text.strip() else "(server stderr is empty)"

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().decode().strip() == "ok"
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def app_server(tmp_path, tiny_folder) -> AppServer:
    """A fresh Streamlit server on a free port with an empty cache (plus the tiny model, copied rather than
    rebuilt); always stopped afterwards."""
    port = _free_port()
    logs = tmp_path / "server"
    logs.mkdir()
    cache = tmp_path / "cache"
    shutil.copytree(tiny_folder, cache / "models" / tiny_folder.name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DDL_CACHE_DIR": str(cache),
           "DDL_NATURAL_ROOTS": str(NATURAL_ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless=true",
           "--server.address=127.0.0.1", f"--server.port={port}", "--browser.gatherUsageStats=false",
           "--server.fileWatcherType=none"]
    with open(logs / "stdout.log", "wb") as out, open(logs / "stderr.log", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = AppServer(proc, port, logs / "stderr.log")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(server.url):
            if proc.poll() is not None:
                pytest.fail(f"The Streamlit server exited with code {proc.returncode} before it was healthy.\n"
                            f"--- server stderr ---\n{server.stderr_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"The Streamlit server was not healthy after {STARTUP_TIMEOUT_S} s.\n"
                            f"--- server stderr ---\n{server.stderr_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        server.stop()


# --- the browser (as tests/test_e2e.py) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def e2e_browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "Chromium is not on PATH: the e2e test drives the system Chromium (apt-get install chromium)."
        if os.environ.get("CI"):
            pytest.fail(message + " In CI this test must run, not be skipped.")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def e2e_page(e2e_browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = e2e_browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
        expect.set_options(timeout=5_000)


def _full_page_screenshot(page, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        height = page.evaluate("""() => Math.max(document.documentElement.scrollHeight,
            ...[...document.querySelectorAll('*')].filter(e => e.scrollHeight > e.clientHeight + 1 &&
                ['auto', 'scroll'].includes(getComputedStyle(e).overflowY)).map(e => e.scrollHeight))""")
        page.set_viewport_size({"width": 1400, "height": int(min(max(height, 1000), 12_000))})
    except Exception:
        pass
    page.screenshot(path=str(path), full_page=True)


@contextlib.contextmanager
def failure_report(page, server: AppServer, name: str):
    try:
        yield
    except Exception as exc:
        shot = ARTIFACTS / f"e2e-{name}.png"
        try:
            _full_page_screenshot(page, shot)
            where = f"Screenshot: {shot}"
        except Exception as shot_exc:  # noqa: BLE001 - the original failure matters more
            where = f"(no screenshot: {shot_exc})"
        raise AssertionError(f"{exc}\n\n{where}\nPage URL: {page.url}\n"
                             f"--- server stderr (tail) ---\n{server.stderr_tail()}") from exc


def wait_idle(page, timeout: float = RUN_TIMEOUT_MS, settle_ms: int = 300) -> None:
    """Wait until the script has stopped running for `settle_ms` in a row (see tests/test_e2e.py)."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.evaluate("() => { window.__e2eIdleSince = null; }")
    page.wait_for_function(
        """settle => { const app = document.querySelector("[data-testid='stApp']"), now = performance.now();
                       if (!app || app.dataset.testScriptState !== 'notRunning') { window.__e2eIdleSince = null;
                                                                                  return false; }
                       window.__e2eIdleSince ??= now;
                       return now - window.__e2eIdleSince >= settle; }""",
        arg=settle_ms, polling=50, timeout=timeout)


def chart(page, title: str):
    return page.get_by_test_id("stVegaLiteChart").filter(has=page.locator(f"[aria-label=\"Title text '{title}'\"]"))


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
        shared_map = chart(page, MAP_TITLE)
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
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Train on synthetic").click()
        expect(page.get_by_role("heading", name="Diversity vs accuracy", exact=True)).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        expect(page).to_have_url(re.compile(r"[?&]classes=tench%2Cchurch(&|$)"))
        expect(page.get_by_text("Click a point to see that class's images.")).to_be_visible()
        diversity = chart(page, DIVERSITY_TITLE)
        expect(symbols(diversity)).to_have_count(2)
        click_a_point_until(page, symbols(diversity),
                            page.get_by_role("heading", name=re.compile(r"^(tench|church): synthetic images")))
        wait_idle(page)
        expect(page.get_by_text("Click a point to see that class's images.")).to_have_count(0)

        # 3. CLIP geometry: clicking a class shows its projection on the synthetic direction.
        page.get_by_test_id("stSidebarNavLink").filter(has_text="CLIP geometry").click()
        expect(page.get_by_role("heading", name="Is there one 'synthetic direction'?")).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        closeness = chart(page, CLOSENESS_TITLE)
        expect(symbols(closeness)).to_have_count(2)
        click_a_point_until(page, symbols(closeness),
                            page.get_by_role("heading", name=re.compile(r"^Selected: (tench|church)$")))
        wait_idle(page)
        expect(page.locator("[aria-label^=\"Title text '\"][aria-label$=\": images along the mean offset'\"]")) \
            .to_have_count(1)
