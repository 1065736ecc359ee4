"""Benchmark (`--only dataset`, or `python -m bench.dataset [--n N]`): a 100,000-image dataset in the app.

A synthetic sweep output (core.pipeline.tiny_dataset: 100 prompts, 512-d unit embeddings, 80 px thumbnails, shards of
1,024 rows) is written (not timed), then a fresh `streamlit run Home.py` server (DDL_DATASETS names the folder, an empty
cache) is driven by the system Chromium (Playwright):
- **open -> statistics**: from navigating to the Open a dataset page until its diversity statistics over every
  image are on screen (the dataset's index and embeddings read, the statistics computed: a server that has never
  seen the dataset). Target < 5 s.
- **map, first render**: a new tab on the same page once the projection and the tooltip thumbnails are stored (they
  are computed once per dataset; the time of that first computation is printed too): from navigation until deck.gl
  has drawn its first frame of every point. Target < 3 s.
- **server memory**: the server process's peak resident set (VmHWM) after both. Target < 2 GB.
Each is measured `repeats` times on fresh servers (the first two) or read once (memory); medians are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .stats import Row, Samples, fmt_s

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
TARGETS = {"open": 5.0, "map": 3.0, "memory": 2 * 1024**3}


@contextlib.contextmanager
def _server(cache: Path, dataset: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DDL_CACHE_DIR": str(cache), "DDL_DATASETS": str(dataset), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless=true", "--server.address=127.0.0.1",
           f"--server.port={port}", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
           "--server.maxMessageSize=1000"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the Streamlit server did not start")
            time.sleep(0.25)
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _peak_rss(pid: int) -> int:
    """The process's peak resident set in bytes (its children included: none here)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _deck_drawn(page, timeout_ms: float) -> None:
    """deck.gl's canvas is on the page and two animation frames have passed since (its first draw is done)."""
    page.wait_for_selector("[data-testid='stDeckGlJsonChart'] canvas", state="visible", timeout=timeout_ms)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def bench_dataset(n: int, repeats: int, tmp_root: Path, log) -> list[Row]:
    from playwright.sync_api import sync_playwright

    from core.pipeline.tiny_dataset import write_synthetic_dataset

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("the dataset benchmark drives the system Chromium: apt-get install chromium")
    folder = tmp_root / "dataset"
    start = time.perf_counter()
    write_synthetic_dataset(folder, n, 512, prompts=[f"a photo of class {i}" for i in range(100)], title="bench")
    log(f"[dataset] wrote a synthetic dataset of {n:,} images in {fmt_s(time.perf_counter() - start)} (not counted)")
    opens, maps, first_map, peaks = Samples(), Samples(), Samples(), []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for i in range(repeats):
                cache = Path(tempfile.mkdtemp(prefix="cache-", dir=tmp_root))
                with _server(cache, folder) as (url, pid):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto(f"{url}/open_dataset")
                    page.get_by_text(f"n = {n:,}: every image").wait_for(timeout=300_000)
                    opens.add(time.perf_counter() - t0)
                    _deck_drawn(page, 900_000)  # the first time: the projection and thumbnails are made, then stored
                    first_map.add(time.perf_counter() - t0)
                    page.wait_for_selector(IDLE, timeout=300_000)
                    page.close()
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto(f"{url}/open_dataset")
                    _deck_drawn(page, 300_000)
                    maps.add(time.perf_counter() - t0)
                    page.wait_for_selector(IDLE, timeout=300_000)
                    page.close()
                    peaks.append(_peak_rss(pid))
                log(f"[dataset] repeat {i + 1}/{repeats}: open -> statistics {fmt_s(opens.wall[-1])}, first map "
                    f"(computed) {fmt_s(first_map.wall[-1])}, map first render {fmt_s(maps.wall[-1])}, server peak "
                    f"{peaks[-1] / 2**20:.0f} MB")
                shutil.rmtree(cache, ignore_errors=True)
        finally:
            browser.close()
    peak = Samples()
    for b in peaks:
        peak.add(b / 2**30)
    return [
        Row(benchmark=f"open a {n:,}-image dataset -> statistics on screen (fresh server)", lab_label="open",
            other_label="target", lab=opens, other=None, ratio=opens.median / TARGETS["open"],
            ratio_kind="time/target", target="< 5 s", ok=opens.median < TARGETS["open"]),
        Row(benchmark=f"map of {n:,} points: first render in Chromium (projection stored)", lab_label="render",
            other_label="target", lab=maps, other=None, ratio=maps.median / TARGETS["map"], ratio_kind="time/target",
            target="< 3 s", ok=maps.median < TARGETS["map"]),
        Row(benchmark=f"map of {n:,} points: first open, projection + thumbnails computed (info)",
            lab_label="first", other_label="-", lab=first_map, other=None, ratio=None, ratio_kind="",
            target="info", ok=None),
        Row(benchmark="server peak memory (VmHWM, GiB; the 'time' columns hold GiB)", lab_label="peak",
            other_label="target", lab=peak, other=None, ratio=peak.median * 2**30 / TARGETS["memory"],
            ratio_kind="peak/target", target="< 2 GB", ok=peak.median * 2**30 < TARGETS["memory"]),
    ]


def main(argv=None) -> int:
    from .stats import format_table

    p = argparse.ArgumentParser(prog="python -m bench.dataset", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        rows = bench_dataset(args.n, args.repeats, Path(tmp), lambda m: print(m, flush=True))
    print(format_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
