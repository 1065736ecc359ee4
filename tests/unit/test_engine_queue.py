"""core.pipeline.engine with the fair queue (core.pipeline.queue): the tiny random-weight pipeline, real threads. Runs
of two people interleave batch by batch, the pipeline never runs in two threads, cached images never enter the queue,
and a limit refuses a run before it makes anything."""

from __future__ import annotations

import threading
import time

import pytest

from core.pipeline.cache import Cache
from core.pipeline.classroom import Limits
from core.pipeline.engine import Engine
from core.pipeline.generate import RunRequest, cached_images
from core.pipeline.queue import FairQueue, LimitError
from core.pipeline.registry import GENERATORS, TINY_RANDOM

TINY = GENERATORS[TINY_RANDOM]


def request(prompt: str, n: int) -> RunRequest:
    return RunRequest(prompt, n=n, generator=TINY_RANDOM, clip=TINY_RANDOM, size=64,
                      steps=2).with_preset_defaults(TINY)


class Recording:
    """The tiny pipeline, recording which prompt each call (one batch) was for and how many calls overlapped."""

    def __init__(self, pipe):
        self.pipe, self.calls, self.inside, self.worst = pipe, [], 0, 0
        self.guard = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __setattr__(self, name, value):
        if name in ("pipe", "calls", "inside", "worst", "guard"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.pipe, name, value)

    def __call__(self, *args, **kwargs):
        with self.guard:
            self.inside += 1
            self.worst = max(self.worst, self.inside)
            self.calls.append(kwargs["prompt"][0])
        try:
            return self.pipe(*args, **kwargs)
        finally:
            with self.guard:
                self.inside -= 1


@pytest.fixture
def setup(tmp_path, monkeypatch, cpu, tiny_pipe):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "cache"))
    pipe = Recording(tiny_pipe)

    def make(limits: Limits | None = None) -> tuple[Engine, FairQueue]:
        queue = FairQueue(limits or Limits(), poll_s=0.005)
        return Engine(Cache(tmp_path / "cache"), cpu, lambda folder: pipe, queue=queue), queue

    make.pipe = pipe
    return make


def test_two_people_share_the_pipeline_batch_by_batch(setup):
    eng, queue = setup()
    long_req, short_req = request("long run", 16), request("short run", 8)  # tiny on CPU: batches of 4
    results, errors = {}, []

    def go(person, req):
        try:
            plan = eng.plan([req], generate=True)
            results[person] = eng.generate(plan, person=person, label=req.prompt)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    first = threading.Thread(target=go, args=("alice", long_req))
    first.start()
    while setup.pipe.calls.count("long run") < 1:
        time.sleep(0.005)
    second = threading.Thread(target=go, args=("bob", short_req))
    second.start()
    first.join(120)
    second.join(120)
    assert not errors and results["alice"].generated == 16 and results["bob"].generated == 8
    calls = setup.pipe.calls
    assert setup.pipe.worst == 1  # never two batches in the pipeline at once
    # Bob's two batches came between Alice's, not after all four of hers.
    last_short = len(calls) - 1 - calls[::-1].index("short run")
    assert calls[last_short + 1:].count("long run") >= 1, calls
    assert queue.snapshot().runs == [] and queue.snapshot().served_images == 24


def test_cached_images_never_enter_the_queue(setup):
    eng, queue = setup(Limits(runs_per_person=1))
    req = request("cached", 4)
    eng.generate(eng.plan([req], generate=True), person="alice")
    blocker = queue.submit("alice", 4)  # alice's one allowed run is taken...
    try:
        # ...yet reopening her complete run works: nothing is missing, so it never asks the queue.
        totals = eng.generate(eng.plan([req], generate=True), person="alice")
        assert (totals.generated, totals.reused) == (0, 4)
        # A run that does need images is refused by the same limit.
        with pytest.raises(LimitError, match="You already have 1 run in the queue"):
            eng.generate(eng.plan([request("cached", 6)], generate=True), person="alice")
    finally:
        blocker.close()


def test_a_run_over_the_limit_is_refused_before_it_makes_anything(setup):
    eng, queue = setup(Limits(images_per_run=4))
    with pytest.raises(LimitError, match="would make 6 new images; the limit on this server is 4 per run"):
        eng.generate(eng.plan([request("too many", 6)], generate=True), person="alice")
    assert setup.pipe.calls == []
    assert queue.snapshot().runs == []
    # The limit counts new images only: with 4 of 6 cached, the same request makes 2 and passes.
    eng.generate(eng.plan([request("too many", 4)], generate=True), person="alice")
    assert eng.generate(eng.plan([request("too many", 6)], generate=True), person="alice").generated == 2


def test_a_cancelled_ticket_stops_the_run_and_keeps_finished_batches(setup):
    eng, queue = setup()
    req = request("cancel me", 12)
    seen = []

    def on_progress(p):
        seen.append(p)
        if p.done >= 4 and p.step == 1:
            queue.find(1).cancel()  # e.g. the lecturer's admin view, from another session

    totals = eng.generate(eng.plan([req], generate=True), person="alice", on_progress=on_progress)
    assert totals.cancelled and 4 <= totals.generated < 12
    settings = eng.plan([req], generate=False).chosen[0][1]
    assert len(cached_images(settings, req.prompt, req.seeds, eng.cache)) == totals.generated
    assert queue.snapshot().runs == []


def test_waiting_is_reported_and_a_stop_while_waiting_leaves_the_queue(setup):
    eng, queue = setup()
    holder = queue.submit("alice", 4)
    statuses = []

    class Stop(Exception):
        pass

    def on_wait(status):
        statuses.append(status)
        if len(statuses) >= 3:
            raise Stop()

    with holder:
        with pytest.raises(Stop):
            eng.generate(eng.plan([request("waiting", 4)], generate=True), person="bob", on_wait=on_wait)
    holder.close()
    assert statuses[0].ahead == 0 and "Your turn is next" in statuses[0].describe()
    assert setup.pipe.calls == [] and queue.snapshot().runs == []


def test_progress_says_how_many_people_share_the_gpu(setup):
    eng, queue = setup()
    other = queue.submit("bob", 8)  # bob is in the queue (not generating right now)
    seen = []
    eng.generate(eng.plan([request("shared", 4)], generate=True), person="alice", on_progress=seen.append)
    other.close()
    assert seen and all(p.sharing == 1 for p in seen)
    assert "sharing the GPU with 1 other person, batch by batch" in seen[-1].describe()


def test_embedding_takes_turns_in_the_queue_too(tmp_path, tiny_clip):
    """A page's CLIP embedding (core.pipeline.embed.embeddings_for with the ticket as its lock) waits while another
    person's batch runs, then embeds; the limit on images per run is for generation only."""
    import numpy as np
    from PIL import Image

    from core.pipeline.embed import embeddings_for

    cache = Cache(tmp_path / "cache")
    rng = np.random.default_rng(0)
    items = [(f"{i:064x}", lambda i=i: Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)))
             for i in range(5)]
    queue = FairQueue(Limits(images_per_run=2), poll_s=0.005)
    holder = queue.submit("alice", 2)
    ticket = queue.submit("bob", len(items), batch=2, kind="embed")  # 5 > images_per_run: not refused
    out = {}
    with holder:
        worker = threading.Thread(target=lambda: out.update(x=embeddings_for(
            cache, tiny_clip.key, items, lambda: tiny_clip, batch_size=2, workers=0, lock=ticket)))
        worker.start()
        time.sleep(0.5)
        assert ticket._wanting and cache.get_embeddings(tiny_clip.key, [s for s, _ in items]) == {}
    holder.close()
    worker.join(60)
    ticket.close()
    assert out["x"].shape[0] == 5 and ticket.served == 5
    assert len(cache.get_embeddings(tiny_clip.key, [s for s, _ in items])) == 5
    with pytest.raises(LimitError):
        queue.submit("bob", 5)  # the same count, to generate: over the limit
