"""Diversity statistics of a set of L2-normalised embeddings, with intervals, and 2-D projections; the lab's interval
methods (proportions, means, jackknife, ranges, equal-n comparison).

Definitions (see shared NOTES, section 8):
- mean pairwise cosine similarity: the mean of cos(x_i, x_j) over i != j.
- Vendi score (Friedman & Dieng 2023): exp of the Shannon entropy of the eigenvalues of K/n, K_ij = cos(x_i, x_j).
  For unit vectors K = X X^T, whose non-zero eigenvalues equal those of X^T X (d x d): cost linear in n.
- effective rank (Roy & Vetterli 2007): exp of the entropy of the normalised singular values of the centred X.
- variance explained by the first k principal components of the centred X.

Intervals (README, "How to read the numbers"):
- a proportion (k of n): the Wilson score interval with continuity correction (scipy's binomtest(k, n)
  .proportion_ci(method="wilsoncc"); why the correction: PROPORTION_METHOD). The normal bootstrap interval around
  k/n collapses to zero width at k = 0 or n and covered 65% at n = 20, p = 0.05.
- a mean of independent values (CLIPScore, a rank): Student's t interval.
- a diversity statistic of a set: the delete-a-group jackknife (Tukey 1958), estimate +- t * SD_jackknife.
  Why not the bootstrap: a resample with replacement repeats images, and a repeated image is a pair with no
  diversity, so on resamples the statistic drops by an amount that varies with the number of distinct images. That
  adds spread which the statistic does not have: for the effective rank the bootstrap SD was 2-7x the SD across
  independent sets. Leaving images out never repeats one. Measured in tests/test_stats.py: coverage 93-95% and
  SD 0.96-1.04x the true SD for the effective rank (n = 20 and 100; 64 and 512 dimensions), 93-94% for the mean
  cosine. Not exact everywhere: in other trial settings the jackknife SD ranged from ~0.6x to ~1.8x (it tends to
  be conservative for nearly isotropic sets), still far closer than the bootstrap.
  What the interval covers: the statistic's expected value for a set of *this many* images from the same source.
  Vendi, effective rank and the variance share change with n themselves: compare sets at equal n
  (`equal_n_estimate`), never a 16-image set with a 3-image one.
- every interval is clipped to the values the statistic can take (`clip_to_range`), and the estimate says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
JACKKNIFE_GROUPS = 100  # above this many images, leave out groups of images instead of one: bounded cost
EQUAL_N_REPEATS = 20  # random subsamples averaged when a larger set is compared at a smaller set's n
LEVEL = 0.95
UNIT_TOLERANCE = 1e-3  # |norm - 1| allowed for a "unit" row: float32 CLIP embeddings are within ~1e-6


def check_rows(x: np.ndarray, unit: bool, what: str = "embeddings") -> np.ndarray:
    """x as a float64 2-D array, after checking every row is finite (and unit length when `unit`): a NaN row would
    otherwise surface as an unexplained LinAlgError, and a non-unit row silently changes a cosine statistic."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"The {what} must be a 2-D array (n images x d dimensions), got shape {x.shape}.")
    finite = np.isfinite(x).all(axis=1)
    bad = ~finite
    if unit and len(x):
        norms = np.linalg.norm(np.where(finite[:, None], x, 0.0), axis=1)
        bad |= np.abs(norms - 1.0) > UNIT_TOLERANCE
    if bad.any():
        rows = np.flatnonzero(bad)
        need = "finite unit vectors" if unit else "finite"
        raise ValueError(f"{len(rows)} of {len(x)} {what} are not {need} (rows {rows[:10].tolist()}"
                         f"{'...' if len(rows) > 10 else ''}): NaN, zero or unnormalised. Re-embed these images "
                         f"(a broken CLIP checkpoint or a blank image can cause this)"
                         + ("; this statistic is defined on L2-normalised embeddings (cosine similarity)." if unit
                            else "."))
    return x


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    return np.clip(x @ x.T, -1.0, 1.0)


def mean_pairwise_cosine(x: np.ndarray) -> float:
    """Mean off-diagonal cosine, as (|sum x|^2 - sum |x|^2) / (n(n-1)): O(n d), no n x n matrix."""
    x = check_rows(x, unit=True)
    n = len(x)
    if n < 2:
        return float("nan")
    s = x.sum(axis=0)
    return float((s @ s - np.einsum("ij,ij->", x, x)) / (n * (n - 1)))


def _entropy_exp(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def vendi_score(x: np.ndarray) -> float:
    """exp(H(eig(K/n))) with K the cosine-similarity matrix, through the d x d (or n x n, whichever is smaller)
    Gram matrix. Matches the `vendi-score` package's score_K on K = X X^T, which needs a unit diagonal: rows must
    be L2-normalised (an unnormalised set would give a meaningless number, e.g. 1e-132)."""
    x = check_rows(x, unit=True)
    n, d = x.shape
    if n == 0:
        return float("nan")
    gram = (x.T @ x) if d < n else (x @ x.T)
    eig = np.linalg.eigvalsh(gram / n)
    return _entropy_exp(np.clip(eig, 0.0, None))


def centred_singular_values(x: np.ndarray) -> np.ndarray:
    """Singular values of the centred set, from the eigenvalues of its smaller Gram matrix (n x n or d x d):
    ~10x faster than an SVD for the wide sets CLIP gives (n < d), and the bootstrap calls it hundreds of times."""
    xc = x.astype(np.float64) - x.mean(axis=0)
    gram = xc @ xc.T if len(xc) <= xc.shape[1] else xc.T @ xc
    ev = np.linalg.eigvalsh(gram)
    ev[ev < ev.max(initial=0.0) * len(gram) * np.finfo(np.float64).eps] = 0.0  # round-off, not variance
    return np.sqrt(ev)[::-1]


def pca_spectrum(x: np.ndarray) -> np.ndarray:
    """Fraction of variance explained by each principal component of the centred set."""
    x = check_rows(x, unit=False)
    if len(x) < 2:
        return np.array([])
    var = centred_singular_values(x) ** 2
    return var / var.sum() if var.sum() > 0 else var


def effective_rank(x: np.ndarray) -> float:
    x = check_rows(x, unit=False)
    if len(x) < 2:
        return float("nan")
    sv = centred_singular_values(x)
    return _entropy_exp(sv / sv.sum()) if sv.sum() > 0 else 1.0


def variance_explained(x: np.ndarray, k: int = 2) -> float:
    spec = pca_spectrum(x)
    return float(spec[:k].sum()) if len(spec) else float("nan")


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    low: float
    high: float
    n: int
    note: str = ""
    clipped: str = ""  # e.g. "[0, 1]": the interval reached past what the statistic can be and was cut there

    def scaled(self, scale: float, name: str | None = None) -> Estimate:
        """The estimate in the units a page shows (e.g. an accuracy in %): value and interval times `scale`. A
        clipped interval then says "the statistic's range", since `clipped` is in the statistic's own units."""
        return Estimate(self.name if name is None else name, self.value * scale, self.low * scale, self.high * scale,
                        self.n, self.note, self.clipped and ("the statistic's range" if scale != 1.0 else self.clipped))

    def format(self, digits: int = 2, scale: float = 1.0) -> str:
        """The one text of an estimate, on every page and in every report: "value [low, high]", or why not."""
        if scale != 1.0:
            return self.scaled(scale).format(digits)
        if not np.isfinite(self.value):
            return f"n/a ({self.note})" if self.note else "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):  # e.g. too few items to resample
            return f"{self.value:.{digits}f} (no interval{': ' + self.note if self.note else ''})"
        text = f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return text + (f" (interval clipped to {self.clipped})" if self.clipped else "")


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def _bound_text(v: float) -> str:
    return "inf" if v == np.inf else "-inf" if v == -np.inf else f"{v:.4g}"


def clip_to_range(estimate: Estimate, low_bound: float, high_bound: float) -> Estimate:
    """The estimate with its interval cut to [low_bound, high_bound], the values the statistic can take, and
    `clipped` saying so when a bound was reached past (a normal interval near a bound can reach -1.7 for a cosine).
    An interval entirely outside the range (impossible for a sound method; kept for safety) collapses to the bound."""
    low, high = estimate.low, estimate.high
    if not (np.isfinite(low) and np.isfinite(high)):
        return estimate
    new_low, new_high = float(np.clip(low, low_bound, high_bound)), float(np.clip(high, low_bound, high_bound))
    if (new_low, new_high) == (low, high):
        return estimate
    return replace(estimate, low=new_low, high=new_high,
                   clipped=f"[{_bound_text(low_bound)}, {_bound_text(high_bound)}]")


# Which Wilson interval: the continuity-corrected one. Exact coverage (every k weighted by its binomial
# probability) for n = 20..100 and p = 0.05..0.5: plain Wilson dips to 92.0% (n = 35, p = 0.1) and 92.4% (n = 20,
# p = 0.05); with the correction it never falls below 95.1% (mean 96.8%). The lab's sentences are decisions, so
# the interval errs on the wide side rather than the overconfident one.
PROPORTION_METHOD = "wilsoncc"


def wilson_interval(successes: int, n: int, level: float = LEVEL,
                    method: str = PROPORTION_METHOD) -> tuple[float, float]:
    """The Wilson score interval of a proportion, continuity-corrected by default (scipy's binomtest). Never outside
    [0, 1] and never of zero width, unlike the normal interval around k/n (which covered 65% at n = 20, p = 0.05
    and has zero width at k = 0)."""
    from scipy.stats import binomtest

    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"A proportion needs 0 <= successes <= n and n >= 1 (got {successes} of {n}).")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method=method)
    return float(ci.low), float(ci.high)


def proportion_estimate(name: str, flags: np.ndarray, note: str = "", level: float = LEVEL) -> Estimate:
    """Share of True among `flags` (one per independent item: image, photo) with its Wilson interval."""
    flags = np.asarray(flags)
    if flags.dtype != bool:
        values = flags.astype(np.float64)
        if not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"'{name}': a proportion needs yes/no flags (0/1 or True/False), got other values.")
        flags = values.astype(bool)
    n = len(flags)
    if n == 0:
        return Estimate(name, float("nan"), float("nan"), float("nan"), 0, "no images")
    k = int(flags.sum())
    low, high = wilson_interval(k, n, level)
    return Estimate(name, k / n, low, high, n, note)


def count_estimate(name: str, successes: int, n: int, note: str = "", level: float = LEVEL) -> Estimate:
    """proportion_estimate from counts (e.g. a cluster's images among a prompt's images)."""
    if n == 0:
        return Estimate(name, float("nan"), float("nan"), float("nan"), 0, "no images")
    low, high = wilson_interval(successes, n, level)
    return Estimate(name, successes / n, low, high, n, note)


def mean_estimate(name: str, values: np.ndarray, note: str = "", bounds: tuple[float, float] = (-np.inf, np.inf),
                  level: float = LEVEL) -> Estimate:
    """Mean of independent values with Student's t interval, clipped to `bounds` (the values' own range)."""
    from scipy import stats as sps

    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"'{name}': {int((~np.isfinite(values)).sum())} value(s) are NaN or infinite.")
    n = len(values)
    if n == 0:
        return Estimate(name, float("nan"), float("nan"), float("nan"), 0, "no images")
    value = float(values.mean())
    if n < 2:
        return Estimate(name, value, float("nan"), float("nan"), n, "needs at least 2 images for an interval")
    half = float(sps.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return clip_to_range(Estimate(name, value, value - half, value + half, n, note), *bounds)


def bootstrap_interval(
    x: np.ndarray, statistic: Callable[[np.ndarray], float], resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED, level: float = 0.95,
) -> tuple[float, float, float]:
    """(estimate, low, high): the normal bootstrap interval, estimate +- z * SD of the statistic over resamples.

    Kept for statistics without a better method here. For the diversity statistics use `jackknife_interval`:
    resampling with replacement repeats items, and repeated items look like zero-diversity pairs, which inflates
    the SD (2-7x for the effective rank). The interval is centred on the estimate because the resamples are biased.
    """
    value = float(statistic(x))
    n = len(x)
    if n < 2 or not np.isfinite(value):
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(x[rng.integers(0, n, n)]) for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    sd = float(draws.std(ddof=1)) if len(draws) > 1 else 0.0
    z = _z(level)
    return value, value - z * sd, value + z * sd


def jackknife_groups(n: int, groups: int = JACKKNIFE_GROUPS) -> int:
    return min(n, max(2, groups))


def jackknife_sd(x: np.ndarray, statistic: Callable[[np.ndarray], float], groups: int = JACKKNIFE_GROUPS,
                 seed: int = BOOTSTRAP_SEED) -> float:
    """The delete-a-group jackknife standard error: split the rows into g = min(n, groups) groups (a seeded
    shuffle), recompute the statistic without each group, SD = sqrt((g - 1) / g * sum (t_i - mean t)^2). With
    g = n it is the ordinary leave-one-out jackknife. NaN when a leave-out value is undefined (e.g. n = 2 for a
    pairwise statistic)."""
    n = len(x)
    g = jackknife_groups(n, groups)
    if n < 3:
        return float("nan")
    order = np.random.default_rng(seed).permutation(n) if g < n else np.arange(n)
    parts = np.array_split(order, g)
    keep = np.ones(n, bool)
    values = []
    for part in parts:
        keep[part] = False
        values.append(float(statistic(x[keep])))
        keep[part] = True
    values = np.asarray(values)
    if not np.isfinite(values).all():
        return float("nan")
    return float(np.sqrt((g - 1) / g * ((values - values.mean()) ** 2).sum()))


def jackknife_interval(x: np.ndarray, statistic: Callable[[np.ndarray], float], groups: int = JACKKNIFE_GROUPS,
                       level: float = LEVEL) -> tuple[float, float, float]:
    """(estimate, low, high) = estimate +- t * jackknife SD, t the Student quantile with g - 1 degrees of freedom
    (g groups; Tukey's choice): at n = 20 it widens the interval by 7% over z = 1.96, which the mean cosine's
    coverage needed (91% with z, 93% with t in tests/test_stats.py). Module docstring: why not the bootstrap."""
    from scipy import stats as sps

    value = float(statistic(x))
    if not np.isfinite(value):
        return value, float("nan"), float("nan")
    sd = jackknife_sd(x, statistic, groups)
    t = float(sps.t.ppf(0.5 + level / 2, max(1, jackknife_groups(len(x), groups) - 1)))
    return value, value - t * sd, value + t * sd


# Each statistic: (name, function, what it means). Registry as data: the page and the export iterate over it.
STATISTICS: list[tuple[str, Callable[[np.ndarray], float], str]] = [
    ("mean pairwise cosine", mean_pairwise_cosine,
     "average CLIP similarity between two images of the set; higher = more alike"),
    ("Vendi score", vendi_score,
     "effective number of distinct images (1 = all the same, n = all orthogonal); higher = more diverse; grows "
     "with n: compare sets at equal n"),
    ("effective rank", effective_rank,
     "effective number of directions the set spreads along; higher = more diverse; grows with n: compare sets "
     "at equal n"),
    ("variance in first 2 PCs", variance_explained,
     "share of the set's variance the 2-D PCA map shows; higher = the set varies along fewer directions"),
]


def statistic_range(name: str, n: int, d: int) -> tuple[float, float]:
    """The values each STATISTICS entry can take for n unit vectors in d dimensions: intervals are cut to it.
    Mean cosine >= -1/(n-1) because |sum x|^2 >= 0; Vendi <= min(n, d) (the rank of K); the effective rank of the
    centred set <= min(n - 1, d); the variance share of 2 of at most r = min(n - 1, d) components >= min(2, r) / r."""
    rank = max(1, min(n - 1, d))
    return {"mean pairwise cosine": (-1.0 / max(n - 1, 1), 1.0), "Vendi score": (1.0, float(min(n, d))),
            "effective rank": (1.0, float(rank)), "variance in first 2 PCs": (min(2, rank) / rank, 1.0)}[name]


# Statistics that describe how the set varies: undefined (not 0, not 1) when every image is the same.
NEEDS_VARIANCE = {"effective rank", "variance in first 2 PCs"}


def check_embeddings(x: np.ndarray) -> None:
    """Statistics need finite, unit-length rows: say which rows are not, instead of returning NaN or garbage."""
    check_rows(x, unit=True)


def diversity_statistics(x: np.ndarray, groups: int = JACKKNIFE_GROUPS) -> list[Estimate]:
    """Each STATISTICS entry with its jackknife interval, clipped to the statistic's range. Degenerate sets get NaN
    with a note saying why: fewer than 2 images (nothing to compare), or all images identical (no variance to
    describe); 2 images get a value without an interval (leaving one out leaves no pair)."""
    check_embeddings(x)
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    identical = n >= 2 and float(np.ptp(x, axis=0).max()) == 0.0
    out = []
    for name, fn, _ in STATISTICS:
        if n < 2:
            out.append(Estimate(name, float("nan"), float("nan"), float("nan"), n, "needs at least 2 images"))
        elif identical and name in NEEDS_VARIANCE:
            out.append(Estimate(name, float("nan"), float("nan"), float("nan"), n,
                                "all images are identical: no variance"))
        else:
            value, low, high = jackknife_interval(x, fn, groups)
            note = "" if np.isfinite(low) else "needs at least 3 images for an interval"
            out.append(clip_to_range(Estimate(name, value, low, high, n, note), *statistic_range(name, n, x.shape[1])))
    return out


# -- comparing sets of different sizes --------------------------------------------------------------------------------

def subsample_values(x: np.ndarray, statistic: Callable[[np.ndarray], float], n: int,
                     repeats: int = EQUAL_N_REPEATS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """The statistic on `repeats` random subsets of n rows (without replacement); the set itself when n = len(x)."""
    if not 1 <= n <= len(x):
        raise ValueError(f"Cannot draw {n} of {len(x)} images.")
    if n == len(x):
        return np.array([float(statistic(x))])
    rng = np.random.default_rng(seed)
    return np.array([float(statistic(x[np.sort(rng.choice(len(x), n, replace=False))])) for _ in range(repeats)])


def equal_n_estimate(x: np.ndarray, name: str, n: int, repeats: int = EQUAL_N_REPEATS,
                     seed: int = BOOTSTRAP_SEED) -> Estimate:
    """STATISTICS entry `name` of set x as if it had n images: the mean over `repeats` random subsets of n images,
    so an n-dependent statistic (Vendi, effective rank) of a larger set can be compared with a set of n. Interval:
    the mean subset value +- z * the mean jackknife SD of one subset of n, the uncertainty of a set of n images
    (conservative: averaging over subsets removes part of the subsampling noise)."""
    fn = dict((s, f) for s, f, _ in STATISTICS)[name]
    x = check_rows(x, unit=True)
    if n == len(x):
        return next(e for e in diversity_statistics(x) if e.name == name)
    values = subsample_values(x, fn, n, repeats, seed)
    rng = np.random.default_rng(seed + 1)
    sds = [jackknife_sd(x[np.sort(rng.choice(len(x), n, replace=False))], fn) for _ in range(min(5, repeats))]
    value, sd, z = float(values.mean()), float(np.mean(sds)), _z(LEVEL)
    note = f"mean over {repeats} random subsets of {n} of the {len(x)} images"
    return clip_to_range(Estimate(name, value, value - z * sd, value + z * sd, n, note),
                         *statistic_range(name, n, x.shape[1]))


def statistic_curve(x: np.ndarray, name: str, sizes: list[int], repeats: int = EQUAL_N_REPEATS,
                    seed: int = BOOTSTRAP_SEED) -> list[tuple[int, float, float]]:
    """[(n, mean, SD across subsets)] of STATISTICS entry `name` over random subsets of each size: how the
    statistic grows with n, so sets of different sizes can be read at the same n."""
    fn = dict((s, f) for s, f, _ in STATISTICS)[name]
    x = check_rows(x, unit=True)
    out = []
    for n in sizes:
        if 2 <= n <= len(x):
            values = subsample_values(x, fn, n, repeats, seed)
            out.append((n, float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0))
    return out


def curve_sizes(largest: int, points: int = 8) -> list[int]:
    """About `points` sizes from 2 to `largest`, evenly spaced on a log scale, always including both ends."""
    if largest < 2:
        return []
    sizes = np.unique(np.round(np.geomspace(2, largest, min(points, largest - 1))).astype(int))
    return sorted(set(sizes.tolist()) | {2, largest})


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates for a map, and the method actually used. Deterministic (fixed random_state)."""
    n = len(x)
    if n == 0:
        return np.zeros((0, 2)), method
    if n < 3:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)]), "index (fewer than 3 points)"
    if method == "tsne" and n >= 5:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, (n - 1) / 3))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return coords, f"t-SNE (perplexity {perplexity:.0f})"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, svd_solver="full").fit_transform(x.astype(np.float64)), "PCA"
