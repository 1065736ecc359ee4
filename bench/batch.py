"""Benchmark: batch scaling. The same images (prompt, seeds, steps, size) made at batch 1, 2, 4, 8: images/s.

The bare diffusers call (bench.overhead.raw_run), so this measures the device, not the lab. The batch sizes run in
a rotating order within each repeat, so a drift in the machine's load hits all of them alike. The lab's own choice
(core.pipeline.config.auto_batch_size for this device and size) is marked.
"""

from __future__ import annotations

import statistics

from .overhead import raw_run
from .stats import Row, Samples, Section, fmt_s


def bench_batch_scaling(name: str, pipe, settings, prompt: str, seeds: list[int], batches: list[int], repeats: int,
                        device, log, warm_up: bool = True) -> tuple[list[Row], Section]:
    from core.pipeline.config import auto_batch_size

    n = len(seeds)
    chosen = auto_batch_size(device, settings.width, settings.height)
    log(f"[batch {name}] {n} images, {settings.width} px, {settings.steps} steps, guidance {settings.guidance:g}, "
        f"batches {batches}, {repeats} repeats (the lab's choice here: batch {chosen})")
    if warm_up:
        for b in batches:
            sw, _ = raw_run(pipe, settings, prompt, seeds[:b], b)
            log(f"[batch {name}] warm-up batch {b}: {fmt_s(sw.wall)}")
    samples = {b: Samples() for b in batches}
    for i in range(repeats):
        order = batches[i % len(batches):] + batches[: i % len(batches)]
        if i % 2:
            order = order[::-1]
        for b in order:
            sw, images = raw_run(pipe, settings, prompt, seeds, b)
            if len(images) != n:
                raise RuntimeError(f"batch {b} made {len(images)} of {n} images")
            samples[b].add(sw.wall, sw.cpu)
        log(f"[batch {name}] repeat {i + 1}/{repeats}: "
            + "  ".join(f"b{b} {fmt_s(samples[b].wall[-1])}" for b in batches))

    base = samples[batches[0]]
    rows, lines = [], []
    for b in batches:
        s = samples[b]
        rate = n / s.median
        speedup = base.median / s.median
        lines.append([f"{b}" + (" (lab's choice)" if b == chosen else ""), f"{rate:.3g}",
                      f"{n / s.max:.3g}-{n / s.min:.3g}", fmt_s(s.median), f"{speedup:.2f}x"])
        if b != batches[0]:
            rows.append(Row(
                benchmark=f"batch scaling: {name} b{b} vs b{batches[0]} ({n} img, {settings.width}px, "
                          f"{settings.steps} st)",
                lab_label=f"b{b}", other_label=f"b{batches[0]}", lab=s, other=base, ratio=speedup,
                ratio_kind=f"b{batches[0]}/b{b} time", target="info", ok=None,
                details={"images": n, "batch": b, "images_per_s": rate, "size": settings.width,
                         "steps": settings.steps, "repeats": repeats,
                         "paired_speedup_median": statistics.median(a / c for a, c in zip(base.wall, s.wall))}))
    section = Section(
        title=f"Batch scaling, {name}: {n} images, {settings.width} px, {settings.steps} steps, guidance "
              f"{settings.guidance:g} (bare diffusers call, {repeats} repeats)",
        headers=["batch", "images/s (median)", "images/s min-max", "time for all", "speed-up vs b1"],
        lines=lines,
        data={b: samples[b].summary() for b in batches} | {"lab_choice": chosen},
    )
    return rows, section
