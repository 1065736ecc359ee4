"""Diversity statistics of a set of L2-normalised embeddings, with bootstrap intervals, and 2-D projections.

Definitions (see shared NOTES, section 8):
- mean pairwise cosine similarity: the mean of cos(x_i, x_j) over i != j.
- Vendi score (Friedman & Dieng 2023): exp of the Shannon entropy of the eigenvalues of K/n, K_ij = cos(x_i, x_j).
  For unit vectors K = X X^T, whose non-zero eigenvalues equal those of X^T X (d x d): cost linear in n.
- effective rank (Roy & Vetterli 2007): exp of the entropy of the normalised singular values of the centred X.
- variance explained by the first k principal components of the centred X.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    return np.clip(x @ x.T, -1.0, 1.0)


def mean_pairwise_cosine(x: np.ndarray) -> float:
    """Mean off-diagonal cosine, as (|sum x|^2 - sum |x|^2) / (n(n-1)): O(n d), no n x n matrix."""
    n = len(x)
    if n < 2:
        return float("nan")
    x = x.astype(np.float64)
    s = x.sum(axis=0)
    return float((s @ s - np.einsum("ij,ij->", x, x)) / (n * (n - 1)))


def _entropy_exp(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def vendi_score(x: np.ndarray) -> float:
    """exp(H(eig(K/n))) with K the cosine-similarity matrix, through the d x d (or n x n, whichever is smaller)
    Gram matrix. Matches the `vendi-score` package's score_K on K = X X^T."""
    n, d = x.shape
    if n == 0:
        return float("nan")
    x = x.astype(np.float64)
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
    if len(x) < 2:
        return np.array([])
    var = centred_singular_values(x) ** 2
    return var / var.sum() if var.sum() > 0 else var


def effective_rank(x: np.ndarray) -> float:
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

    def format(self, digits: int = 2) -> str:
        if not np.isfinite(self.value):
            return f"n/a ({self.note})" if self.note else "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):  # e.g. too few items to resample
            return f"{self.value:.{digits}f} (no interval{': ' + self.note if self.note else ''})"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_interval(
    x: np.ndarray, statistic: Callable[[np.ndarray], float], resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED, level: float = 0.95,
) -> tuple[float, float, float]:
    """(estimate, low, high): the normal bootstrap interval, estimate +- z * SD of the statistic over resamples.

    Why not percentile: resampling with replacement repeats items, and repeated items look like zero-diversity
    pairs, so every diversity statistic is biased on resamples (orthonormal sets keep only ~63% distinct items).
    The percentile interval would then often exclude the estimate itself. The resamples' spread is still a sound
    estimate of the standard error, so the interval is centred on the estimate.
    """
    from statistics import NormalDist

    value = float(statistic(x))
    n = len(x)
    if n < 2 or not np.isfinite(value):
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(x[rng.integers(0, n, n)]) for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    z = NormalDist().inv_cdf(0.5 + level / 2)
    sd = float(draws.std(ddof=1)) if len(draws) > 1 else 0.0
    return value, value - z * sd, value + z * sd


# Each statistic: (name, function, what it means). Registry as data: the page and the export iterate over it.
STATISTICS: list[tuple[str, Callable[[np.ndarray], float], str]] = [
    ("mean pairwise cosine", mean_pairwise_cosine,
     "average CLIP similarity between two images of the set; higher = more alike"),
    ("Vendi score", vendi_score,
     "effective number of distinct images (1 = all the same, n = all orthogonal); higher = more diverse"),
    ("effective rank", effective_rank,
     "effective number of directions the set spreads along; higher = more diverse"),
    ("variance in first 2 PCs", variance_explained,
     "share of the set's variance the 2-D PCA map shows; higher = the set varies along fewer directions"),
]


# Statistics that describe how the set varies: undefined (not 0, not 1) when every image is the same.
NEEDS_VARIANCE = {"effective rank", "variance in first 2 PCs"}


def check_embeddings(x: np.ndarray) -> None:
    """Statistics need finite, unit-length rows: say which rows are not, instead of returning NaN or garbage."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"Embeddings must be a 2-D array (n images x d dimensions), got shape {x.shape}.")
    norms = np.linalg.norm(x, axis=1) if len(x) else np.zeros(0)
    bad = ~np.isfinite(norms) | (np.abs(norms - 1) > 1e-3)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{len(rows)} of {len(x)} embeddings are not finite unit vectors (rows {rows[:10].tolist()}"
                         f"{'...' if len(rows) > 10 else ''}): NaN, zero or unnormalised. Re-embed these images "
                         f"(a broken CLIP checkpoint or a blank image can cause this).")


def diversity_statistics(x: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> list[Estimate]:
    """Each STATISTICS entry with its bootstrap interval. Degenerate sets get NaN with a note saying why:
    fewer than 2 images (nothing to compare), or all images identical (no variance to describe)."""
    check_embeddings(x)
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
            value, low, high = bootstrap_interval(x, fn, resamples)
            out.append(Estimate(name, value, low, high, n))
    return out


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
