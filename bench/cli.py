"""The suite: parse options, print the machine's facts, run the benchmarks, print the table, write the JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from .stats import Row, Section, fmt_s, format_table

TINY_PROMPT = "a photo of a tench"
SD15_PROMPT = "a photo of a golden retriever on a beach"
BENCHMARKS = ["tiny", "reopen", "page", "batch", "sd15", "embed", "stats", "memory", "sweep", "dataset", "queue"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="The lab's benchmarks: generation overhead, "
                                "batch scaling, embedding, cache reopen and page render, statistics at scale, "
                                "memory (bench/README.md).")
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (see bench/README.md)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of torch and numpy's BLAS, the same for every side (default: the lab's own, "
                        "core.pipeline.config.cpu_threads: 1 on machines with <= 2 usable cores, else the libraries' "
                        "defaults; see bench/README.md)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats of each generation benchmark, at least "
                   "3 (default: tiny-random 5 with --quick, else 7; sd15-arch 3 with --quick, else 5)")
    p.add_argument("--only", action="append", choices=BENCHMARKS,
                   help="run only these benchmarks (repeatable; default: all)")
    p.add_argument("--skip", action="append", choices=BENCHMARKS, default=[],
                   help="leave these benchmarks out (repeatable)")
    p.add_argument("--sd15-size", type=int, default=128, help="SD 1.5-architecture image size in px (default 128)")
    p.add_argument("--sd15-steps", type=int, default=2, help="SD 1.5-architecture denoising steps (default 2)")
    p.add_argument("--sd15-scheduler", choices=["ddim", "pndm"], default="ddim",
                   help="ddim: one UNet call per step (default); pndm: SD 1.5's shipped scheduler (+1 UNet call)")
    p.add_argument("--tmp", metavar="DIR", default=None,
                   help="where the fresh caches go (default: a temp folder inside the lab's cache dir, so files are "
                        "written and fsynced on the same filesystem as the app's cache)")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 3:
        p.error("--repeats must be at least 3")
    return args


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(device, threads: int, torch_default: int, tmp_root: Path) -> dict:
    import torch

    from core.pipeline.config import PIXEL_LIBRARIES, library_versions, usable_cores

    usable = usable_cores()
    return {
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "torch_threads": threads,
        "torch_default_threads": torch_default,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "blas_threads": blas_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **library_versions(PIXEL_LIBRARIES, with_python=False),
        "device": device.describe(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "tmp_root": str(tmp_root),
    }


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "?"
    pools = [f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info()]
    return ", ".join(pools) or "none loaded"


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    import numpy  # noqa: F401  (its BLAS must be loaded for the thread limit to reach it)
    import torch
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    tlogging.set_verbosity_error()
    torch_default = torch.get_num_threads()
    if args.threads:  # through the lab's own setting, so everything the lab runs here uses it (and child processes)
        os.environ["DDL_CPU_THREADS"] = str(args.threads)

    from core.pipeline.config import cache_dir, select_device

    device = select_device()  # applies core.pipeline.config.cpu_threads() to torch and BLAS, as the app does
    threads = torch.get_num_threads()
    only = set(args.only or BENCHMARKS) - set(args.skip)
    repeats = {"tiny": args.repeats or (5 if args.quick else 7), "sd15": args.repeats or (3 if args.quick else 5)}

    tmp_parent = Path(args.tmp) if args.tmp else cache_dir()
    tmp_parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".bench-tmp-", dir=tmp_parent))
    facts = machine_facts(device, threads, torch_default, tmp_root)
    started = time.perf_counter()

    print("Diffusion Diversity Lab benchmarks" + (" (--quick)" if args.quick else ""))
    print(f"  machine : {facts['cpu']}; {facts['cores_logical']} logical cores ({facts['cores_usable']} usable); "
          f"load average {', '.join(f'{x:.2f}' for x in facts['load_average_at_start'] or [])}")
    print(f"  torch   : {facts['torch']}, {threads} thread(s) (torch's default here: {torch_default}; "
          f"{'--threads' if args.threads else 'the lab default, core.pipeline.config.cpu_threads'}), "
          f"device {facts['device']}; BLAS/OpenMP pools: {facts['blas_threads']}")
    print(f"  libs    : diffusers {facts['diffusers']}, transformers {facts['transformers']}, "
          f"Python {facts['python']}")
    print(f"  caches  : fresh ones under {tmp_root}")
    print(flush=True)

    rows: list[Row] = []
    sections: list[Section] = []
    try:
        rows, sections = run_suite(args, device, only, repeats, tmp_root)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    total = time.perf_counter() - started
    end_load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print()
    print(f"Results ({'quick' if args.quick else 'full'} run, {fmt_s(total)} in all; torch {threads} thread(s) on "
          f"{facts['cores_usable']} cores, {facts['device']}; load average at end "
          f"{', '.join(f'{x:.2f}' for x in end_load or [])})")
    print(format_table(rows))
    for r in rows:
        if r.note:
            print(f"  * {r.note}")
    if any(r.verdict == "MISS?" for r in rows):
        print("  MISS? = the wall-clock ratio misses the target, but the lab's own work measured directly is within "
              "it: machine noise until a rerun (or more --repeats) confirms it.")
    print("Ratios: lab/raw <= 1.05 means the lab adds at most 5% to a bare diffusers call; raw/lab >= 0.95 means "
          "the lab embeds at >= 95% of the bare encoder's speed; gen/reopen is how many times faster reopening a "
          "cached run is than generating it; bN/bM time is the speed-up of batch N; growth exp. is the slope of "
          "log time vs log n. Read medians and ratios, not absolute times.")
    for section in sections:
        print()
        print(section.format())
    if args.json:
        payload = {"machine": facts, "quick": args.quick, "repeats": repeats, "total_s": total,
                   "load_average_at_end": end_load, "table": format_table(rows),
                   "results": [r.to_json() for r in rows], "sections": [sec.to_json() for sec in sections]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"JSON written to {args.json}")
    return 0


def run_suite(args, device, only: set[str], repeats: dict, tmp_root: Path) -> tuple[list[Row], list[Section]]:
    import gc

    from core.pipeline.generate import RunRequest, resolve_settings
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    from .pipelines import build_sd15_random, load_tiny

    rows: list[Row] = []
    sections: list[Section] = []
    quick = args.quick
    if only & {"tiny", "reopen", "page", "batch", "queue"}:
        folder, pipe = load_tiny(device)
        preset = GENERATORS[TINY_RANDOM]
        req = RunRequest(TINY_PROMPT, n=8, generator=TINY_RANDOM, steps=4, size=64,
                         clip=TINY_RANDOM).with_preset_defaults(preset)
        settings = resolve_settings(req, folder, device)
        if "tiny" in only:
            from .overhead import bench_overhead

            rows.append(bench_overhead("tiny-random", pipe, settings, req.prompt, req.seeds, batch=4,
                                       repeats=repeats["tiny"], tmp_root=tmp_root, log=log))
        if "queue" in only:
            from .queue import bench_queue

            rows += bench_queue(pipe, settings, req.prompt, repeats=repeats["tiny"], tmp_root=tmp_root, log=log)
        run_cache = None  # the reopen benchmark's 64-image run, which the page benchmark renders
        if "reopen" in only:
            from .reopen import bench_reopen

            reopen_rows, run_cache = bench_reopen(pipe, folder, device, n=64, gen_repeats=1 if quick else 5,
                                                  reopen_repeats=20 if quick else 50,
                                                  fresh_repeats=3 if quick else 5, tmp_root=tmp_root, log=log,
                                                  keep_cache="page" in only)
            rows += reopen_rows
        if "page" in only:
            from .page import bench_page

            page_rows, section = bench_page(pipe, n=64, repeats=3 if quick else 7, tmp_root=tmp_root, log=log,
                                            cache_root=run_cache)
            rows += page_rows
            sections.append(section)
        if "batch" in only:
            from .batch import bench_batch_scaling

            batch_rows, section = bench_batch_scaling("tiny-random", pipe, settings, req.prompt, req.seeds,
                                                      batches=[1, 2, 4, 8], repeats=2 if quick else 5,
                                                      device=device, log=log)
            rows += batch_rows
            sections.append(section)
        del pipe
        gc.collect()
    if only & {"sd15", "batch"}:
        t = time.perf_counter()
        folder, pipe = build_sd15_random(device, tmp_root, scheduler=args.sd15_scheduler)
        n_params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
        log(f"[sd15-arch] built SD 1.5's architecture with random weights in {fmt_s(time.perf_counter() - t)} "
            f"(UNet {n_params:.0f} M parameters)")
        req = RunRequest(SD15_PROMPT, n=2, generator=f"local:{folder}", steps=args.sd15_steps, guidance=7.5,
                         size=args.sd15_size, clip=TINY_RANDOM)
        settings = resolve_settings(req, folder, device)
        if "sd15" in only:
            from .overhead import bench_overhead

            rows.append(bench_overhead("sd15-arch-random", pipe, settings, req.prompt, req.seeds, batch=2,
                                       repeats=repeats["sd15"], tmp_root=tmp_root, log=log))
        if "batch" in only:
            from dataclasses import replace

            from .batch import bench_batch_scaling

            # 4 images in 1 step: the per-image work of the UNet, the text encoder and the VAE, and each call's
            # fixed costs, without the minutes more steps would take on a CPU.
            one_step = replace(settings, steps=1)
            batch_rows, section = bench_batch_scaling(
                "sd15-arch-random", pipe, one_step, SD15_PROMPT, list(range(4)),
                batches=[1, 4] if quick else [1, 2, 4], repeats=2 if quick else 3, device=device, log=log,
                warm_up="sd15" not in only)
            rows += batch_rows
            sections.append(section)
        del pipe
        gc.collect()
    if "embed" in only:
        from .embed import bench_embedding

        embed_rows, section = bench_embedding(n=64 if quick else 128, repeats=3 if quick else 5, tmp_root=tmp_root,
                                              log=log, with_threaded=not quick)
        rows += embed_rows
        sections.append(section)
        gc.collect()
    if "stats" in only:
        from .stats_scale import bench_stats_scale

        stat_rows, section = bench_stats_scale(quick, log)
        rows += stat_rows
        sections.append(section)
    if "sweep" in only:
        from .sweep import bench_sweep

        rows += bench_sweep(n_seeds=32 if quick else 64, repeats=3 if quick else 5, tmp_root=tmp_root, log=log)
        gc.collect()
    if "dataset" in only:
        from .dataset import bench_dataset

        rows += bench_dataset(n=20_000 if quick else 100_000, repeats=1 if quick else 3, tmp_root=tmp_root, log=log)
        gc.collect()
    if "memory" in only:
        from .memory import bench_memory

        kinds = ["baseline", "sd15-arch", "clip:ViT-B-32", "clip:ViT-L-14"]
        if not quick:
            kinds.insert(2, "sd15-arch-generate")
        sections.append(bench_memory(kinds, tmp_root, log))
    return rows, sections
