"""What every real-browser test shares: a fresh `streamlit run Home.py` server on loopback, failure screenshots,
the idle wait and form steps. The browser fixtures (`e2e_browser`, `e2e_page`) live in conftest.py.

Chromium comes from the system (`apt-get install chromium`; Playwright cannot download browsers here). Without it
the tests are skipped locally and fail in CI (CI set), where they must run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"

STARTUP_TIMEOUT_S = 60
EXPECT_TIMEOUT_MS = 20_000  # two CPU cores and a model in the same process: Playwright's 5 s is too tight
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


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


@contextlib.contextmanager
def serve(workdir: Path, natural_roots: list[Path], cache: Path | None = None):
    """A fresh Streamlit server on a free port, its cache in `workdir/cache` (or `cache`), logs in
    `workdir/server`; yields once it is healthy, always stopped afterwards."""
    port = _free_port()
    logs = workdir / "server"
    logs.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "DDL_CACHE_DIR": str(cache or workdir / "cache"),
           "DDL_NATURAL_ROOTS": os.pathsep.join(map(str, natural_roots)), "PYTHONUNBUFFERED": "1"}
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
    except Exception as exc:  # assertions, Playwright timeouts, a bad zip: all get the screenshot and the log
        shot = ARTIFACTS / f"e2e-{name}.png"
        try:
            _full_page_screenshot(page, shot)
            where = f"Screenshot: {shot}"
        except Exception as shot_exc:  # noqa: BLE001 - the original failure matters more
            where = f"(no screenshot: {shot_exc})"
        raise AssertionError(f"{exc}\n\n{where}\nPage URL: {page.url}\n"
                             f"--- server stderr (tail) ---\n{server.stderr_tail()}") from exc


def wait_idle(page, timeout: float, settle_ms: int = 300) -> None:
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


def choose(page, label: str, option_prefix: str, idle_timeout: float) -> None:
    """Pick the option whose label starts with `option_prefix` in the selectbox labelled `label`."""
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=label, exact=True)
    option = page.get_by_role("option", name=re.compile("^" + re.escape(option_prefix)))
    for attempt in range(3):  # a rerun landing just after the click can close the list again: open it anew
        wait_idle(page, idle_timeout)
        box.click()
        try:
            option.click(timeout=5_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    expect(box).to_have_value(re.compile("^" + re.escape(option_prefix)))


def chart_titled(page, title: str):
    return page.get_by_test_id("stVegaLiteChart").filter(has=page.locator(f"[aria-label=\"Title text '{title}'\"]"))
