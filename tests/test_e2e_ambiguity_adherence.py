"""End to end: the Ambiguity and Adherence pages in a real browser (system Chromium driven by Playwright), with the
offline tiny-random generator and CLIP model.

One fresh `streamlit run Home.py` server (its own empty cache in a temp dir) serves both tests, so the heavy imports
and the tiny models are paid once. Ambiguity: the crane preset through the form, the variants chart (three prompt
variants x two senses), the settings in the URL, and a reload that comes back from the cache. Adherence: a run with
natural photos, then a guidance sweep (its chart and image strips), and a reload that comes back from the cache.

Needs Chromium on PATH (`apt-get install chromium`; Playwright cannot download browsers here). Without it the tests
are skipped locally and fail in CI (CI set), where they must run. On failure a screenshot is saved to
test-artifacts/e2e-<test name>.png and the server's stderr tail is added to the message.
(The server, browser and failure-report helpers follow tests/test_e2e.py.)
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

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()
NATURAL_ROOTS = [SHARED_DATA / "imagenette224", SHARED_DATA / "imagenet_samples_ambiguous"]
ARTIFACTS = REPO_ROOT / "test-artifacts"

STARTUP_TIMEOUT_S = 60
EXPECT_TIMEOUT_MS = 20_000
RUN_TIMEOUT_MS = 180_000  # the first run builds the tiny models and generates 12 images on 2 shared cores
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
N = 4
SHARES_TITLE = "Sense shares by prompt variant"
SWEEP_TITLE = "Adherence and diversity against guidance"


# --- the app server -----------------------------------------------------------------------------------------------

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
        # The server runs in its own session (process group): end it and anything it started.
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


@pytest.fixture(scope="module")
def app_server(tmp_path_factory) -> AppServer:
    """A fresh Streamlit server on a free port with an empty cache, shared by this module's tests; always stopped."""
    for root in NATURAL_ROOTS:
        if not root.is_dir():
            pytest.fail(f"The shared test photos are missing: expected {root} (shared/ beside the repo).")
    tmp_path = tmp_path_factory.mktemp("e2e-ambiguity-adherence")
    port = _free_port()
    logs = tmp_path / "server"
    logs.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "DDL_CACHE_DIR": str(tmp_path / "cache"), "DDL_NATURAL_ROOTS": os.pathsep.join(map(str, NATURAL_ROOTS)),
           "PYTHONUNBUFFERED": "1"}
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


# --- the browser --------------------------------------------------------------------------------------------------

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

    # Two CPU cores and a model in the same process: 5 s (Playwright's default) is too tight for a rerun.
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
    """Streamlit scrolls inside its main container, not the document: grow the viewport to the content first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        height = page.evaluate("""() => Math.max(document.documentElement.scrollHeight,
            ...[...document.querySelectorAll('*')].filter(e => e.scrollHeight > e.clientHeight + 1 &&
                ['auto', 'scroll'].includes(getComputedStyle(e).overflowY)).map(e => e.scrollHeight))""")
        page.set_viewport_size({"width": 1400, "height": int(min(max(height, 1000), 12_000))})
    except Exception:  # a crashed page still gets whatever screenshot it can
        pass
    page.screenshot(path=str(path), full_page=True)


@contextlib.contextmanager
def failure_report(page, server: AppServer, name: str):
    """On any failure: save a screenshot and re-raise with the server's stderr tail in the message."""
    try:
        yield
    except Exception as exc:  # assertions, Playwright timeouts: all get the screenshot and the log
        shot = ARTIFACTS / f"e2e-{name}.png"
        try:
            _full_page_screenshot(page, shot)
            where = f"Screenshot: {shot}"
        except Exception as shot_exc:  # noqa: BLE001 - the original failure matters more
            where = f"(no screenshot: {shot_exc})"
        raise AssertionError(f"{exc}\n\n{where}\nPage URL: {page.url}\n"
                             f"--- server stderr (tail) ---\n{server.stderr_tail()}") from exc


# --- steps ----------------------------------------------------------------------------------------------------------

def choose(page, label: str, option_prefix: str) -> None:
    """Pick the option whose label starts with `option_prefix` in the selectbox labelled `label`."""
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=label, exact=True)
    option = page.get_by_role("option", name=re.compile("^" + re.escape(option_prefix)))
    for attempt in range(3):  # a rerun landing just after the click can close the list again: open it anew
        wait_idle(page)
        box.click()
        try:
            option.click(timeout=5_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    expect(box).to_have_value(re.compile("^" + re.escape(option_prefix)))


def wait_idle(page, timeout: float = RUN_TIMEOUT_MS, settle_ms: int = 300) -> None:
    """Wait until the script has stopped running for `settle_ms` in a row: the state flickers to notRunning
    between a run and the rerun it asks for (st.rerun, a widget's rerun), so one sighting is not enough."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.evaluate("() => { window.__e2eIdleSince = null; }")
    page.wait_for_function(
        """settle => { const app = document.querySelector("[data-testid='stApp']"), now = performance.now();
                       if (!app || app.dataset.testScriptState !== 'notRunning') { window.__e2eIdleSince = null;
                                                                                  return false; }
                       window.__e2eIdleSince ??= now;
                       return now - window.__e2eIdleSince >= settle; }""",
        arg=settle_ms, polling=50, timeout=timeout)


def open_deep_link(page, server: AppServer, path: str, heading: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/{path}")
    # The first run imports the heavy libraries: give it time, then let any rerun it asked for finish.
    expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Generate")).to_be_visible(timeout=60_000)
    wait_idle(page, timeout=60_000)


def pick_tiny_models(page, size_label: str = "Size (px)") -> None:
    from playwright.sync_api import expect

    choose(page, "Generator", "tiny-random")
    # Choosing a generator reruns the page with its defaults: wait for that rerun to land and finish.
    expect(page.get_by_role("spinbutton", name=size_label)).to_have_value("64")
    wait_idle(page)
    choose(page, "CLIP model", "tiny-random")


def chart_titled(page, title: str):
    return page.get_by_test_id("stVegaLiteChart").filter(has=page.locator(f"[aria-label=\"Title text '{title}'\"]"))


def generate(page, expected_count: int) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("stFormSubmitButton").get_by_role("button", name="Generate").click()
    success = page.get_by_test_id("stAlert").filter(has_text=f"{expected_count} images generated")
    expect(success).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_idle(page)


def test_ambiguity_variants_chart_url_and_reload(e2e_page, app_server, request):
    from playwright.sync_api import expect

    page = e2e_page
    with failure_report(page, app_server, request.node.name):
        open_deep_link(page, app_server, "ambiguity", "Ambiguity")
        links = page.get_by_test_id("stSidebarNavLink")
        expect(links.filter(has_text="Ambiguity")).to_have_count(1)
        expect(links.filter(has_text="Adherence")).to_have_count(1)

        # 1. The crane preset (the default) with the tiny models and N = 4 per variant.
        expect(page.get_by_role("textbox", name="Prompt (the ambiguous one)")).to_have_value("a photo of a crane")
        pick_tiny_models(page)
        n_input = page.get_by_role("spinbutton", name="Images per variant (N)")
        n_input.fill(str(N))
        expect(n_input).to_have_value(str(N))
        generate(page, 3 * N)  # the bare prompt and one variant per sense, same seeds

        # 2. The variants chart: three prompt variants x two senses, each with a share and an interval.
        chart = chart_titled(page, SHARES_TITLE)
        expect(chart).to_have_count(1)
        expect(chart.locator("path[aria-roledescription='point']")).to_have_count(3 * 2)
        for variant in ("a photo of a crane", "a photo of a crane, the bird",
                        "a photo of a crane, the construction machine"):
            expect(chart.get_by_text(variant, exact=True)).to_have_count(1)  # a y-axis label
        expect(page.get_by_text(re.compile(r"CLIP assigns \d of 4 images"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"Zero-shot sense accuracy on 2 labelled photos"))).to_be_visible()
        # Settings live in the URL.
        for param in ("preset=crane", f"n={N}", "generator=tiny-random", "clip=tiny-random", "styles=the-sense"):
            expect(page).to_have_url(re.compile(rf"[?&]{re.escape(param)}(&|$)"))
        expect(page).to_have_url(re.compile(r"[?&]senses=bird\+%7C\+crane\+bird"))
        run_url = page.url

        # 3. A reload reopens everything from the cache: no generation.
        page.reload()
        expect(page).to_have_url(run_url)
        expect(chart_titled(page, SHARES_TITLE)).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        expect(page.get_by_text("images generated")).to_have_count(0)
        expect(page.get_by_role("spinbutton", name="Images per variant (N)")).to_have_value(str(N))


def test_adherence_run_and_guidance_sweep(e2e_page, app_server, request):
    from playwright.sync_api import expect

    page = e2e_page
    with failure_report(page, app_server, request.node.name):
        # Three class names instead of ten keep the zero-shot text embeddings quick on 2 cores.
        open_deep_link(page, app_server, "adherence?classes=tench%2C+golf+ball%2C+parachute", "Adherence to prompt")
        pick_tiny_models(page)
        n_input = page.get_by_role("spinbutton", name="Images (N)")
        n_input.fill(str(N))
        expect(n_input).to_have_value(str(N))
        generate(page, N)
        expect(page.get_by_text(re.compile(r"Mean CLIPScore of the generated images .* vs natural photos"))) \
            .to_be_visible()
        expect(chart_titled(page, "CLIPScore against the prompt")).to_have_count(1)
        expect(chart_titled(page, "Rank of the intended class among the class names")).to_have_count(1)

        # The guidance sweep: 1 and 7.5 (the run's own guidance: reused from the cache).
        values = page.get_by_role("textbox", name="Guidance values (comma-separated)")
        values.fill("1, 7.5")
        expect(values).to_have_value("1, 7.5")
        page.get_by_role("button", name="Run sweep").click()
        success = page.get_by_test_id("stAlert").filter(has_text=f"{N} images generated, {N} reused from the cache")
        expect(success).to_be_visible(timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        sweep = chart_titled(page, SWEEP_TITLE)
        expect(sweep).to_have_count(1)
        for metric in ("mean CLIPScore", "Vendi score", "mean pairwise cosine"):
            expect(sweep.get_by_text(metric, exact=True)).to_have_count(1)
        expect(page.get_by_text(re.compile(r"^guidance 1$"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^guidance 7\.5$"))).to_be_visible()
        expect(page).to_have_url(re.compile(r"[?&]sweep=guidance(&|$)"))
        expect(page).to_have_url(re.compile(r"[?&]sweep_values=1%2C\+7\.5(&|$)"))

        # A reload shows the run and the sweep again, from the cache.
        page.reload()
        expect(chart_titled(page, SWEEP_TITLE)).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        wait_idle(page)
        expect(page.get_by_text("images generated")).to_have_count(0)
        expect(page.get_by_role("button", name="Run sweep")).to_be_enabled()
