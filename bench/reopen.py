"""Benchmark 2: reopening a cached run vs generating it.

A 64-image tiny-random run (64 px, 4 steps, the CPU batch size) is generated into a fresh cache (timed, repeated),
then reopened:
- in-process `cached_images(...)` for all 64 seeds: index lookup + sha256 check of every PNG (what the Diversity
  page does once the settings are known);
- in-process "page path": Cache() + locate_generator + resolve_settings + cached_images, with everything already
  imported (a rerun/reload inside a running Streamlit server);
- a fresh Python process, end to end up to the list of cached images (imports + resolve_settings + cached_images,
  no pipeline load): the cold-start cost.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .overhead import lab_run
from .stats import Row, Samples, Stopwatch, fmt_s

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a photo of a tench"


def bench_reopen(pipe, folder: Path, device, n: int, gen_repeats: int, reopen_repeats: int, fresh_repeats: int,
                 tmp_root: Path, log, keep_cache: bool = False) -> tuple[list[Row], Path | None]:
    """The rows, and (keep_cache) the cache holding the generated run, for the page benchmark to reuse."""
    from core.pipeline.cache import Cache
    from core.pipeline.generate import RunRequest, cached_images, default_batch_size, resolve_settings
    from core.pipeline.models import locate_generator
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    preset = GENERATORS[TINY_RANDOM]
    req = RunRequest(PROMPT, n=n, generator=TINY_RANDOM, steps=4, size=64, clip=TINY_RANDOM).with_preset_defaults(
        preset)
    settings = resolve_settings(req, folder, device)
    batch = default_batch_size(device)
    log(f"[reopen] {n} images, {settings.width} px, {settings.steps} steps, batch {batch}: generate x{gen_repeats}, "
        f"reopen x{reopen_repeats}, fresh process x{fresh_repeats}")

    gen = Samples()
    root = None
    for i in range(gen_repeats):
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        sw, _, root = lab_run(pipe, settings, req.prompt, req.seeds, batch, tmp_root, keep=True)
        gen.add(sw.wall, sw.cpu)
        log(f"[reopen] generate {i + 1}/{gen_repeats}: {fmt_s(sw.wall)}")
    cache = Cache(root)

    def reopen_once():
        with Stopwatch() as sw:
            images = cached_images(settings, req.prompt, req.seeds, cache)
        if len(images) != n:
            raise RuntimeError(f"reopen found {len(images)} of {n} images")
        return sw

    def page_once():
        with Stopwatch() as sw:
            c = Cache(root)
            s = resolve_settings(req, locate_generator(preset), device)
            images = cached_images(s, req.prompt, req.seeds, c)
        if len(images) != n:
            raise RuntimeError(f"page-path reopen found {len(images)} of {n} images")
        return sw

    reopen_once(), page_once()  # warm-up: SQLite, the page cache, lazy imports
    reopen, page = Samples(), Samples()
    for _ in range(reopen_repeats):
        sw = reopen_once()
        reopen.add(sw.wall, sw.cpu)
        sw = page_once()
        page.add(sw.wall, sw.cpu)
    log(f"[reopen] in-process cached_images: median {fmt_s(reopen.median)}; page path (Cache + locate + "
        f"resolve_settings + cached_images): median {fmt_s(page.median)}")

    fresh = Samples()
    phases = []
    cmd = [sys.executable, "-m", "bench.reopen_child", str(root), req.prompt, str(n), str(settings.steps),
           str(settings.width)]
    for i in range(fresh_repeats + 1):  # the first one warms the OS page cache for torch & co: not counted
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ))
        line = proc.stdout.readline()  # printed as soon as the list of cached images is there
        wall = time.perf_counter() - t
        _, err = proc.communicate()
        exited = time.perf_counter() - t
        if proc.returncode != 0 or not line.strip():
            raise RuntimeError(f"the fresh-process reopen failed:\n{err[-3000:]}")
        result = json.loads(line)
        if result["found"] != n:
            raise RuntimeError(f"the fresh process found {result['found']} of {n} images")
        if i == 0:
            log(f"[reopen] fresh process warm-up: {fmt_s(wall)}")
            continue
        fresh.add(wall)
        marks = result["marks"]
        steps, prev = {"interpreter_start": wall - marks["cached_images"]}, 0.0
        for name, at in marks.items():
            steps[name] = at - prev
            prev = at
        steps["exit_after"] = exited - wall  # not counted: the images are listed before the process ends
        phases.append(steps)
        log(f"[reopen] fresh process {i}/{fresh_repeats}: {fmt_s(wall)} ("
            + ", ".join(f"{k} {fmt_s(v)}" for k, v in steps.items()) + ")")
    if not keep_cache:
        shutil.rmtree(root, ignore_errors=True)
        root = None

    phase_median = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    pm = phase_median
    fresh_note = ("fresh process, median phases: interpreter start " + fmt_s(pm["interpreter_start"])
                  + ", import core " + fmt_s(pm["import_core"])
                  + ", select_device (imports torch) " + fmt_s(pm["select_device"])
                  + ", resolve_settings "
                  + fmt_s(pm["resolve_settings"]) + ", cached_images " + fmt_s(pm["cached_images"]))
    common = {"images": n, "size": settings.width, "steps": settings.steps, "batch": batch,
              "generate_repeats": gen_repeats}
    rows = [
        Row(benchmark=f"reopen {n} img: cached_images vs generate", lab_label="reopen", other_label="gen",
            lab=reopen, other=gen, ratio=gen.median / reopen.median, ratio_kind="gen/reopen", target=">= 100x",
            ok=gen.median / reopen.median >= 100,
            details={**common, "reopen_repeats": reopen_repeats, "reopen_median_ms": reopen.median * 1e3}),
        Row(benchmark=f"reopen {n} img: page path, warm process", lab_label="reopen", other_label="gen",
            lab=page, other=gen, ratio=gen.median / page.median, ratio_kind="gen/reopen", target="info", ok=None,
            details={**common, "what": "Cache() + locate_generator + resolve_settings + cached_images, imports done"}),
        Row(benchmark=f"reopen {n} img: fresh Python process", lab_label="reopen", other_label="gen",
            lab=fresh, other=gen, ratio=gen.median / fresh.median, ratio_kind="gen/reopen", target="info", ok=None,
            details={**common, "fresh_repeats": fresh_repeats, "phase_median_s": phase_median}, note=fresh_note),
    ]
    return rows, root
