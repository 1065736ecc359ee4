"""Several users at once: four browser sessions generate and analyse at the same time against one app process.

All finish, each sees only its own results, and the server's memory levels off across repeated rounds (the model
is loaded once and shared; per-session state is dropped). That the pipeline is never run by two threads at once is
checked directly in tests/test_faults.py (a pipeline that counts concurrent calls); here the same lock is exercised
by real sessions.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
from e2e_support import failure_report
from test_e2e import (  # noqa: F401 - app_server is a fixture used by name
    RUN_TIMEOUT_MS,
    app_server,
    assert_grid,
    wait_idle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SESSIONS = 4
N = 2
ROUNDS = 3


def server_rss_mb(pid: int) -> float:
    """Resident memory of the server process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run_url(base: str, prompt: str) -> str:
    params = {"prompt": prompt, "n": N, "generator": "tiny-random", "clip": "tiny-random"}
    return f"{base}/diversity?{urllib.parse.urlencode(params)}"


def test_four_sessions_generate_at_once_each_sees_its_own_run(e2e_browser, app_server, request):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=RUN_TIMEOUT_MS)
    contexts = [e2e_browser.new_context(viewport={"width": 1300, "height": 900}) for _ in range(SESSIONS)]
    pages = [c.new_page() for c in contexts]
    rss = []
    try:
        with failure_report(pages[0], app_server, request.node.name):
            for round_ in range(ROUNDS):
                prompts = [f"session {i} round {round_}: a photo of a tench" for i in range(SESSIONS)]
                # Each session opens its own settings (prefilled from the link) and waits for the page.
                for page, prompt in zip(pages, prompts):
                    page.goto(run_url(app_server.url, prompt))
                for page in pages:
                    expect(page.get_by_role("button", name="Generate")).to_be_visible(timeout=RUN_TIMEOUT_MS)
                    wait_idle(page)
                # All four press Generate before any has finished: the runs overlap on the server.
                for page in pages:
                    page.get_by_test_id("stFormSubmitButton").get_by_role("button", name="Generate").click()
                for page, prompt in zip(pages, prompts):
                    success = page.get_by_test_id("stAlert").filter(has_text=f"{N} images generated")
                    expect(success).to_be_visible(timeout=RUN_TIMEOUT_MS)
                    run_zip = page.get_by_test_id("stDownloadButton").filter(has_text="Download this run (.zip)")
                    expect(run_zip).to_be_visible(timeout=RUN_TIMEOUT_MS)
                    wait_idle(page)
                    expect(success).to_contain_text(f"{N} images generated, 0 reused from the cache")
                    assert_grid(page, N)
                    # Its own run, nobody else's: the caption names this session's prompt, the URL too.
                    caption = page.get_by_test_id("stCaptionContainer").filter(has_text="Run:")
                    expect(caption).to_have_count(1)
                    expect(caption).to_contain_text(prompt, timeout=10_000)
                    for other in prompts:
                        if other != prompt:
                            expect(caption).not_to_contain_text(other)
                    expect(page).to_have_url(re.compile(re.escape(urllib.parse.quote_plus(prompt))))
                    expect(page.get_by_test_id("stException")).to_have_count(0)
                rss.append(server_rss_mb(app_server.proc.pid))
    finally:
        for c in contexts:
            c.close()
        expect.set_options(timeout=5_000)
    # Round 1 loads the models and fills the caches; later rounds must not keep adding the same again.
    print(f"server RSS after each round (MB): {[round(r) for r in rss]}")
    growth = rss[-1] - rss[1]
    assert growth < 0.25 * rss[0], f"server RSS per round (MB): {[round(r) for r in rss]}"
