"""Benchmark: the statistics at scale, n = 100, 1,000, 10,000 embeddings of d = 512 (random unit vectors).

Per statistic and n: the median time of a few calls and the peak memory of one call, then the growth exponent
(slope of log time against log n: 1 = linear, 2 = quadratic). core.analysis.stats always; core.analysis.compare (FD,
CMMD, PRDC, nearest neighbours, computed over blocks of rows) and core.analysis.probe (the cross-validated separability
probe) when they import. Memory is tracemalloc's peak during the first (untimed) call: every numpy array and Python
object the call allocates at once (numpy reports its allocations to tracemalloc), not BLAS's internal buffers. The
process's resident set cannot say it reliably here: after the first large free, glibc keeps freed blocks of up to 32 MB
in the heap, and later allocations reuse them without the resident set growing.

A statistic whose next n would take longer than the budget (estimated from the last n and the exponent so far) is
skipped at that n and says so. The bootstrap runs fewer resamples at large n and the time is scaled to the
page's 200 resamples (marked "est.").
"""

from __future__ import annotations

import functools
import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .stats import Row, Samples, Section, Stopwatch, fmt_bytes, fmt_s, growth_exponent

D = 512
SIZES = (100, 1_000, 10_000)
BOOTSTRAP_PAGE_RESAMPLES = 200


@dataclass
class Case:
    name: str
    source: str  # the module it comes from
    run: Callable[[np.ndarray, np.ndarray], object]  # (synthetic, natural) -> anything
    target: str = "info"
    check: Callable[[dict[int, float], dict[int, float], float | None], bool] | None = None  # (times, peaks, exp)
    scale: Callable[[int], float] = lambda n: 1.0  # measured time x this = the reported time (resample scaling)
    estimated: Callable[[int], bool] = lambda n: False
    times: dict[int, Samples] = field(default_factory=dict)
    peaks: dict[int, float] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)


def unit_sets(n: int, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of n unit vectors that overlap but differ (a shared random mean direction, shifted), float32."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(d)
    shift = rng.standard_normal(d)
    syn = centre + 0.6 * shift + rng.standard_normal((n, d))
    nat = centre + rng.standard_normal((n, d)) * 1.3
    syn /= np.linalg.norm(syn, axis=1, keepdims=True)
    nat /= np.linalg.norm(nat, axis=1, keepdims=True)
    return syn.astype(np.float32), nat.astype(np.float32)


# -- time and memory -------------------------------------------------------------------------------------------------
def timed_call(fn: Callable[[], object]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def traced_peak(fn: Callable[[], object]) -> float:
    """tracemalloc's peak (bytes) during one call of fn, above what was allocated before it."""
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# -- the cases --------------------------------------------------------------------------------------------------------
def _resamples_for(n: int, quick: bool) -> int:
    if n <= (100 if quick else 1_000):
        return BOOTSTRAP_PAGE_RESAMPLES
    return (20 if n <= 1_000 else 10) if quick else 40


def stats_cases(quick: bool) -> list[Case]:
    from core.analysis import stats

    def linear_and_fast(limit_s: float):
        def check(times, peaks, exponent):
            return times.get(max(SIZES), math.inf) < limit_s and exponent is not None and exponent <= 1.2
        return check

    def below(megabytes: float):  # an n x n float64 matrix at n = 10,000 is 800 MB
        def check(times, peaks, exponent):
            return peaks.get(max(SIZES), math.inf) < megabytes * 1024**2
        return check

    def boot(name, fn):
        def run(x, y):
            return stats.bootstrap_interval(x, fn, resamples=_resamples_for(len(x), quick))
        return Case(f"bootstrap of {name} ({BOOTSTRAP_PAGE_RESAMPLES} resamples)", "core.analysis.stats", run,
                    scale=lambda n: (BOOTSTRAP_PAGE_RESAMPLES + 1) / (_resamples_for(n, quick) + 1),
                    estimated=lambda n: _resamples_for(n, quick) != BOOTSTRAP_PAGE_RESAMPLES)

    cases = [
        Case("Vendi score", "core.analysis.stats", lambda x, y: stats.vendi_score(x), "< 1 s @10k, exp <= 1.2",
             linear_and_fast(1.0)),
        Case("mean pairwise cosine", "core.analysis.stats", lambda x, y: stats.mean_pairwise_cosine(x),
             "mem < 100 MB @10k", below(100)),
        Case("effective rank", "core.analysis.stats", lambda x, y: stats.effective_rank(x)),
        Case("variance in first 2 PCs", "core.analysis.stats", lambda x, y: stats.variance_explained(x)),
        boot("Vendi", stats.vendi_score),
    ]
    # The page's intervals are delete-a-group jackknives: at most JACKKNIFE_GROUPS + 1 evaluations whatever n.
    page = Case(f"diversity_statistics (4 stats, jackknife of <= {stats.JACKKNIFE_GROUPS} groups)",
                "core.analysis.stats", lambda x, y: stats.diversity_statistics(x))
    cases.append(page)
    return cases


def compare_cases(log) -> list[Case]:
    """core.analysis.compare and core.analysis.probe, if they exist and import (another engineer writes them)."""
    cases = []
    try:
        from core.analysis import compare
    except Exception as exc:  # not there yet, or broken: say so, measure the rest
        log(f"[stats] core.analysis.compare not measured: {type(exc).__name__}: {exc}")
    else:
        bounded = "mem < 512 MB @10k"

        def memory_bounded(times, peaks, exponent):
            return peaks.get(max(SIZES), math.inf) < 512 * 1024**2

        cases += [
            Case("Frechet distance (FD)", "core.analysis.compare", lambda x, y: compare.frechet_distance(x, y)),
            Case("CMMD (blocked)", "core.analysis.compare", lambda x, y: compare.cmmd(x, y), bounded, memory_bounded),
            Case("PRDC, k=5 (blocked)", "core.analysis.compare", lambda x, y: compare.prdc(y, x), bounded,
                 memory_bounded),
            Case("nearest neighbours, k=5 (blocked)", "core.analysis.compare", lambda x, y: compare.nearest(x, y, k=5),
                 bounded, memory_bounded),
        ]
    try:
        from core.analysis import probe
    except Exception as exc:
        log(f"[stats] core.analysis.probe not measured: {type(exc).__name__}: {exc}")
    else:
        def run_probe(x, y):
            zeros = np.zeros(len(x), int)
            return probe.separability(x, y, zeros, np.zeros(len(y), int), ["class"])

        cases.append(Case("separability probe (5-fold CV + permutation test)", "core.analysis.probe", run_probe))
    return cases


# -- the benchmark ----------------------------------------------------------------------------------------------------
def bench_stats_scale(quick: bool, log, sizes: tuple[int, ...] = SIZES) -> tuple[list[Row], Section]:
    repeats = 3 if quick else 5
    budget_s = 60.0 if quick else 300.0
    cases = stats_cases(quick) + compare_cases(log)
    data = {n: unit_sets(n) for n in sizes}
    log(f"[stats] d = {D}, n = {', '.join(map(str, sizes))}; {len(cases)} statistics; up to {repeats} timed calls "
        f"each after one traced (memory) call; skipped past {budget_s:.0f} s per call")
    for case in cases:
        for n in sizes:
            call = functools.partial(case.run, *data[n])
            done = sorted(case.times)
            if done:
                prev = done[-1]
                exp_so_far = growth_exponent(done, [case.times[m].median for m in done]) if len(done) > 1 else 1.0
                estimate = case.times[prev].median * (n / prev) ** max(1.0, exp_so_far or 1.0)
                per_call = estimate / case.scale(n)  # what one call at n would really take (fewer resamples)
                if per_call > budget_s:
                    case.skipped[n] = f"skipped (est. {fmt_s(estimate)})"
                    log(f"[stats] {case.name}, n={n}: skipped, estimated {fmt_s(per_call)} per call")
                    continue
            samples = Samples()
            if n == sizes[0]:
                call()  # first use: imports (scikit-learn's, say) and caches are not the statistic's memory
            with Stopwatch() as first:
                case.peaks[n] = traced_peak(call)  # also the warm-up
            calls = repeats if first.wall < 1.0 else (2 if first.wall < 10.0 else 1)
            for _ in range(calls):
                samples.add(timed_call(call) * case.scale(n))
            case.times[n] = samples
            log(f"[stats] {case.name}, n={n}: {fmt_s(samples.median)}"
                + (" (est.)" if case.estimated(n) else "") + f", peak {fmt_bytes(case.peaks[n])}")
    del data

    rows, lines = [], []
    for case in cases:
        ns = sorted(case.times)
        medians = [case.times[m].median for m in ns]
        exponent = growth_exponent(ns, medians)
        last = growth_exponent(ns[-2:], medians[-2:]) if len(ns) >= 2 else None
        times = {m: case.times[m].median for m in ns}
        ok = case.check(times, case.peaks, last) if case.check else None
        for m in sizes:
            if m in case.times:
                lines.append([case.name, f"{m:,}", fmt_s(case.times[m].median) + (" est." if case.estimated(m)
                                                                                  else ""),
                              fmt_bytes(case.peaks.get(m)), "", ""])
            else:
                lines.append([case.name, f"{m:,}", case.skipped.get(m, "-"), "-", "", ""])
        lines[-1][4] = f"{exponent:.2f}" if exponent is not None else "-"
        lines[-1][5] = f"{last:.2f}" if last is not None else "-"
        if not ns:
            continue
        top = ns[-1]
        rows.append(Row(
            benchmark=f"stats n={top:,} d={D}: {case.name}", lab_label="n=" + f"{top:,}", other_label="-",
            lab=case.times[top], other=None, ratio=last, ratio_kind=f"growth exp. {ns[-2]:,}->{top:,}"
            if len(ns) >= 2 else "growth exp.", target=case.target, ok=ok,
            details={"source": case.source, "median_s": times, "peak_extra_bytes": case.peaks,
                     "growth_exponent_fit": exponent, "growth_exponent_last": last, "skipped": case.skipped,
                     "estimated_from_fewer_resamples": {m: case.estimated(m) for m in ns}}))
    section = Section(
        title=f"Statistics at scale (d = {D}, random unit vectors; time = median of up to {repeats} calls)",
        headers=["statistic", "n", "time", "peak memory", "exp. (fit)", "exp. (last decade)"],
        lines=lines,
        notes=["'est.': the bootstrap ran " + ", ".join(f"{_resamples_for(m, quick)} resamples at n = {m:,}"
                                                        for m in sizes if _resamples_for(m, quick) !=
                                                        BOOTSTRAP_PAGE_RESAMPLES)
               + f"; its time is scaled to {BOOTSTRAP_PAGE_RESAMPLES} (each resample costs the same).",
               "peak memory: tracemalloc's peak during one call (numpy arrays and Python objects; not BLAS's own "
               "buffers); an n x n float64 matrix at n = 10,000 would be 800 MB.",
               "exponent: slope of log time vs log n (1 = linear, 2 = quadratic); 'last decade' uses the two "
               "largest n only, where constant costs matter least."],
        data={c.name: {"median_s": {m: c.times[m].median for m in c.times}, "peak_extra_bytes": c.peaks,
                       "skipped": c.skipped} for c in cases})
    log(f"[stats] done: {statistics.median([len(c.times) for c in cases]):.0f} sizes measured per statistic")
    return rows, section
