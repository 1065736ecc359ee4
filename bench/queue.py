"""Benchmark: the fair queue (core.pipeline.queue) on the generation path.

1. `queue overhead/batch`: what the queue costs per batch, timed directly over many turns with 12 people in it
   (11 waiting with 256-image runs): the turn (acquire, release, throughput bookkeeping) plus the statuses the 11
   waiting pages ask for during one batch (each every 0.25 s: place in line and wait estimate), against the median
   time of one tiny-random batch (4 images, 64 px, 4 steps) through core.pipeline.generate. Target < 2%.
2. `queue 12 vs 1 session`: images/s of the tiny-random model with 12 sessions (threads, 12 people) taking turns
   through the queue, against one session alone. Target: no drop (ratio >= 0.95).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from .stats import Row, Samples


def _turn_cost(people: int = 12, turns: int = 1024, batch_s: float = 0.1, poll_s: float = 0.25) -> float:
    """Seconds of queue bookkeeping per batch, with `people` - 1 others waiting with 256-image runs: the turn itself
    (acquire, release, throughput) plus the status every waiting page asks for each `poll_s` (its place and its
    wait simulation), scaled to one batch of `batch_s`."""
    from core.pipeline.classroom import Limits
    from core.pipeline.queue import FairQueue

    statuses_per_turn = max(1, round((people - 1) * batch_s / poll_s))
    elapsed, done = 0.0, 0
    while done < turns:  # fresh queues of 64-batch runs: every turn a real one, with images credited
        queue = FairQueue(Limits(images_per_run=256, queue_length=10**3))
        others = [queue.submit(f"p{i}", 256, batch=4) for i in range(people - 1)]
        ticket = queue.submit("me", 256, batch=4)
        t0 = time.perf_counter()
        for i in range(64):
            with ticket:
                pass
            for j in range(statuses_per_turn):
                others[(i + j) % len(others)].status()
        elapsed += time.perf_counter() - t0
        done += 64
        for t in [*others, ticket]:
            t.close()
    per_turn = elapsed / done
    return per_turn


def bench_queue(pipe, settings, prompt: str, *, repeats: int, tmp_root: Path, log) -> list[Row]:
    from core.pipeline.cache import Cache
    from core.pipeline.generate import generate_missing
    from core.pipeline.queue import FairQueue

    # 1. The tiny batch, through the lab's own path (a fresh cache each time: every image is made and written).
    batch = Samples()
    for r in range(repeats + 1):
        with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
            t = time.perf_counter()
            generate_missing(pipe, settings, prompt, list(range(4)), Cache(Path(tmp)), batch_size=4,
                             lock=threading.Lock())
            if r:  # the first is a warm-up
                batch.add(time.perf_counter() - t)
    turns = Samples()
    for _ in range(repeats):
        turns.add(_turn_cost(batch_s=batch.median))
    ratio = turns.median / batch.median
    log(f"queue: {turns.median * 1e6:.0f} us per turn vs {batch.median * 1000:.0f} ms per tiny batch "
        f"({100 * ratio:.3f}%)")
    rows = [Row("queue overhead/batch (tiny-random, 12 people)", "turn", "batch", turns, batch, ratio,
                "turn/batch", "< 0.02", ratio < 0.02)]

    # 2. Throughput: 12 sessions vs 1, each a run of 8 images (2 batches), all through one queue.
    def images_per_s(sessions: int) -> float:
        queue = FairQueue(poll_s=0.002)
        with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
            cache = Cache(Path(tmp))
            errors: list[BaseException] = []

            def session(i: int) -> None:
                ticket = queue.submit(f"person {i}", 8, batch=4)
                try:
                    generate_missing(pipe, settings, f"{prompt} {i}", list(range(8)), cache, batch_size=4,
                                     lock=ticket)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)
                finally:
                    ticket.close()

            threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]
            return 8 * sessions / (time.perf_counter() - t)

    one, twelve = Samples(), Samples()
    for _ in range(max(3, repeats // 2)):  # alternate, so a drift in the machine's load hits both alike
        one.add(1 / images_per_s(1))
        twelve.add(1 / images_per_s(12))
    ratio12 = one.median / twelve.median  # (images/s with 12) / (images/s with 1)
    log(f"queue: {1 / one.median:.2f} images/s with 1 session, {1 / twelve.median:.2f} with 12 "
        f"(ratio {ratio12:.3f})")
    rows.append(Row("queue 12 vs 1 session (s/image)", "12 sessions", "1 session", twelve, one, ratio12,
                    "12/1 images/s", ">= 0.95", ratio12 >= 0.95))
    return rows


if __name__ == "__main__":  # python -m bench.queue: this benchmark alone, quickly
    import os
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.pipeline import config
    from core.pipeline.generate import RunRequest, resolve_settings
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    from .pipelines import load_tiny
    from .stats import format_table

    device = config.select_device()
    folder, pipe = load_tiny(device)
    req = RunRequest("a photo of a tench", n=8, generator=TINY_RANDOM, steps=4, size=64,
                     clip=TINY_RANDOM).with_preset_defaults(GENERATORS[TINY_RANDOM])
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_queue(pipe, resolve_settings(req, folder, device), req.prompt, repeats=5, tmp_root=Path(tmp),
                           log=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    print(f"median turn cost per image: {statistics.median(rows[0].lab.wall) / 4 * 1e6:.1f} us")
