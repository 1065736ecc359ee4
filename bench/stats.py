"""Timing samples, result rows and the plain-text table."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Samples:
    """Repeated measurements of one thing, in seconds (wall clock; `cpu` is this process's CPU time, all threads)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float | None = None) -> None:
        self.wall.append(wall)
        if cpu is not None:
            self.cpu.append(cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def min(self) -> float:
        return min(self.wall)

    @property
    def max(self) -> float:
        return max(self.wall)

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.cpu else None

    def summary(self) -> dict:
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "cpu_median_s": self.cpu_median,
                "wall_s": self.wall, "cpu_s": self.cpu}


class Stopwatch:
    """`with Stopwatch() as sw: ...` then sw.wall, sw.cpu (seconds)."""

    def __enter__(self) -> Stopwatch:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def fmt_s(seconds: float | None) -> str:
    """A duration with a readable unit and 3 significant digits."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def fmt_range(s: Samples) -> str:
    lo, hi = fmt_s(s.min), fmt_s(s.max)
    lo_num, lo_unit = lo.split(" ")
    hi_num, hi_unit = hi.split(" ")
    return f"{lo_num}-{hi}" if lo_unit == hi_unit else f"{lo}-{hi}"


@dataclass
class Row:
    """One line of the final table. `ratio` is defined per benchmark (the `ratio_kind` says which way)."""

    benchmark: str
    lab_label: str  # what the "lab" column holds
    other_label: str  # what the "raw/other" column holds
    lab: Samples
    other: Samples | None
    ratio: float | None
    ratio_kind: str  # e.g. "lab/raw" or "generate/reopen"
    target: str  # human form, e.g. "<= 1.05"
    ok: bool | None  # None: informational, no target
    details: dict = field(default_factory=dict)
    noise_suspected: bool = False  # missed, but what the lab adds, measured directly, is within the target
    note: str = ""  # a footnote printed under the table

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "info"
        if self.ok:
            return "ok"
        return "MISS?" if self.noise_suspected else "MISS"

    def cells(self) -> list[str]:
        rng = f"{self.lab_label} {fmt_range(self.lab)}"
        if self.other is not None:
            rng += f" | {self.other_label} {fmt_range(self.other)}"
        if self.ratio is None:
            ratio = "-"
        elif self.ratio >= 10:
            ratio = f"{self.ratio:.0f}x"
        else:
            ratio = f"{self.ratio:.3f}"
        return [self.benchmark, fmt_s(self.lab.median), fmt_s(self.other.median) if self.other else "-", rng,
                f"{ratio} ({self.ratio_kind})" if self.ratio is not None else "-", self.target, self.verdict]

    def to_json(self) -> dict:
        d = asdict(self)
        d["lab"] = self.lab.summary()
        d["other"] = self.other.summary() if self.other else None
        d["verdict"] = self.verdict
        return d


HEADERS = ["benchmark", "lab median", "raw/other median", "min-max", "ratio", "target", "verdict"]


def format_grid(headers: list[str], lines: list[list[str]]) -> str:
    """Plain-text columns, a dashed line under the headers: pastes into a note or an issue as it is."""
    table = [headers] + lines
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    out = []
    for n, line in enumerate(table):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_table(rows: list[Row]) -> str:
    return format_grid(HEADERS, [r.cells() for r in rows])


@dataclass
class Section:
    """A detail table printed under the main one (per-n statistics, memory, breakdowns)."""

    title: str
    headers: list[str]
    lines: list[list[str]]
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the raw numbers, for the JSON

    def format(self) -> str:
        text = f"{self.title}\n{format_grid(self.headers, self.lines)}"
        return text + "".join(f"\n  * {note}" for note in self.notes)

    def to_json(self) -> dict:
        return {"title": self.title, "table": format_grid(self.headers, self.lines), "notes": self.notes,
                "data": self.data}


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GB"


def growth_exponent(ns: list[float], times: list[float]) -> float | None:
    """Least-squares slope of log(time) against log(n): 1 = linear, 2 = quadratic."""
    import math

    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, times) if t and t > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None
