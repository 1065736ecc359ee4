"""Sweep benchmark (`--only sweep`): the Ray job against the engine called directly, and 2 actors against 1.

The same rows (the tiny-random model, 2 classes x N seeds, 64 px, embedded with the tiny CLIP), each way timed
end to end, alternating:
- **engine**: core.pipeline.engine.Engine.run for the two requests, then core.analysis.diversity.embed_set of their
  images, in this process: what the sweep's stages do, without Ray. Once with torch on the whole machine (2 threads)
  and once on one thread (what one sweep actor gets: Ray reserves a CPU per generation actor and the actors use
  exactly that, core.pipeline.sweep.use_assigned_cpus).
- **sweep, 1 actor** and **sweep, 2 actors** per stage: core.pipeline.sweep.run_sweep into a fresh output folder on a
  local Ray cluster of 2 CPUs started once beforehand (its start-up is printed, not counted).
Targets (issue 17): the sweep on the whole machine (2 actors) against the engine on the whole machine <= 1.10;
sweep(1 actor)/sweep(2 actors) >= 1.6 on this 2-core machine. The overhead at equal resources, sweep(1 actor) against
the engine on one thread, is printed beside them. Each sweep starts fresh actors, which import torch and diffusers
and load their models (seconds): a fixed cost a small grid does not amortise.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .stats import Row, Samples, Stopwatch, fmt_s


def bench_sweep(n_seeds: int, repeats: int, tmp_root: Path, log) -> list[Row]:
    import ray
    import torch

    from core.analysis.diversity import embed_set, synthetic_set
    from core.pipeline.cache import Cache
    from core.pipeline.config import select_device
    from core.pipeline.engine import Engine
    from core.pipeline.generate import RunRequest
    from core.pipeline.models import load_clip, load_pipeline
    from core.pipeline.registry import CLIP_MODELS, GENERATORS, TINY_RANDOM
    from core.pipeline.sweep import Plan, run_sweep

    device = select_device()
    plans = {k: Plan.from_dict({"classes": ["tench", "church"], "clip": [TINY_RANDOM], "batch": 4, "actors": k,
                                "seeds": {"first": 0, "count": n_seeds}, "generators": [{"preset": TINY_RANDOM}]})
             for k in (1, 2)}
    clip = load_clip(CLIP_MODELS[TINY_RANDOM], device)
    requests = [RunRequest(prompt, n=n_seeds, generator=TINY_RANDOM, clip=TINY_RANDOM)
                .with_preset_defaults(GENERATORS[TINY_RANDOM]) for _, prompt in plans[1].prompts]
    pipes: dict = {}

    def pipeline(folder):  # loaded once, as each sweep actor loads its model once
        if folder not in pipes:
            pipes[folder] = load_pipeline(folder, device)
        return pipes[folder]

    all_threads = torch.get_num_threads()

    def engine_once(threads: int) -> float:
        cache = Cache(Path(tempfile.mkdtemp(prefix="sweep-engine-", dir=tmp_root)))
        torch.set_num_threads(threads)
        try:
            with Stopwatch() as sw:
                runs, _ = Engine(cache, device, pipeline).run(requests)
                embed_set(cache, clip.key, synthetic_set([im for r in runs for im in r.images]), lambda: clip)
        finally:
            torch.set_num_threads(all_threads)
        return sw.wall

    def sweep_once(actors: int) -> float:
        out = Path(tempfile.mkdtemp(prefix=f"sweep-{actors}-", dir=tmp_root))
        with Stopwatch() as sw:
            summary = run_sweep(plans[actors], out, log=lambda line: None)
        if summary.generated != plans[actors].rows:
            raise RuntimeError(f"the sweep made {summary.generated} of {plans[actors].rows} images")
        return sw.wall

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    log(f"[sweep] local Ray cluster (2 CPUs) started in {fmt_s(time.perf_counter() - start)} (not counted)")
    try:
        engine_once(all_threads), sweep_once(1)  # warm-ups: model folders, imports, Ray's worker processes
        samples = {"engine": Samples(), "engine-1": Samples(), 1: Samples(), 2: Samples()}
        order = ["engine", "engine-1", 1, 2]
        for i in range(repeats):
            for side in (order if i % 2 == 0 else order[::-1]):
                if side in (1, 2):
                    wall = sweep_once(side)
                else:
                    wall = engine_once(all_threads if side == "engine" else 1)
                samples[side].add(wall, wall)
            log(f"[sweep] repeat {i + 1}/{repeats}: engine {fmt_s(samples['engine'].wall[-1])} ({all_threads} "
                f"threads), {fmt_s(samples['engine-1'].wall[-1])} (1 thread); sweep 1 actor "
                f"{fmt_s(samples[1].wall[-1])}, 2 actors {fmt_s(samples[2].wall[-1])}")
    finally:
        ray.shutdown()
    rows_n = plans[1].rows
    overhead = samples[2].median / samples["engine"].median
    overhead_one = samples[1].median / samples["engine-1"].median
    speedup = samples[1].median / samples[2].median
    return [
        Row(benchmark=f"sweep overhead: Ray job (2 actors) vs the engine directly, both on 2 CPUs ({rows_n} img)",
            lab_label="sweep", other_label="engine", lab=samples[2], other=samples["engine"], ratio=overhead,
            ratio_kind="sweep/engine", target="<= 1.10", ok=overhead <= 1.10),
        Row(benchmark=f"sweep overhead at equal resources: 1 actor vs the engine on 1 thread ({rows_n} img)",
            lab_label="sweep", other_label="engine", lab=samples[1], other=samples["engine-1"], ratio=overhead_one,
            ratio_kind="sweep/engine", target="info", ok=None),
        Row(benchmark=f"sweep scaling: 2 actors vs 1 on 2 CPUs ({rows_n} img)", lab_label="2 actors",
            other_label="1 actor", lab=samples[2], other=samples[1], ratio=speedup, ratio_kind="1/2 actors time",
            target=">= 1.6", ok=speedup >= 1.6),
    ]
