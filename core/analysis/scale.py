"""Statistics of large sets (100,000 embeddings and more) in bounded memory, each stating its n.

1. `streamed_diversity_statistics`: core.analysis.stats' diversity statistics (mean pairwise cosine, Vendi
   score, effective rank, variance in the first 2 PCs) with the same jackknife intervals, from one pass over the
   rows in batches.
   Every one of them is a function of the set's sufficient statistics n, sum x, sum |x|^2 and X^T X (d x d):
   - mean cosine = (|sum x|^2 - sum |x|^2) / (n (n - 1));
   - Vendi = exp H(eig(X^T X / n)): the non-zero eigenvalues of X^T X / n equal those of the n x n kernel
     X X^T / n (core.analysis.stats.vendi_score, NOTES section 8);
   - the centred set's squared singular values = eig(X^T X - (sum x)(sum x)^T / n): the effective rank and the
     variance shares.
   The delete-a-group jackknife leaves out one group at a time: its statistics are the totals minus the group's.
   Memory: (groups + 1) d x d matrices and one batch of rows, whatever n is. With the same groups, the values and
   intervals equal core.analysis.stats.diversity_statistics (tested).
2. `nearest_neighbours`: exact k-NN by cosine with faiss (IndexFlatIP), in query blocks.
3. `prdc_estimates` and `never_drawn`: PRDC and the natural photos no synthetic image comes near, exact on sets up to
   `EXACT_LIMIT` rows (core.analysis.compare's blockwise code), else on a seeded random sample of that many rows of each
   large set, which the estimate's note states with its n; proportions get Wilson intervals at the sample's n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from core.analysis.compare import single_threaded
from core.analysis.stats import (
    BOOTSTRAP_SEED,
    LEVEL,
    NEEDS_VARIANCE,
    STATISTICS,
    UNIT_TOLERANCE,
    Estimate,
    _entropy_exp,
    check_rows,
    clip_to_range,
    jackknife_groups,
    mean_estimate,
    proportion_estimate,
    statistic_range,
)

SCALE_GROUPS = 20  # jackknife groups at scale: 20 d x d matrices (42 MB at d = 512), 40 eigendecompositions
EXACT_LIMIT = 5_000  # rows per set up to which PRDC and "never drawn" are exact; above, a sample of this many
SAMPLE_SEED = 0


# -- 1. diversity statistics from sufficient statistics ----------------------------------------------------------------
@dataclass
class Moments:
    """n, sum x, sum |x|^2 and X^T X of a set of rows (float64)."""

    n: int
    total: np.ndarray
    sq: float
    gram: np.ndarray

    @classmethod
    def zeros(cls, d: int) -> Moments:
        return cls(0, np.zeros(d), 0.0, np.zeros((d, d)))

    def add(self, x: np.ndarray) -> None:
        """Add rows; X^T X is multiplied in the rows' own precision (float32 halves the time at scale; each batch's
        product is summed in float64) and the sums in float64."""
        self.n += len(x)
        self.total += x.sum(axis=0, dtype=np.float64)
        self.sq += float(np.einsum("ij,ij->", x, x, dtype=np.float64))
        self.gram += x.T @ x

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.sq + other.sq, self.gram + other.gram)

    def __sub__(self, other: Moments) -> Moments:
        return Moments(self.n - other.n, self.total - other.total, self.sq - other.sq, self.gram - other.gram)

    # The statistics, each equal to core.analysis.stats' function of the rows these moments sum.
    def mean_cosine(self) -> float:
        n = self.n
        return float((self.total @ self.total - self.sq) / (n * (n - 1))) if n >= 2 else float("nan")

    def vendi(self) -> float:
        if self.n == 0:
            return float("nan")
        return _entropy_exp(np.clip(np.linalg.eigvalsh(self.gram / self.n), 0.0, None))

    def centred_eigenvalues(self) -> np.ndarray:
        """Squared singular values of the centred rows (core.analysis.stats.centred_singular_values squared), largest
        first; round-off is zeroed with the same rule (relative to the largest, times the smaller Gram's size)."""
        if getattr(self, "_centred", None) is None:  # two statistics read it: one eigendecomposition
            ev = np.linalg.eigvalsh(self.gram - np.outer(self.total, self.total) / self.n)
            size = min(self.n, len(self.gram))
            ev[ev < ev.max(initial=0.0) * size * np.finfo(np.float64).eps] = 0.0
            self._centred = ev[::-1]
        return self._centred

    def effective_rank(self) -> float:
        if self.n < 2:
            return float("nan")
        sv = np.sqrt(self.centred_eigenvalues())
        return _entropy_exp(sv / sv.sum()) if sv.sum() > 0 else 1.0

    def variance_explained(self, k: int = 2) -> float:
        if self.n < 2:
            return float("nan")
        var = self.centred_eigenvalues()
        return float((var / var.sum())[:k].sum()) if var.sum() > 0 else float(var[:k].sum())


BY_NAME = {"mean pairwise cosine": Moments.mean_cosine, "Vendi score": Moments.vendi,
           "effective rank": Moments.effective_rank, "variance in first 2 PCs": Moments.variance_explained}


def group_of_rows(n: int, groups: int, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Each row's jackknife group, as core.analysis.stats.jackknife_sd draws them (a seeded permutation split in g
    parts)."""
    g = jackknife_groups(n, groups)
    order = np.random.default_rng(seed).permutation(n) if g < n else np.arange(n)
    out = np.empty(n, np.int64)
    for i, part in enumerate(np.array_split(order, g)):
        out[part] = i
    return out


@single_threaded
def streamed_diversity_statistics(batches: Iterable[np.ndarray], n: int, groups: int = SCALE_GROUPS,
                                  level: float = LEVEL, dtype=np.float64) -> list[Estimate]:
    """core.analysis.stats.diversity_statistics(X, groups) of the rows X that `batches` yield in order (n of them in
    all), from one pass in bounded memory. `dtype` float64: the same numbers as core.analysis.stats; float32 (for
    100,000 rows): about twice as fast, within 1e-5 of them (tested)."""
    from scipy import stats as sps

    g = jackknife_groups(n, groups)
    group = group_of_rows(n, groups)
    parts: list[Moments] = []
    low = high = None
    seen = 0
    for batch in batches:
        x = np.asarray(batch, dtype=dtype)
        if x.ndim != 2:
            check_rows(x, unit=True)  # raises: says what shape is needed
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        if not (np.isfinite(norms).all() and (np.abs(norms - 1.0) <= UNIT_TOLERANCE).all()):
            check_rows(x, unit=True)  # raises, naming the rows
        if not parts:
            parts = [Moments.zeros(x.shape[1]) for _ in range(g)]
            low, high = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
        else:
            low, high = np.minimum(low, x.min(axis=0)), np.maximum(high, x.max(axis=0))
        which = group[seen : seen + len(x)]
        for i in np.unique(which):
            parts[i].add(x[which == i])
        seen += len(x)
    if seen != n:
        raise ValueError(f"{seen} rows were read where {n} were expected: the dataset changed while being read.")
    d = len(parts[0].total) if parts else 0
    whole = Moments.zeros(d)
    for p in parts:
        whole = whole + p
    identical = n >= 2 and float((high - low).max()) == 0.0
    t = float(sps.t.ppf(0.5 + level / 2, max(1, g - 1)))
    leave_out = [whole - p for p in parts] if n >= 3 else []
    out = []
    for name, _, _ in STATISTICS:
        if n < 2:
            out.append(Estimate(name, float("nan"), float("nan"), float("nan"), n, "needs at least 2 images"))
            continue
        if identical and name in NEEDS_VARIANCE:
            out.append(Estimate(name, float("nan"), float("nan"), float("nan"), n,
                                "all images are identical: no variance"))
            continue
        fn = BY_NAME[name]
        value = float(fn(whole))
        values = np.array([fn(m) for m in leave_out])
        if len(values) and np.isfinite(values).all() and np.isfinite(value):
            sd = float(np.sqrt((g - 1) / g * ((values - values.mean()) ** 2).sum()))
            est = Estimate(name, value, value - t * sd, value + t * sd, n, "")
        else:
            est = Estimate(name, value, float("nan"), float("nan"), n, "needs at least 3 images for an interval")
        out.append(clip_to_range(est, *statistic_range(name, n, d)))
    return out


def in_batches(x: np.ndarray, rows: int = 8192) -> Iterable[np.ndarray]:
    for start in range(0, len(x), rows):
        yield x[start : start + rows]


# -- 2. nearest neighbours with faiss --------------------------------------------------------------------------------
def nearest_neighbours(query: np.ndarray, reference: np.ndarray, k: int = 5,
                       block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine similarities), each (n_query, k), most similar first: exact search (faiss IndexFlatIP) of
    L2-normalised rows, the same answer as core.analysis.compare.nearest in a fraction of its time at 100,000 rows."""
    import faiss

    reference = np.ascontiguousarray(reference, dtype=np.float32)
    index = faiss.IndexFlatIP(reference.shape[1])
    index.add(reference)
    k = min(k, len(reference))
    sims, idx = [], []
    for start in range(0, len(query), block):
        s, i = index.search(np.ascontiguousarray(query[start : start + block], dtype=np.float32), k)
        sims.append(s)
        idx.append(i)
    if not sims:
        return np.zeros((0, k), np.int64), np.zeros((0, k))
    return np.concatenate(idx), np.concatenate(sims).astype(np.float64)


# -- 3. PRDC and "never drawn", exact or on a stated sample ----------------------------------------------------------
def sample_rows(n: int, limit: int = EXACT_LIMIT, seed: int = SAMPLE_SEED) -> np.ndarray:
    """All row indices when n <= limit, else `limit` of them drawn without replacement (seeded, sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _sample_note(n_used: int, n_all: int, what: str) -> str:
    return "" if n_used == n_all else (f"on a random sample of {n_used:,} of the {n_all:,} {what} (seed "
                                       f"{SAMPLE_SEED}); the interval is the sample's")


def prdc_estimates(natural: np.ndarray, synthetic: np.ndarray, k: int = 5,
                   limit: int = EXACT_LIMIT) -> list[Estimate]:
    """Precision, recall, density and coverage (Naeem et al. 2020; core.analysis.compare.prdc) with intervals: exact
    when both sets have at most `limit` rows, else each larger set sampled to `limit` rows, as each note says.
    Precision and density are per synthetic image, recall and coverage per natural photo: their n differ."""
    from core.analysis.compare import _as64, _blocks, _sq_distances, _sq_norms, knn_radii

    ni, si = sample_rows(len(natural), limit), sample_rows(len(synthetic), limit)
    real, fake = _as64(natural[ni]), _as64(synthetic[si])
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    fake_in = np.zeros(len(fake), bool)
    fake_count = np.zeros(len(fake))
    recalled = np.zeros(len(real), bool)
    covered = np.zeros(len(real), bool)
    for rows in _blocks(len(real), len(fake)):
        dist = np.sqrt(_sq_distances(real[rows], fake, real_sq[rows], fake_sq))
        inside = dist < real_radii[rows, None]
        fake_in |= inside.any(axis=0)
        fake_count += inside.sum(axis=0)
        recalled[rows] = (dist < fake_radii[None, :]).any(axis=1)
        covered[rows] = dist.min(axis=1) < real_radii[rows]
    syn_note = _sample_note(len(si), len(synthetic), "synthetic images")
    nat_note = _sample_note(len(ni), len(natural), "natural photos")
    both = "; ".join(filter(None, [syn_note, nat_note]))
    return [proportion_estimate("precision", fake_in, both),
            proportion_estimate("recall", recalled, both),
            mean_estimate("density", fake_count / k, both, bounds=(0.0, np.inf)),
            proportion_estimate("coverage", covered, both)]


@dataclass(frozen=True)
class NeverDrawn:
    """Natural photos with no synthetic image inside their k-NN ball (PRDC's coverage, per photo)."""

    photos: np.ndarray  # indices into the natural set, furthest from any synthetic image (relative to radius) first
    share: Estimate  # the share of natural photos never drawn, with its n
    nearest_synthetic: np.ndarray  # per natural photo: the index (into the full synthetic set) of its nearest image


def never_drawn(natural: np.ndarray, synthetic: np.ndarray, k: int = 5) -> NeverDrawn:
    """Every natural photo against every synthetic image (exact, faiss; no sample: the synthetic set may be large,
    the natural radii come from the natural set alone)."""
    from core.analysis.compare import knn_radii

    radii = knn_radii(natural, k)
    idx, sims = nearest_neighbours(natural, synthetic, k=1)
    dist = np.sqrt(np.clip(2.0 - 2.0 * sims[:, 0], 0.0, None))  # unit vectors: |a - b|^2 = 2 - 2 cos
    ratio = np.where(radii > 0, dist / np.where(radii > 0, radii, 1.0), np.inf)
    uncovered = dist >= radii
    order = np.argsort(-ratio, kind="stable")
    share = proportion_estimate("never drawn", uncovered,
                                f"natural photos with no synthetic image among the {len(synthetic):,} inside their "
                                f"{k}-NN ball")
    return NeverDrawn(order[uncovered[order]], share, idx[:, 0])


def dataset_diversity(dataset, clip_key: str, prompt: str | None = None, groups: int = SCALE_GROUPS,
                      rows: int = 8192) -> list[Estimate]:
    """The diversity statistics of a whole dataset (core.pipeline.dataset.Dataset), or of one prompt's images, streamed
    from its embedding column in batches of `rows`: every image counted, n stated, memory bounded by d x d."""
    matrix, index = dataset.embedding_index(clip_key, None if prompt is None else
                                            dataset.shas[dataset.prompts == prompt])
    batches = (matrix[index[start : start + rows]] for start in range(0, len(index), rows))
    return streamed_diversity_statistics(batches, len(index), groups, dtype=np.float32)
