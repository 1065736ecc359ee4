"""A fair queue for one GPU shared by a class: work is granted one batch at a time, round-robin over people.

1. `FairQueue.submit(person, images, ...)`: a run asks to enter the queue. The limits
   (core.pipeline.classroom.Limits) are checked here, before any work: a refusal is a `LimitError` whose message
   says what happened and when to try again. Cached images never get here (the engine submits only what it must
   generate).
2. `with ticket:` (or `ticket.turn(...)`): wait for this run's turn, then hold the GPU for one batch. The people
   with runs in the queue form one rotation: the next turn goes to the first person in the rotation whose run is
   waiting, and that person then moves to the end. So a 256-image run and a 16-image run alternate batch by batch,
   and a person with several tabs (several runs) still has one place in the rotation: their runs go one after the
   other. A newcomer joins at the end, so a waiting person's place never gets worse (positions are monotone).
3. `ticket.status()`: the place in line and the estimated wait, from a simulation of the rotation with the
   throughput measured over the last turns. `ticket.cancel()` (or an exception from the `on_wait` callback, as a
   UI's stop) leaves the queue; `ticket.close()` always does (use it in a `finally`).

Plain Python and threads: the engine, a UI, the tests and the benchmark use it the same way. It never imports a
UI library or torch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from core.pipeline.classroom import Limits, about


class LimitError(Exception):
    """A run the queue refuses, with a message for the person who asked (what happened, what to do)."""


class QueueCancelled(Exception):
    """The run was cancelled while it waited for its turn (ticket.cancel(), e.g. from the admin view)."""


@dataclass(frozen=True)
class WaitStatus:
    """Where one run stands. `ahead`: other people served before this run's next batch, after the batch running now
    (0: it is next, or running);
    `start_s` / `finish_s`: estimated seconds until its next batch starts and until its last one ends (None until
    the queue has measured a batch)."""

    ahead: int
    people: int  # people with runs in the queue, this one included
    runs: int  # runs in the queue
    running: bool  # this run holds the GPU now
    own_runs_before: int  # this person's earlier runs that go first (other tabs)
    remaining: int  # images this run still has to make
    start_s: float | None
    finish_s: float | None
    made: int = 0  # images this run has made so far (its earlier turns)

    def describe(self) -> str:
        """One line for a waiting person (plain text: no Markdown). Before the run's first batch: its place in
        line; between its batches: how many other people's batches go before its next one."""
        if self.running:
            return "Generating now"
        if self.made:
            others = (f"{self.ahead} other {'person' if self.ahead == 1 else 'people'} before your next batch"
                      if self.ahead else "your next batch is next")
            text = f"{self.made} of {self.made + self.remaining} images done; {others} (the GPU takes turns)"
            return text + (f"; {about(self.finish_s)} until done" if self.finish_s is not None else "")
        parts = ["Your turn is next" if self.ahead == 0 else
                 f"Waiting for the GPU: {self.ahead} {'person' if self.ahead == 1 else 'people'} ahead of you"]
        if self.own_runs_before:
            parts.append(f"after your {self.own_runs_before} other run{'s' if self.own_runs_before > 1 else ''}")
        if self.start_s is not None:
            parts.append(f"{about(self.start_s)} until your first images, {about(self.finish_s)} until done")
        else:
            parts.append("estimating the wait from the first batch")
        return "; ".join(parts)


@dataclass
class _Turn:
    at: float  # clock at the end of the turn
    seconds: float
    images: int
    units: float


class Ticket:
    """One run's place in a FairQueue. Use `with ticket:` around each batch; close it when the run ends."""

    def __init__(self, queue: FairQueue, number: int, person: str, images: int, batch: int, cost: float,
                 label: str, submitted: float):
        self.queue, self.number, self.person, self.label = queue, number, person, label
        self.images, self.remaining, self.batch, self.cost = images, images, max(1, batch), max(cost, 1e-9)
        self.submitted, self.started = submitted, None
        self.served = 0  # images credited
        self.cancelled = False
        self.closed = False
        self.kind = "generate"
        self.on_wait: Callable[[WaitStatus], None] | None = None  # called while waiting (outside the queue's lock)
        self._wanting = False
        self._credit: int | None = None

    # A ticket is the lock the engine passes to core.pipeline.generate.generate_missing: one `with` per batch.
    def __enter__(self) -> Ticket:
        self.queue._acquire(self, self.on_wait)
        return self

    def __exit__(self, *exc) -> None:
        self.queue._release(self, self._credit)

    def turn(self, images: int | None = None, on_wait: Callable[[WaitStatus], None] | None = None) -> _TurnContext:
        """A turn crediting `images` (None: one batch; 0: setup work that makes no images)."""
        return _TurnContext(self, images, on_wait)

    def status(self) -> WaitStatus:
        return self.queue.status(self)

    def cancel(self) -> None:
        self.queue.cancel(self)

    def close(self) -> None:
        self.queue.close(self)


class _TurnContext:
    def __init__(self, ticket: Ticket, images: int | None, on_wait):
        self.ticket, self.images, self.on_wait = ticket, images, on_wait

    def __enter__(self) -> Ticket:
        # A turn that makes no images (setting the shared pipeline up) keeps the person's place in the rotation.
        self.ticket.queue._acquire(self.ticket, self.on_wait or self.ticket.on_wait, rotate=self.images != 0)
        return self.ticket

    def __exit__(self, *exc) -> None:
        self.ticket.queue._release(self.ticket, self.images)


@dataclass
class Snapshot:
    """The queue as the admin view shows it."""

    runs: list[dict]
    people: int
    images_per_s: float | None
    seconds_per_unit: float | None
    served_images: int
    served_runs: int
    refused: dict[str, int]
    busy_s: float
    limits: Limits = field(default_factory=Limits)


class FairQueue:
    """Round-robin over people, one batch per turn, with limits (see the module docstring).

    `free_memory()` returns the accelerator's free bytes, or None where there is none to watch (CPU); `clock` is
    injectable for tests. `poll_s`: how often a waiting run calls its `on_wait` (a UI's progress line)."""

    def __init__(self, limits: Limits | None = None, *, free_memory: Callable[[], int | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, poll_s: float = 0.25, history: int = 50):
        self.limits = limits or Limits()
        self.free_memory, self.clock, self.poll_s = free_memory, clock, poll_s
        self._cond = threading.Condition()
        # People with open tickets, but not the one being served: the next turn goes to the first one waiting.
        self._rotation: deque[str] = deque()
        self._in_service: str | None = None  # the person whose batch runs now (back to the end when it ends)
        self._tickets: dict[str, list[Ticket]] = {}  # each person's open tickets, oldest first
        self._holder: Ticket | None = None
        self._held_since = 0.0
        self._numbers = itertools.count(1)
        self._turns: deque[_Turn] = deque(maxlen=history)
        self._seconds_per_unit: float | None = None
        self.served_images = 0
        self.served_runs = 0
        self.busy_s = 0.0
        self.refused: dict[str, int] = {}
        self._version = 0  # bumped at every change of the queue's state (see _simulate)
        self._played: tuple | None = None

    # 1. submit -----------------------------------------------------------------------------------------------------
    def submit(self, person: str, images: int, *, batch: int = 4, cost: float = 1.0, label: str = "",
               kind: str = "generate") -> Ticket:
        """Enter the queue with a run of `images` images to make (cost: relative time per image, e.g. steps x
        pixels; batch: images per turn). Raises LimitError, with the message to show, when a limit is hit.
        `kind="embed"`: images to embed with CLIP, not to generate (images_per_run does not apply: a reference
        set of a thousand photos embeds in seconds)."""
        lim = self.limits
        with self._cond:
            if kind == "generate" and images > lim.images_per_run:
                self._refuse("images_per_run")
                raise LimitError(
                    f"This run would make {images} new images; the limit on this server is {lim.images_per_run} per "
                    f"run. Ask for at most {lim.images_per_run} (several runs with different first seeds make more).")
            mine = self._tickets.get(person, [])
            if len(mine) >= lim.runs_per_person:
                wait = self._first_finish(mine)
                self._refuse("runs_per_person")
                raise LimitError(
                    f"You already have {len(mine)} run{'s' if len(mine) != 1 else ''} in the queue (runs from your "
                    f"other tabs count too); the limit is {lim.runs_per_person} per person. Wait for one to finish "
                    f"or cancel it, then try again{self._in(wait)}.")
            total = sum(len(t) for t in self._tickets.values())
            if total >= lim.queue_length:
                wait = self._first_finish(None)
                self._refuse("queue_length")
                raise LimitError(f"The queue is full: {total} runs are waiting; try again{self._in(wait)}.")
            if lim.gpu_headroom_gb > 0 and self.free_memory is not None:
                free = self.free_memory()
                if free is not None and free < lim.gpu_headroom_gb * 1024**3:
                    wait = self._first_finish(None)
                    self._refuse("gpu_memory")
                    raise LimitError(
                        f"The GPU has {free / 1024**3:.1f} GB free, less than the {lim.gpu_headroom_gb:g} GB this "
                        f"server keeps in reserve, so it takes no new run now; try again{self._in(wait)}.")
            ticket = Ticket(self, next(self._numbers), person, images, batch, cost, label, self.clock())
            ticket.kind = kind
            if person not in self._tickets:
                self._tickets[person] = []
                self._rotation.append(person)  # a newcomer joins at the end: nobody waiting moves back
            self._tickets[person].append(ticket)
            self._changed()
            return ticket

    def _refuse(self, which: str) -> None:
        self.refused[which] = self.refused.get(which, 0) + 1

    @staticmethod
    def _in(seconds: float | None) -> str:
        return f" in {about(seconds)}" if seconds is not None else " when a run ahead finishes"

    # 2. turns ------------------------------------------------------------------------------------------------------
    def _next(self) -> Ticket | None:
        """The ticket whose turn it is: the first person in the rotation whose oldest run is waiting."""
        for person in self._rotation:
            head = self._tickets[person][0]
            if head._wanting and not head.cancelled:
                return head
        return None

    def _acquire(self, ticket: Ticket, on_wait: Callable[[WaitStatus], None] | None, rotate: bool = True) -> None:
        while True:
            with self._cond:
                if ticket.closed:
                    raise RuntimeError("this run already left the queue (ticket closed)")
                if ticket.cancelled:
                    ticket._wanting = False
                    raise QueueCancelled("The run was cancelled while it waited for the GPU.")
                ticket._wanting = True
                if self._holder is None and self._next() is ticket:
                    ticket._wanting = False
                    self._holder, self._held_since = ticket, self.clock()
                    if ticket.started is None:
                        ticket.started = self._held_since
                    if rotate:
                        # Out of the rotation while served; back at its end when the batch ends, behind anyone
                        # who arrived meanwhile (round-robin: a newcomer waits for this batch, not for two).
                        self._rotation.remove(ticket.person)
                        self._in_service = ticket.person
                    self._changed()
                    return
                status = self._status(ticket) if on_wait else None
                if not on_wait:
                    self._cond.wait(self.poll_s)
                    continue
            try:
                on_wait(status)  # outside the lock: a UI draws here, and its stop raises here
            except BaseException:
                with self._cond:
                    ticket._wanting = False
                    self._cond.notify_all()
                raise
            with self._cond:
                if self._holder is not None or self._next() is not ticket:
                    self._cond.wait(self.poll_s)

    def _release(self, ticket: Ticket, images: int | None) -> None:
        with self._cond:
            if self._holder is not ticket:
                return
            now = self.clock()
            seconds = now - self._held_since
            credit = min(ticket.batch, ticket.remaining) if images is None else max(0, min(images, ticket.remaining))
            self._holder = None
            self._changed()
            if self._in_service is not None:
                self._rotation.append(self._in_service)  # served: to the end of the rotation
                self._in_service = None
            self.busy_s += seconds
            if credit:
                ticket.remaining -= credit
                ticket.served += credit
                self.served_images += credit
                units = credit * ticket.cost
                self._turns.append(_Turn(now, seconds, credit, units))
                per_unit = seconds / units
                # Exponential average: quick to follow a new model or size, steady against one slow batch.
                self._seconds_per_unit = per_unit if self._seconds_per_unit is None else (
                    0.7 * self._seconds_per_unit + 0.3 * per_unit)
            self._cond.notify_all()

    def cancel(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.cancelled = True
            self._changed()
            self._cond.notify_all()

    def close(self, ticket: Ticket) -> None:
        """Leave the queue (finished, cancelled or failed); idempotent."""
        with self._cond:
            if ticket.closed:
                return
            if self._holder is ticket:
                self._release(ticket, 0)
            ticket.closed, ticket._wanting = True, False
            self._changed()
            mine = self._tickets.get(ticket.person, [])
            if ticket in mine:
                mine.remove(ticket)
                if ticket.served and ticket.remaining == 0:
                    self.served_runs += 1
            if not mine and ticket.person in self._tickets:
                del self._tickets[ticket.person]
                self._rotation.remove(ticket.person)
            self._cond.notify_all()

    # 3. status -----------------------------------------------------------------------------------------------------
    def status(self, ticket: Ticket) -> WaitStatus:
        with self._cond:
            return self._status(ticket)

    def _status(self, ticket: Ticket) -> WaitStatus:
        mine = self._tickets.get(ticket.person, [])
        before = mine.index(ticket) if ticket in mine else 0
        running = self._holder is ticket
        # The people before this one in the rotation: each gets one turn before this run's next. It never grows
        # while the run waits (served people move behind it, newcomers join behind it); the batch running now is
        # not counted (its time is in the estimate).
        if running:
            ahead = 0
        elif ticket.person in self._rotation:
            ahead = self._rotation.index(ticket.person)
        else:  # another run of this person is being served: this one follows it, at the end of the rotation
            ahead = len(self._rotation)
        start, finish = self._simulate().get(ticket.number, (None, None))
        return WaitStatus(ahead, self._people(), sum(len(t) for t in self._tickets.values()), running, before,
                          ticket.remaining, start, finish, ticket.served)

    def _simulate(self) -> dict[int, tuple[float | None, float | None]]:
        """Seconds until each open ticket's next turn and its end, playing the rotation forward with the measured
        seconds per unit of work (empty before the first measured batch). The play is redone only when the queue
        changes (a turn, a run in or out): a dozen waiting pages ask several times a second, and between changes
        only the running batch's elapsed time moves every answer."""
        if self._seconds_per_unit is None:
            return {}
        if self._played is None or self._played[0] != self._version:
            self._played = (self._version, *self._play())
        _, times, holder_s = self._played
        if self._holder is None:
            return times
        shift = min(self.clock() - self._held_since, holder_s)  # the running batch is that far along
        return {k: (max(0.0, a - shift), None if b is None else b - shift) for k, (a, b) in times.items()}

    def _changed(self) -> None:
        self._version += 1

    def _play(self) -> tuple[dict[int, tuple[float | None, float | None]], float]:
        """(times as _simulate gives them at the start of the running batch, that batch's expected seconds)."""
        spu = self._seconds_per_unit
        queues = {p: [[t, t.remaining] for t in ts if not t.cancelled] for p, ts in self._tickets.items()}
        out: dict[int, list] = {}
        now = 0.0
        holder = self._holder
        if holder is not None:  # the batch running now: what is left of it
            size = min(holder.batch, holder.remaining)
            now = size * holder.cost * spu
            for entry in queues.get(holder.person, []):
                if entry[0] is holder:
                    out[holder.number] = [0.0, None]
                    entry[1] -= size
                    if entry[1] <= 0:
                        out[holder.number][1] = now
                        queues[holder.person].remove(entry)
        rotation = [p for p in self._rotation if queues.get(p)]
        if self._in_service is not None and queues.get(self._in_service):
            rotation.append(self._in_service)  # back at the end after the batch running now
        while rotation:
            for person in list(rotation):
                entry = queues[person][0]
                ticket, left = entry
                out.setdefault(ticket.number, [now, None])
                size = min(ticket.batch, left)
                now += size * ticket.cost * spu
                entry[1] -= size
                if entry[1] <= 0:
                    out[ticket.number][1] = now
                    queues[person].pop(0)
                    if not queues[person]:
                        rotation.remove(person)
        holder_s = min(self._holder.batch, self._holder.remaining) * self._holder.cost * spu if self._holder else 0.0
        return {k: (v[0], v[1]) for k, v in out.items()}, holder_s

    def _first_finish(self, tickets: list[Ticket] | None) -> float | None:
        """Seconds until the first of `tickets` (None: of all runs) finishes, or None before any measurement."""
        times = self._simulate()
        numbers = [t.number for t in tickets] if tickets is not None else list(times)
        ends = [times[n][1] for n in numbers if n in times and times[n][1] is not None]
        return min(ends) if ends else None

    def snapshot(self) -> Snapshot:
        with self._cond:
            times = self._simulate()
            now = self.clock()
            runs = []
            for person in [*self._rotation, *([self._in_service] if self._in_service else [])]:
                for t in self._tickets[person]:
                    start, finish = times.get(t.number, (None, None))
                    runs.append({"run": t.number, "person": person, "kind": t.kind, "what": t.label,
                                 "images": t.images,
                                 "made": t.served, "state": "generating" if t is self._holder else (
                                     "cancelling" if t.cancelled else "waiting"),
                                 "waited_s": round((t.started or now) - t.submitted, 1),
                                 "finish_in_s": None if finish is None else round(finish, 1)})
            recent = [turn for turn in self._turns if now - turn.at <= 120]
            busy = sum(turn.seconds for turn in recent)
            rate = sum(turn.images for turn in recent) / busy if busy > 0 else None
            return Snapshot(runs, self._people(), rate, self._seconds_per_unit, self.served_images,
                            self.served_runs, dict(self.refused), self.busy_s, self.limits)

    def people_other_than(self, person: str) -> int:
        """People other than `person` with runs in the queue (whose batches alternate with this person's)."""
        with self._cond:
            return self._people() - (person in self._tickets)

    def _people(self) -> int:
        return len(self._tickets)

    def find(self, number: int) -> Ticket | None:
        with self._cond:
            for ts in self._tickets.values():
                for t in ts:
                    if t.number == number:
                        return t
        return None
