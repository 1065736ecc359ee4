"""Benchmark 1: the lab's generation path vs the bare diffusers call on the same pipeline object.

Lab side: `core.pipeline.generate.generate_missing` into a fresh Cache (a new folder each run, so every image is
generated, PNG-encoded, hashed, written with fsync and indexed in SQLite). Raw side: `pipe(...)` batch by batch with
the same prompt, seeds, steps, guidance, size and batch composition, `output_type="pil"`, images kept in memory.

Both sides run in this process with the same torch thread count, are warmed up once, then alternate (lab, raw),
(raw, lab), ... so a slow drift in the machine's load hits both alike.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .stats import Row, Samples, Stopwatch, fmt_s


class _TimedPipe:
    """Forwards everything to the pipeline and adds up the seconds spent inside its __call__."""

    def __init__(self, pipe):
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "seconds", 0.0)

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self._pipe(*args, **kwargs)
        finally:
            object.__setattr__(self, "seconds", self.seconds + time.perf_counter() - t)

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __setattr__(self, name, value):
        setattr(self._pipe, name, value)


@contextmanager
def _instrumented(cache):
    """Seconds spent in encode_png, Cache.put_images and (inside it) atomic_write_bytes during one lab run.

    A handful of perf_counter calls per image: microseconds against the milliseconds being measured.
    """
    import core.pipeline.cache
    import core.pipeline.generate

    spent = {"encode_png": 0.0, "put_images": 0.0, "atomic_write": 0.0}

    def timing(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    orig_encode, orig_write = core.pipeline.generate.encode_png, core.pipeline.cache.atomic_write_bytes
    core.pipeline.generate.encode_png = timing("encode_png", orig_encode)
    core.pipeline.cache.atomic_write_bytes = timing("atomic_write", orig_write)
    cache.put_images = timing("put_images", cache.put_images)
    try:
        yield spent
    finally:
        core.pipeline.generate.encode_png, core.pipeline.cache.atomic_write_bytes = orig_encode, orig_write
        del cache.put_images


def lab_run(pipe, settings, prompt, seeds, batch, tmp_root: Path, keep: bool = False):
    """One generate_missing into a fresh cache. Returns (Stopwatch, breakdown dict, cache root or None)."""
    from core.pipeline.cache import Cache
    from core.pipeline.generate import generate_missing

    root = Path(tempfile.mkdtemp(prefix="lab-", dir=tmp_root))
    cache = Cache(root)
    timed = _TimedPipe(pipe)
    gc.collect()
    with _instrumented(cache) as spent, Stopwatch() as sw:
        report = generate_missing(timed, settings, prompt, seeds, cache, batch_size=batch)
    if report.generated != len(seeds):
        raise RuntimeError(f"the lab run generated {report.generated} of {len(seeds)} images (a cache hit?)")
    breakdown = {"pipe": timed.seconds, **spent, "outside_pipe": sw.wall - timed.seconds}
    if keep:
        return sw, breakdown, root
    shutil.rmtree(root, ignore_errors=True)
    return sw, breakdown, None


def raw_run(pipe, settings, prompt, seeds, batch):
    """The bare diffusers calls, batch by batch. Returns (Stopwatch, images)."""
    import torch

    images = []
    gc.collect()
    with Stopwatch() as sw:
        for start in range(0, len(seeds), batch):
            chunk = seeds[start : start + batch]
            out = pipe(
                prompt=[prompt] * len(chunk),
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                height=settings.height,
                width=settings.width,
                generator=[torch.Generator("cpu").manual_seed(s) for s in chunk],
                output_type="pil",
            )
            images += out.images
    return sw, images


def _same_pixels(lab_root: Path, settings, prompt, seeds, raw_images) -> dict:
    """Whether the lab's PNGs hold the raw call's pixels (both sides must do the same work to be compared)."""
    from PIL import Image

    from core.pipeline.cache import Cache
    from core.pipeline.generate import cached_images

    entries = cached_images(settings, prompt, seeds, Cache(lab_root))
    diffs = [int(np.abs(np.asarray(Image.open(e.path).convert("RGB"), dtype=np.int16)
                        - np.asarray(img.convert("RGB"), dtype=np.int16)).max())
             for e, img in zip(entries, raw_images)]
    return {"images_compared": len(diffs), "max_abs_pixel_diff": max(diffs) if diffs else None}


def bench_overhead(name: str, pipe, settings, prompt: str, seeds: list[int], batch: int, repeats: int,
                   tmp_root: Path, log) -> Row:
    log(f"[{name}] {len(seeds)} images, batch {batch}, {settings.steps} steps, guidance {settings.guidance:g}, "
        f"{settings.width} px, {repeats} repeats")
    sw, _, root = lab_run(pipe, settings, prompt, seeds, batch, tmp_root, keep=True)
    log(f"[{name}] warm-up lab {fmt_s(sw.wall)}")
    sw, raw_images = raw_run(pipe, settings, prompt, seeds, batch)
    log(f"[{name}] warm-up raw {fmt_s(sw.wall)}")
    check = _same_pixels(root, settings, prompt, seeds, raw_images)
    shutil.rmtree(root, ignore_errors=True)
    del raw_images
    log(f"[{name}] lab PNGs vs raw images: max pixel difference {check['max_abs_pixel_diff']} "
        f"over {check['images_compared']} images")

    lab, raw = Samples(), Samples()
    breakdowns = []
    for i in range(repeats):
        for side in (("lab", "raw") if i % 2 == 0 else ("raw", "lab")):
            if side == "lab":
                sw, breakdown, _ = lab_run(pipe, settings, prompt, seeds, batch, tmp_root)
                lab.add(sw.wall, sw.cpu)
                breakdowns.append(breakdown)
            else:
                sw, _ = raw_run(pipe, settings, prompt, seeds, batch)
                raw.add(sw.wall, sw.cpu)
        log(f"[{name}] repeat {i + 1}/{repeats}: lab {fmt_s(lab.wall[-1])}  raw {fmt_s(raw.wall[-1])}  "
            f"lab/raw {lab.wall[-1] / raw.wall[-1]:.3f}")

    ratio = lab.median / raw.median
    paired = [a / b for a, b in zip(lab.wall, raw.wall)]
    med_breakdown = {k: statistics.median(b[k] for b in breakdowns) for k in breakdowns[0]}
    details = {
        "images": len(seeds), "batch": batch, "steps": settings.steps, "guidance": settings.guidance,
        "size": settings.width, "scheduler": settings.scheduler.get("_class_name"), "repeats": repeats,
        "paired_ratio_median": statistics.median(paired), "paired_ratios": paired,
        "cpu_ratio": (lab.cpu_median / raw.cpu_median) if raw.cpu_median else None,
        "lab_minus_raw_median_s": lab.median - raw.median,
        "lab_breakdown_median_s": med_breakdown,
        "pixel_check": check,
    }
    b = med_breakdown
    outside_share = b["outside_pipe"] / raw.median
    in_pipe_ratio = b["pipe"] / raw.median
    details["outside_pipe_share_of_raw"] = outside_share
    details["in_pipe_lab_vs_raw"] = in_pipe_ratio
    log(f"[{name}] lab/raw: medians {ratio:.3f}, paired median {details['paired_ratio_median']:.3f}, "
        f"mins {lab.min / raw.min:.3f}, CPU time {details['cpu_ratio']:.3f}")
    log(f"[{name}] lab run, median breakdown: in pipe {fmt_s(b['pipe'])}, outside pipe {fmt_s(b['outside_pipe'])} "
        f"(encode_png {fmt_s(b['encode_png'])}, put_images {fmt_s(b['put_images'])} of which file write+fsync "
        f"{fmt_s(b['atomic_write'])})")
    note = (f"{name}: the lab's own work (outside the pipeline call) is {outside_share:.1%} of the raw time "
            f"({fmt_s(b['outside_pipe'])} per run); the pipeline call itself took {in_pipe_ratio:.3f}x the raw "
            f"median inside the lab runs (1.000 = no noise)")
    log(f"[{name}] {note.split(': ', 1)[1]}")
    return Row(
        benchmark=f"gen overhead: {name} ({len(seeds)} img, {settings.width}px, b{batch}, {settings.steps} st)",
        lab_label="lab", other_label="raw", lab=lab, other=raw, ratio=ratio, ratio_kind="lab/raw",
        target="<= 1.05", ok=ratio <= 1.05, details=details, noise_suspected=outside_share <= 0.05, note=note,
    )
