"""core.pipeline.queue: the fair queue a class shares one GPU through. Real threads doing fake work (a short sleep per
batch) record the order in which turns are granted; the clock is injected where a wait estimate is checked."""

from __future__ import annotations

import threading
import time

import pytest

from core.pipeline.classroom import Limits
from core.pipeline.queue import FairQueue, LimitError, QueueCancelled

WORK_S = 0.01  # one fake batch


def worker(queue: FairQueue, ticket, name: str, order: list, lock: threading.Lock, *, work_s=WORK_S,
           statuses: list | None = None):
    """Run `ticket` to its end, one batch per turn, appending `name` to `order` at each turn."""
    def on_wait(status):
        if statuses is not None:
            statuses.append(status)

    ticket.on_wait = on_wait
    try:
        while ticket.remaining:
            with ticket:
                with lock:
                    order.append(name)
                time.sleep(work_s)
    finally:
        ticket.close()


def start(*args, **kwargs) -> threading.Thread:
    t = threading.Thread(target=worker, args=args, kwargs=kwargs, daemon=True)
    t.start()
    return t


def join(threads, timeout=30):
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a worker never finished: the queue stalled"


def test_a_long_run_and_a_short_one_alternate_batch_by_batch():
    queue = FairQueue(poll_s=0.005)
    order, lock = [], threading.Lock()
    long_run = queue.submit("alice", 64, batch=4)  # 16 batches
    threads = [start(queue, long_run, "A", order, lock)]
    while len(order) < 3:
        time.sleep(0.001)
    short = queue.submit("bob", 8, batch=4)  # 2 batches, submitted while the long run is under way
    threads.append(start(queue, short, "B", order, lock))
    join(threads)
    assert order.count("A") == 16 and order.count("B") == 2
    first_b = order.index("B")
    # Bob waited for at most the batch that was running (and one more that was granted as he arrived), then
    # alternated with Alice: his 16-image-behind run did not wait for her 64 images.
    assert first_b <= 5 and order[first_b:first_b + 3] == ["B", "A", "B"]


def test_a_newcomer_waits_for_the_batch_running_now_not_for_two():
    queue = FairQueue(poll_s=0.005)
    order, lock = [], threading.Lock()
    alice = queue.submit("alice", 8, batch=4)
    with alice:  # alice's first batch runs while bob arrives
        bob = queue.submit("bob", 4, batch=4)
        thread = start(queue, bob, "B", order, lock)
        while not bob._wanting:
            time.sleep(0.001)
        assert bob.status().ahead == 0
    with alice:  # alice asks again at once, from the same thread: bob's turn comes first all the same
        order.append("A")
    alice.close()
    join([thread])
    assert order == ["B", "A"]


def test_three_people_take_turns_round_robin():
    queue = FairQueue(poll_s=0.005)
    order, lock = [], threading.Lock()
    gate = queue.submit("gate", 4, batch=4)
    with gate:  # hold the GPU until all three are waiting, so the order is the queue's, not the threads'
        tickets = [queue.submit(p, 12, batch=4) for p in "xyz"]
        threads = [start(queue, t, p, order, lock) for t, p in zip(tickets, "xyz")]
        deadline = time.monotonic() + 5
        while not all(t._wanting for t in tickets) and time.monotonic() < deadline:
            time.sleep(0.001)
    gate.close()
    join(threads)
    assert order == list("xyz") * 3


def test_one_person_with_two_tabs_counts_as_one():
    """Alice's two runs share her one place in the rotation: Bob gets every other batch, not one in three."""
    queue = FairQueue(poll_s=0.005)
    order, lock = [], threading.Lock()
    gate = queue.submit("gate", 4, batch=4)
    with gate:
        tab1, tab2, bob = queue.submit("alice", 8, batch=4), queue.submit("alice", 8, batch=4), \
            queue.submit("bob", 16, batch=4)
        threads = [start(queue, tab1, "a1", order, lock), start(queue, tab2, "a2", order, lock),
                   start(queue, bob, "b", order, lock)]
        while not all(t._wanting for t in (tab1, tab2, bob)):
            time.sleep(0.001)
        assert tab2.status().own_runs_before == 1 and "after your 1 other run" in tab2.status().describe()
    gate.close()
    join(threads)
    assert order == ["a1", "b", "a1", "b", "a2", "b", "a2", "b"]


def test_positions_shown_while_waiting_never_get_worse_as_people_come_and_go():
    queue = FairQueue(poll_s=0.001)
    order, lock = [], threading.Lock()
    statuses: dict[str, list] = {}
    threads = []
    for i in range(8):  # people arrive one by one while the earlier ones are being served
        name = f"p{i}"
        statuses[name] = []
        ticket = queue.submit(name, 4 * (1 + i % 3), batch=4)
        threads.append(start(queue, ticket, name, order, lock, work_s=0.01, statuses=statuses[name]))
        time.sleep(0.003)
    join(threads)
    seen_waiting = 0
    for name, seen in statuses.items():
        before_first_turn = []
        for s in seen:
            if s.running or s.remaining < seen[0].remaining:
                break
            before_first_turn.append(s.ahead)
        seen_waiting += len(before_first_turn) > 1
        assert before_first_turn == sorted(before_first_turn, reverse=True), (name, before_first_turn)
    assert seen_waiting >= 3  # the check saw real waits, not only instant grants


def test_positions_stay_monotone_with_setup_turns_and_gaps_between_turns():
    """The engine's pattern: a setup turn that makes no images (keeps the person's place), a gap, then batches.
    People slipping into the GPU during someone's gap must not push that someone back."""
    import random

    rng = random.Random(0)
    queue = FairQueue(poll_s=0.001)
    bad = []

    def person(i, delays):
        time.sleep(delays[0])
        ticket = queue.submit(f"p{i}", 2, batch=4)
        seen = []
        ticket.on_wait = lambda status: seen.append(status.ahead)
        try:
            with ticket.turn(0):
                time.sleep(delays[1])
            time.sleep(delays[2])
            while ticket.remaining:
                with ticket:
                    time.sleep(0.002 + delays[3])
        finally:
            ticket.close()
        if seen != sorted(seen, reverse=True):
            bad.append(seen)

    for _ in range(5):
        threads = [threading.Thread(target=person, args=(i, [rng.random() * 0.03, rng.random() * 0.003,
                                                             rng.random() * 0.003, rng.random() * 0.003]))
                   for i in range(12)]
        for t in threads:
            t.start()
        join(threads)
    assert bad == []


def test_cancel_while_waiting_leaves_the_queue_and_the_others_go_on():
    queue = FairQueue(poll_s=0.005)
    holder = queue.submit("alice", 4, batch=4)
    waiting = queue.submit("bob", 4, batch=4)
    after = queue.submit("carol", 4, batch=4)
    raised = []

    def wait_for_turn():
        try:
            with waiting:
                pass
        except QueueCancelled as exc:
            raised.append(exc)
        finally:
            waiting.close()

    with holder:
        t = threading.Thread(target=wait_for_turn)
        t.start()
        while not waiting._wanting:
            time.sleep(0.001)
        assert waiting.status().ahead == 0  # next, after alice's batch (running now)
        assert after.status().ahead == 1  # bob goes before carol
        waiting.cancel()
        t.join(5)
        assert raised and after.status().ahead == 0  # bob left: carol moved up
    holder.close()
    with after:  # carol is served at once
        assert after.status().running
    after.close()
    assert queue.snapshot().runs == []


def test_an_exception_from_on_wait_a_ui_stop_leaves_the_queue():
    queue = FairQueue(poll_s=0.005)
    holder = queue.submit("alice", 4, batch=4)
    quitter = queue.submit("bob", 4, batch=4)
    calls = []

    class Stop(Exception):
        pass

    def on_wait(status):
        calls.append(status)
        raise Stop()  # what Streamlit raises at the next st.* call after Cancel or a closed tab

    with holder:
        quitter.on_wait = on_wait
        with pytest.raises(Stop):
            with quitter:
                pass
        quitter.close()
    assert calls and calls[0].ahead == 0 and not quitter._wanting
    assert [r["person"] for r in queue.snapshot().runs] == ["alice"]
    holder.close()


def test_images_per_run_is_refused_before_anything_queues():
    queue = FairQueue(Limits(images_per_run=64))
    with pytest.raises(LimitError, match="would make 256 new images; the limit on this server is 64 per run"):
        queue.submit("alice", 256)
    assert queue.snapshot().runs == [] and queue.refused == {"images_per_run": 1}
    queue.submit("alice", 64).close()


def test_runs_per_person_counts_every_tab():
    queue = FairQueue(Limits(runs_per_person=2))
    mine = [queue.submit("alice", 4), queue.submit("alice", 4)]
    with pytest.raises(LimitError, match=r"You already have 2 runs in the queue \(runs from your other tabs count "
                                         r"too\); the limit is 2 per person"):
        queue.submit("alice", 4)
    queue.submit("bob", 4)  # another person is not held back
    mine[0].close()
    queue.submit("alice", 4)  # one finished: room again


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_full_queue_says_how_many_wait_and_when_to_try_again():
    clock = FakeClock()
    queue = FairQueue(Limits(queue_length=3), clock=clock)
    tickets = [queue.submit(p, 8, batch=4) for p in ("a", "b", "c")]
    with pytest.raises(LimitError) as before:
        queue.submit("d", 4)
    # Nothing measured yet: no made-up number.
    assert str(before.value) == "The queue is full: 3 runs are waiting; try again when a run ahead finishes."
    with tickets[0]:
        clock.now += 20.0  # one batch of 4 images took 20 s: 5 s per image
    # Left: a 4 (turn of b), b 4... the rotation is b, c, a: b's 4 (20 s), c's 4, a's last 4 -> a ends at 60 s.
    with pytest.raises(LimitError) as after:
        queue.submit("d", 4)
    assert str(after.value) == "The queue is full: 3 runs are waiting; try again in about 1 minute."
    assert queue.refused == {"queue_length": 2}


def test_wait_estimates_follow_the_rotation_and_measured_throughput():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    a = queue.submit("a", 8, batch=4)
    b = queue.submit("b", 4, batch=4)
    assert a.status().start_s is None and "estimating" in b.status().describe()
    with a:
        clock.now += 8.0  # 2 s per image
    # Between its batches a run says how far it is and who goes first, not a place in line.
    assert a.status().describe().startswith("4 of 8 images done; 1 other person before your next batch")
    with a:
        clock.now += 3.0  # a's second batch is 3 s in: at 2 s per image, 5 s to go
        status = b.status()
        assert status.ahead == 0 and not status.running
        assert status.start_s == pytest.approx(5.0) and status.finish_s == pytest.approx(13.0)
        assert "about 5 seconds until your first images" in status.describe() or "a few seconds" in \
            status.describe()
    a.close()
    assert b.status().ahead == 0 and b.status().start_s == 0.0
    snap = queue.snapshot()
    assert snap.served_images == 8 and snap.served_runs == 1 and snap.images_per_s == pytest.approx(8 / 11)


def test_gpu_memory_headroom_refuses_new_runs_until_memory_is_back():
    free = [512 * 1024**2]
    queue = FairQueue(Limits(gpu_headroom_gb=1.0), free_memory=lambda: free[0])
    with pytest.raises(LimitError, match=r"The GPU has 0\.5 GB free, less than the 1 GB this server keeps in "
                                         r"reserve"):
        queue.submit("alice", 4)
    free[0] = 3 * 1024**3
    queue.submit("alice", 4).close()
    FairQueue(Limits(gpu_headroom_gb=1.0), free_memory=lambda: None).submit("x", 4).close()  # CPU: not checked


def test_never_two_holders_at_once_under_contention():
    queue = FairQueue(poll_s=0.001)
    inside, worst = [0], [0]
    guard = threading.Lock()

    def run(person):
        ticket = queue.submit(person, 40, batch=2)
        try:
            while ticket.remaining:
                with ticket:
                    with guard:
                        inside[0] += 1
                        worst[0] = max(worst[0], inside[0])
                    time.sleep(0.0005)
                    with guard:
                        inside[0] -= 1
        finally:
            ticket.close()

    threads = [threading.Thread(target=run, args=(f"p{i % 5}",)) for i in range(10)]
    for t in threads:
        t.start()
    join(threads)
    assert worst[0] == 1 and queue.snapshot().served_images == 400
