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

from .stats import Row, fmt_s, format_table

TINY_PROMPT = "a photo of a tench"
SD15_PROMPT = "a photo of a golden retriever on a beach"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="The lab's generation overhead and cache-reopen "
                                "benchmarks (bench/README.md).")
    p.add_argument("--quick", action="store_true", help="fewer repeats: the whole suite in ~3-4 min on 2 CPU cores")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads, the same for every side (default: 1 on machines with <= 2 usable cores, "
                        "else torch's own default; see bench/README.md)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats of each generation benchmark, at least "
                   "3 (default: tiny-random 5 with --quick, else 7; sd15-arch 3 with --quick, else 5)")
    p.add_argument("--only", action="append", choices=["tiny", "sd15", "reopen"],
                   help="run only these benchmarks (repeatable; default: all)")
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


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads(torch_default: int) -> int:
    """1 thread on a machine with <= 2 usable cores, else torch's default.

    Measured on a shared 2-vCPU VM: with 2 threads the same pipeline call ran 2-3x slower and several times noisier
    than with 1 (OpenMP threads wait for each other whenever any other process takes a core).
    """
    return 1 if usable_cores() <= 2 else torch_default


def machine_facts(device, threads: int, torch_default: int, tmp_root: Path) -> dict:
    import diffusers
    import torch
    import transformers

    usable = usable_cores()
    return {
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "torch_threads": threads,
        "torch_default_threads": torch_default,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": device.describe(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "tmp_root": str(tmp_root),
    }


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    import torch
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    from core.config import cache_dir, select_device

    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    tlogging.set_verbosity_error()
    torch_default = torch.get_num_threads()
    threads = args.threads or default_threads(torch_default)
    torch.set_num_threads(threads)
    device = select_device()
    only = set(args.only or ["tiny", "sd15", "reopen"])
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
          f"{'--threads' if args.threads else 'bench default'}), "
          f"device {facts['device']}")
    print(f"  libs    : diffusers {facts['diffusers']}, transformers {facts['transformers']}, "
          f"Python {facts['python']}")
    print(f"  caches  : fresh ones under {tmp_root}")
    print(flush=True)

    rows: list[Row] = []
    try:
        rows = run_suite(args, device, only, repeats, tmp_root)
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
    print("Ratios: lab/raw <= 1.05 means the lab adds at most 5% to a bare diffusers call; gen/reopen is how many "
          "times faster reopening a cached run is than generating it. Read medians and ratios, not absolute times.")
    if args.json:
        payload = {"machine": facts, "quick": args.quick, "repeats": repeats, "total_s": total,
                   "load_average_at_end": end_load, "table": format_table(rows),
                   "results": [r.to_json() for r in rows]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"JSON written to {args.json}")
    return 0


def run_suite(args, device, only: set[str], repeats: dict, tmp_root: Path) -> list[Row]:
    from core.generate import RunRequest, resolve_settings
    from core.registry import GENERATORS, TINY_RANDOM

    from .overhead import bench_overhead
    from .pipelines import build_sd15_random, load_tiny
    from .reopen import bench_reopen

    rows: list[Row] = []
    if only & {"tiny", "reopen"}:
        folder, pipe = load_tiny(device)
        preset = GENERATORS[TINY_RANDOM]
        if "tiny" in only:
            req = RunRequest(TINY_PROMPT, n=8, generator=TINY_RANDOM, steps=4, size=64,
                             clip=TINY_RANDOM).with_preset_defaults(preset)
            settings = resolve_settings(req, folder, device)
            rows.append(bench_overhead("tiny-random", pipe, settings, req.prompt, req.seeds, batch=4,
                                       repeats=repeats["tiny"], tmp_root=tmp_root, log=log))
        if "reopen" in only:
            rows += bench_reopen(pipe, folder, device, n=64, gen_repeats=2 if args.quick else 5,
                                 reopen_repeats=20 if args.quick else 50, fresh_repeats=3 if args.quick else 5,
                                 tmp_root=tmp_root, log=log)
        del pipe
    if "sd15" in only:
        import gc

        t = time.perf_counter()
        folder, pipe = build_sd15_random(device, tmp_root, scheduler=args.sd15_scheduler)
        n_params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
        log(f"[sd15-arch] built SD 1.5's architecture with random weights in {fmt_s(time.perf_counter() - t)} "
            f"(UNet {n_params:.0f} M parameters)")
        req = RunRequest(SD15_PROMPT, n=2, generator=f"local:{folder}", steps=args.sd15_steps, guidance=7.5,
                         size=args.sd15_size, clip=TINY_RANDOM)
        settings = resolve_settings(req, folder, device)
        rows.append(bench_overhead("sd15-arch-random", pipe, settings, req.prompt, req.seeds, batch=2,
                                   repeats=repeats["sd15"], tmp_root=tmp_root, log=log))
        del pipe
        gc.collect()
    return rows
