"""How far apart are two sets of embeddings? Fréchet distance, CMMD, precision/recall/density/coverage, nearest
neighbours. Reference definitions: shared NOTES, section 8.

Memory: nothing here builds a full n x m distance matrix. Pairwise work runs over row blocks of at most
`BLOCK_ELEMENTS` distances (64 MB of float64), so 10,000 x 10,000 images need ~64 MB, not 800 MB.

- Fréchet distance (FD): |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), sample covariances (ddof=1) as in
  pytorch-fid / clean-fid. Numerics: with A = centred X / sqrt(n1 - 1) and B likewise for Y (so S1 = A^T A,
  S2 = B^T B), the eigenvalues of S1 S2 are the squared singular values of A B^T, hence Tr((S1 S2)^(1/2)) is the
  nuclear norm of A B^T: an SVD of an n1 x n2 matrix, exact, never complex, no `sqrtm` of a singular matrix (CLIP
  sets of 100 images in 512 dimensions have rank-deficient covariances, where scipy's sqrtm returns imaginary
  round-off and pytorch-fid adds eps to the diagonal). When that SVD would cost more (both sets large next to the
  dimension), the same trace is taken in d x d: the sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)), eigenvalues
  clipped at 0. Both routes are exact and are checked against scipy.linalg.sqrtm in the tests.
- CMMD (Jayasumana et al. 2024, google-research cmmd/distance.py): squared MMD with a Gaussian RBF kernel,
  sigma = 10, the minimum-variance estimator (plain means over all pairs, diagonals included), times 1000. The
  diagonal (each image with itself, kernel 1) biases it upwards by 1000 * ((1 - mean k within X) / n_X +
  (1 - mean k within Y) / n_Y): on CLIP sets, 2.12 at n = 30 against 1.67 at large n; in tests/test_compare.py
  1.48 against 0.83 (unbiased: 0.85). `cmmd_unbiased` is the U-statistic (Gretton et al. 2012, Eq. 3: self-pairs
  left out), unbiased at every n and so sometimes negative; the pages show it beside the reference number.
- PRDC (Naeem et al. 2020, PyPI `prdc`): k-NN radii by Euclidean distance, k = 5, the distance to the k-th nearest
  *other* point (the package takes the (k+1)-th smallest distance, self included); strict '<' as the package.
  "real" = natural photos, "fake" = synthetic images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from core.analysis.stats import Estimate, clip_to_range

BLOCK_ELEMENTS = 8_000_000  # distances per block: 64 MB of float64
PRDC_K = 5
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
FD_MIN_IMAGES = 3  # per set: 2 images give a one-direction "covariance", an FD ruled by which two were drawn
DISTANCE_RESAMPLES = 100  # bootstrap resamples per distance (two-sample: both sets resampled)
DISTANCE_SEED = 0


def single_threaded_blas():
    """A context in which numpy's BLAS/LAPACK (and OpenMP) run on one thread. These analyses make many small
    SVDs, eigendecompositions and model fits: threads buy little there, and when the other cores are busy (2
    shared cores here) OpenBLAS's threads wait on each other. Measured on this machine under load: a 100 x 100 SVD
    0.5 ms on one thread vs 140 ms on two; the distance table of 10 classes x 100 images 12 s vs 62 s."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    return threadpool_limits(limits=1)


def single_threaded(fn):
    """Run `fn` inside single_threaded_blas(): for the entry points the pages call."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper


def _blocks(n_rows: int, n_cols: int, block_elements: int = BLOCK_ELEMENTS) -> Iterator[slice]:
    step = max(1, block_elements // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _sq_distances(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of a block of rows to all of `b`, clipped at 0 (round-off)."""
    d = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)


def _as64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"Embeddings must be a 2-D array (n images x d dimensions), got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("Some embeddings are NaN or infinite: re-embed those images.")
    return x


# -- Fréchet distance ------------------------------------------------------------------------------------------------

def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """FD between the Gaussians fitted to `x` and `y` (see the module docstring for the numerics). Needs at least
    FD_MIN_IMAGES rows per set; it is biased upwards at small n: compare sets at equal n."""
    x, y = _as64(x), _as64(y)
    n1, n2, d = len(x), len(y), x.shape[1]
    if min(n1, n2) < FD_MIN_IMAGES:
        raise ValueError(f"FD fits a mean and a covariance to each set and needs at least {FD_MIN_IMAGES} images in "
                         f"each (got {n1} and {n2}): with 2 the covariance has a single direction.")
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    a = (x - mu1) / np.sqrt(n1 - 1)
    b = (y - mu2) / np.sqrt(n2 - 1)
    # The cheaper exact route: an SVD of the n1 x n2 cross matrix, or eigendecompositions in d x d.
    if 4 * min(n1, n2) ** 2 * max(n1, n2) <= 2 * d * d * (n1 + n2) + 20 * d**3:
        cross_trace = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    else:
        s1, s2 = a.T @ a, b.T @ b
        w, v = np.linalg.eigh(s1)
        root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
        inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
        cross_trace = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.einsum("ij,ij->", a, a) + np.einsum("ij,ij->", b, b) - 2.0 * cross_trace)
    return max(value, 0.0)  # a distance: tiny negative round-off is 0


FD_INFINITY_FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
FD_INFINITY_REPEATS = 5


@dataclass(frozen=True)
class ExtrapolatedFD:
    """FD extrapolated to infinitely many images (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception
    Score and where to find them"): a model-based estimate, to be labelled as such, never the measured FD."""

    value: float  # the intercept: FD at 1/n -> 0
    slope: float  # FD added per unit of 1/f (f = the fraction of both sets used)
    points: list[tuple[int, int, float]]  # (synthetic images, natural images, mean FD over the random subsets)


def frechet_distance_infinity(x: np.ndarray, y: np.ndarray, fractions: tuple[float, ...] = FD_INFINITY_FRACTIONS,
                              repeats: int = FD_INFINITY_REPEATS, seed: int = DISTANCE_SEED) -> ExtrapolatedFD:
    """FD's bias shrinks like 1/n (Chong & Forsyth 2020, who fit FID_N against 1/N and read the intercept). Here
    both sets are subsampled to the same fraction f of their sizes (so the bias a/n1 + b/n2 scales as 1/f), the
    FD of `repeats` random subsets per fraction is fitted by least squares against 1/f, and the fit is read at
    1/f = 0. The linear model is asymptotic: with far fewer images than dimensions (CLIP's 512) treat the value
    as rough."""
    x, y = _as64(x), _as64(y)
    rng = np.random.default_rng(seed)
    points, inverse, fds = [], [], []
    for f in fractions:
        m1, m2 = int(round(f * len(x))), int(round(f * len(y)))
        if min(m1, m2) < FD_MIN_IMAGES:
            continue
        reps = 1 if (m1, m2) == (len(x), len(y)) else repeats
        values = [frechet_distance(x[rng.choice(len(x), m1, replace=False)], y[rng.choice(len(y), m2, replace=False)])
                  for _ in range(reps)]
        points.append((m1, m2, float(np.mean(values))))
        inverse += [1.0 / f] * reps
        fds += values
    if len(points) < 3:
        raise ValueError(f"FD extrapolation needs at least 3 subset sizes of >= {FD_MIN_IMAGES} images per set: "
                         f"{len(x)} and {len(y)} images are too few.")
    slope, intercept = np.polyfit(np.asarray(inverse), np.asarray(fds), 1)
    return ExtrapolatedFD(float(intercept), float(slope), points)


# -- CMMD --------------------------------------------------------------------------------------------------------------

def _mean_rbf(a: np.ndarray, b: np.ndarray, gamma: float, block_elements: int) -> float:
    a_sq, b_sq = _sq_norms(a), _sq_norms(b)
    total = 0.0
    for rows in _blocks(len(a), len(b), block_elements):
        total += float(np.exp(-gamma * _sq_distances(a[rows], b, a_sq[rows], b_sq)).sum())
    return total / (len(a) * len(b))


def _two_each(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"{what} needs at least 2 images in each set (got {len(x)} and {len(y)}): with one image the "
                         f"within-set term is only the image compared with itself.")


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE,
         block_elements: int = BLOCK_ELEMENTS) -> float:
    """scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)), k = exp(-|a - b|^2 / (2 sigma^2)), all pairs
    including each image with itself, as the reference code: biased upwards at small n (module docstring).
    Embeddings are used as given: CMMD's definition asks for L2-normalised CLIP embeddings (the lab's are)."""
    x, y = _as64(x), _as64(y)
    _two_each(x, y, "CMMD")
    gamma = 1.0 / (2.0 * sigma**2)
    return scale * (_mean_rbf(x, x, gamma, block_elements) + _mean_rbf(y, y, gamma, block_elements)
                    - 2.0 * _mean_rbf(x, y, gamma, block_elements))


def _without_self_pairs(mean_all: float, n: int) -> float:
    """Mean kernel over pairs i != j from the mean over all n^2 pairs: the diagonal holds k(x, x) = 1."""
    return (mean_all * n * n - n) / (n * (n - 1))


def cmmd_unbiased(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE,
                  block_elements: int = BLOCK_ELEMENTS) -> float:
    """The unbiased (U-statistic) squared MMD with CMMD's kernel and scale (Gretton et al. 2012, Eq. 3): the
    within-set means leave out each image paired with itself. Its expectation is the population MMD^2 at every n,
    so it can be negative when the sets are alike."""
    x, y = _as64(x), _as64(y)
    _two_each(x, y, "The unbiased CMMD")
    gamma = 1.0 / (2.0 * sigma**2)
    return scale * (_without_self_pairs(_mean_rbf(x, x, gamma, block_elements), len(x))
                    + _without_self_pairs(_mean_rbf(y, y, gamma, block_elements), len(y))
                    - 2.0 * _mean_rbf(x, y, gamma, block_elements))


# -- k-NN radii and PRDC -----------------------------------------------------------------------------------------

def knn_radii(x: np.ndarray, k: int = PRDC_K, block_elements: int = BLOCK_ELEMENTS) -> np.ndarray:
    """Distance from each point to its k-th nearest other point (the prdc package's radii), blockwise."""
    x = _as64(x)
    n = len(x)
    if n <= k:
        raise ValueError(f"k-NN radii with k = {k} need at least {k + 1} points (got {n}).")
    sq = _sq_norms(x)
    radii = np.empty(n)
    for rows in _blocks(n, n, block_elements):
        d2 = _sq_distances(x[rows], x, sq[rows], sq)
        radii[rows] = np.sqrt(np.partition(d2, k, axis=1)[:, k])  # index k: self (0) is index 0
    return radii


@dataclass(frozen=True)
class PRDC:
    precision: float  # share of synthetic images inside some natural photo's k-NN ball (fidelity)
    recall: float  # share of natural photos inside some synthetic image's k-NN ball (diversity)
    density: float  # mean number of natural balls a synthetic image falls in, divided by k
    coverage: float  # share of natural photos whose own ball holds at least one synthetic image
    k: int


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K, block_elements: int = BLOCK_ELEMENTS) -> PRDC:
    """Precision, recall, density and coverage of `fake` (synthetic) against `real` (natural), exactly as the
    `prdc` package computes them, in one blockwise pass over the real x fake distances."""
    real, fake = _as64(real), _as64(fake)
    real_radii = knn_radii(real, k, block_elements)
    fake_radii = knn_radii(fake, k, block_elements)
    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    fake_in_some_ball = np.zeros(len(fake), bool)
    fake_ball_count = np.zeros(len(fake))
    real_recalled = np.zeros(len(real), bool)
    real_covered = np.zeros(len(real), bool)
    for rows in _blocks(len(real), len(fake), block_elements):
        dist = np.sqrt(_sq_distances(real[rows], fake, real_sq[rows], fake_sq))  # (block of real) x fake
        inside_real_ball = dist < real_radii[rows, None]
        fake_in_some_ball |= inside_real_ball.any(axis=0)
        fake_ball_count += inside_real_ball.sum(axis=0)
        real_recalled[rows] = (dist < fake_radii[None, :]).any(axis=1)
        real_covered[rows] = dist.min(axis=1) < real_radii[rows]
    return PRDC(float(fake_in_some_ball.mean()), float(real_recalled.mean()), float(fake_ball_count.mean() / k),
                float(real_covered.mean()), k)


# -- nearest neighbours ------------------------------------------------------------------------------------------

@single_threaded
def nearest(query: np.ndarray, reference: np.ndarray, k: int = 5,
            block_elements: int = BLOCK_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine similarities), each (n_query, k), most similar first: the k reference rows nearest each
    query row. Rows must be L2-normalised (cosine = dot product); blockwise over query rows."""
    query, reference = _as64(query), _as64(reference)
    k = min(k, len(reference))
    idx = np.empty((len(query), k), int)
    sims = np.empty((len(query), k))
    for rows in _blocks(len(query), len(reference), block_elements):
        s = query[rows] @ reference.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(k), (len(s), 1))
        top_s = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        idx[rows] = np.take_along_axis(top, order, axis=1)
        sims[rows] = np.take_along_axis(top_s, order, axis=1)
    return idx, sims


@dataclass(frozen=True)
class Coverage:
    """Per natural photo: the distance to its nearest synthetic image over its own k-NN radius among the natural
    photos. Below 1: some synthetic image falls in its ball (covered, as in PRDC's coverage)."""

    nearest_synthetic: np.ndarray  # index of the nearest synthetic image
    distance: np.ndarray  # Euclidean distance to it
    radius: np.ndarray  # the photo's k-NN radius among the natural photos
    ratio: np.ndarray  # distance / radius; >= 1: uncovered
    k: int

    @property
    def covered(self) -> np.ndarray:
        return self.distance < self.radius

    def most_uncovered(self, top: int | None = None) -> np.ndarray:
        """Indices of natural photos, furthest from any synthetic image (relative to their radius) first."""
        order = np.argsort(-self.ratio, kind="stable")
        return order[:top] if top is not None else order


@single_threaded
def natural_coverage(natural: np.ndarray, synthetic: np.ndarray, k: int = PRDC_K,
                     block_elements: int = BLOCK_ELEMENTS) -> Coverage:
    natural, synthetic = _as64(natural), _as64(synthetic)
    radii = knn_radii(natural, k, block_elements)
    nat_sq, syn_sq = _sq_norms(natural), _sq_norms(synthetic)
    best = np.empty(len(natural), int)
    dist = np.empty(len(natural))
    for rows in _blocks(len(natural), len(synthetic), block_elements):
        d2 = _sq_distances(natural[rows], synthetic, nat_sq[rows], syn_sq)
        best[rows] = d2.argmin(axis=1)
        dist[rows] = np.sqrt(d2.min(axis=1))
    with np.errstate(divide="ignore"):
        ratio = np.where(radii > 0, dist / np.where(radii > 0, radii, 1.0), np.inf)
    return Coverage(best, dist, radii, ratio, k)


# -- with intervals ------------------------------------------------------------------------------------------------

# name -> what it means (the page prints it beside the number). Registry as data.
DISTANCES: dict[str, str] = {
    "FD (CLIP)": "Fréchet distance between Gaussians fitted to the two sets; 0 = same mean and covariance. "
                 "Biased upwards at small n.",
    "CMMD": "squared MMD, RBF kernel (sigma 10), x1000, as published (Jayasumana et al.); 0 = same distribution. "
            "Biased upwards at small n: it pairs each image with itself, adding about 1000 x (1 - mean kernel) / n "
            "per set (~0.2 per set at n = 30 on CLIP features). Compare at equal n, or read the unbiased value.",
    "precision": "share of synthetic images that fall inside the natural photos' manifold (fidelity); 1 = all",
    "recall": "share of natural photos that fall inside the synthetic images' manifold (diversity); 1 = all",
    "density": "how many natural neighbourhoods a synthetic image falls in, over k; ~1 for matching sets",
    "coverage": "share of natural photos with a synthetic image in their neighbourhood; 1 = fully covered",
    "CMMD (unbiased)": "the same squared MMD without the self-pairs (U-statistic, Gretton et al. 2012): no "
                       "sample-size bias, so it can be slightly negative when the two sets are alike; 0 = same "
                       "distribution.",
}


def two_sample_interval(x: np.ndarray, y: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], object],
                        resamples: int = DISTANCE_RESAMPLES, seed: int = DISTANCE_SEED,
                        level: float = 0.95) -> list[tuple[float, float, float]]:
    """[(estimate, low, high)] for each value `statistic` returns (a float or a vector of floats).

    Both sets are resampled with replacement, independently; the interval is the normal bootstrap one
    (estimate +- z SD), centred on the estimate as core.analysis.stats.bootstrap_interval does and for the same reason:
    repeated items bias distance statistics on resamples (k-NN radii shrink), while the spread of the resampled
    values is still a fair standard error."""
    from statistics import NormalDist

    value = np.atleast_1d(np.asarray(statistic(x, y), dtype=float))
    nan = [(float(v), float("nan"), float("nan")) for v in value]
    if len(x) < 2 or len(y) < 2 or resamples < 2:
        return nan
    rng = np.random.default_rng(seed)
    draws = []
    with single_threaded_blas():
        for _ in range(resamples):
            xs, ys = x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))]
            draws.append(np.atleast_1d(np.asarray(statistic(xs, ys), dtype=float)))
    draws = np.asarray(draws)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    out = []
    for j, v in enumerate(value):
        column = draws[:, j][np.isfinite(draws[:, j])]
        if not np.isfinite(v) or len(column) < 2:
            out.append((float(v), float("nan"), float("nan")))
            continue
        sd = float(column.std(ddof=1))
        out.append((float(v), float(v) - z * sd, float(v) + z * sd))
    return out


PRDC_NAMES = ("precision", "recall", "density", "coverage")


# Bootstrap of sets up to this many pairwise distances (all three blocks together) runs on precomputed matrices:
# each resample then indexes them instead of recomputing distances (~50x faster for 1,000 images). Larger sets
# use the blockwise functions per resample, with fewer resamples, so memory stays bounded.
MATRIX_ELEMENTS = 4_000_000
LARGE_SET_RESAMPLES = 20
FD_PAIRS_LIMIT = 200_000  # n_synthetic x n_natural above which FD's interval uses LARGE_SET_RESAMPLES


class _Pairwise:
    """Squared distances and RBF kernels within and between two sets, for index-based resampling."""

    def __init__(self, synthetic: np.ndarray, natural: np.ndarray, sigma: float = CMMD_SIGMA):
        syn, nat = _as64(synthetic), _as64(natural)
        s_sq, n_sq = _sq_norms(syn), _sq_norms(nat)
        self.d_ss = np.sqrt(_sq_distances(syn, syn, s_sq, s_sq))
        self.d_nn = np.sqrt(_sq_distances(nat, nat, n_sq, n_sq))
        self.d_sn = np.sqrt(_sq_distances(syn, nat, s_sq, n_sq))
        gamma = 1.0 / (2.0 * sigma**2)
        self.k_ss, self.k_nn, self.k_sn = (np.exp(-gamma * d**2) for d in (self.d_ss, self.d_nn, self.d_sn))

    def cmmd(self, i: np.ndarray, j: np.ndarray) -> list[float]:
        """[CMMD, unbiased CMMD] of synthetic[i] against natural[j]."""
        ss, nn, sn = self.k_ss[np.ix_(i, i)].mean(), self.k_nn[np.ix_(j, j)].mean(), self.k_sn[np.ix_(i, j)].mean()
        unbiased = _without_self_pairs(ss, len(i)) + _without_self_pairs(nn, len(j)) - 2.0 * sn
        return [CMMD_SCALE * (ss + nn - 2.0 * sn), CMMD_SCALE * unbiased]

    def prdc(self, i: np.ndarray, j: np.ndarray, k: int) -> list[float]:
        """prdc(natural[j], synthetic[i], k), the same formulas as `prdc`, on the stored distances."""
        real_radii = np.partition(self.d_nn[np.ix_(j, j)], k, axis=1)[:, k]
        fake_radii = np.partition(self.d_ss[np.ix_(i, i)], k, axis=1)[:, k]
        dist = self.d_sn[np.ix_(i, j)].T  # real x fake
        inside = dist < real_radii[:, None]
        return [float(inside.any(axis=0).mean()), float((dist < fake_radii[None, :]).any(axis=1).mean()),
                float(inside.sum(axis=0).mean() / k), float((dist.min(axis=1) < real_radii).mean())]


@single_threaded
def distance_estimates(natural: np.ndarray, synthetic: np.ndarray, k: int = PRDC_K,
                       resamples: int = DISTANCE_RESAMPLES) -> list[Estimate]:
    """Every DISTANCES entry for one pair of sets, with its bootstrap interval; n = synthetic + natural images
    (the note splits it). Point estimates come from the blockwise functions above (checked against the reference
    implementations); intervals from `two_sample_interval`, clipped to each statistic's range (RANGES; the
    Estimate says when). Too few images for a statistic (PRDC: more than k per set; FD: FD_MIN_IMAGES; CMMD: 2):
    n/a, saying why."""
    n_syn, n_nat = len(synthetic), len(natural)
    n = n_syn + n_nat
    note = f"{n_syn} synthetic + {n_nat} natural"
    has_prdc = min(n_syn, n_nat) > k
    small = n_syn**2 + n_nat**2 + n_syn * n_nat <= MATRIX_ELEMENTS
    if not small:
        resamples = min(resamples, LARGE_SET_RESAMPLES)
        note += f"; interval from {resamples} resamples"
    # FD costs an SVD or two d x d eigendecompositions per resample: large pairs of sets get fewer resamples.
    fd_resamples = resamples if n_syn * n_nat <= FD_PAIRS_LIMIT else min(resamples, LARGE_SET_RESAMPLES)
    fd_note = note + (f"; interval from {fd_resamples} resamples" if fd_resamples < resamples else "")
    values = {}
    missing = {}  # name -> why it is n/a
    if min(n_syn, n_nat) >= FD_MIN_IMAGES:
        (values["FD (CLIP)"],) = two_sample_interval(synthetic, natural, frechet_distance, fd_resamples)
    else:
        missing["FD (CLIP)"] = f"FD needs at least {FD_MIN_IMAGES} images in each set"
    if not has_prdc:
        missing.update({name: f"needs more than k = {k} images in each set" for name in PRDC_NAMES})
    if min(n_syn, n_nat) < 2:  # PRDC needs more than k >= 1 images: it is n/a already
        missing["CMMD"] = missing["CMMD (unbiased)"] = "CMMD needs at least 2 images in each set"
    elif small:
        pair = _Pairwise(synthetic, natural)
        rows_syn, rows_nat = np.arange(n_syn), np.arange(n_nat)
        values["CMMD"], values["CMMD (unbiased)"] = two_sample_interval(rows_syn, rows_nat, pair.cmmd, resamples)
        if has_prdc:
            four = two_sample_interval(rows_syn, rows_nat, lambda i, j: pair.prdc(i, j, k), resamples)
            values.update(zip(PRDC_NAMES, four))
    else:
        values["CMMD"], values["CMMD (unbiased)"] = two_sample_interval(
            synthetic, natural, lambda s, r: [cmmd(s, r), cmmd_unbiased(s, r)], resamples)
        if has_prdc:
            def all_four(s: np.ndarray, r: np.ndarray) -> list[float]:
                result = prdc(r, s, k)
                return [getattr(result, name) for name in PRDC_NAMES]

            values.update(zip(PRDC_NAMES, two_sample_interval(synthetic, natural, all_four, resamples)))
    # The exact point estimates of the blockwise functions, with the bootstrap's half-width around them.
    exact = {}
    if min(n_syn, n_nat) >= 2:
        exact.update({"CMMD": cmmd(synthetic, natural), "CMMD (unbiased)": cmmd_unbiased(synthetic, natural)})
    if has_prdc:
        result = prdc(natural, synthetic, k)
        exact.update({name: getattr(result, name) for name in PRDC_NAMES})
    out = []
    for name in DISTANCES:
        if name not in values:
            out.append(Estimate(name, float("nan"), float("nan"), float("nan"), n, missing.get(name, "")))
            continue
        value, low, high = values[name]
        if name in exact:
            half = (high - low) / 2
            value = exact[name]
            low, high = value - half, value + half
        out.append(_clipped(name, (value, low, high), n, fd_note if name == "FD (CLIP)" else note))
    return out


# The range each statistic can take: a normal interval near a bound (precision 1.0 of 6 images) would otherwise
# reach impossible values. FD and CMMD (a V-statistic, a squared RKHS norm) are never negative; the unbiased CMMD
# can be. Density is at most n_natural / k (every synthetic image inside every ball), left open here.
RANGES = {"FD (CLIP)": (0.0, np.inf), "CMMD": (0.0, np.inf), "precision": (0.0, 1.0), "recall": (0.0, 1.0),
          "density": (0.0, np.inf), "coverage": (0.0, 1.0), "CMMD (unbiased)": (-np.inf, np.inf)}
# The statistics whose whole range a chart can show (the shares: precision, recall, coverage): their axes span it.
BOUNDED_RANGES = {name: r for name, r in RANGES.items() if np.isfinite(r).all()}


def _clipped(name: str, values: tuple[float, float, float], n: int, note: str) -> Estimate:
    value, low, high = values
    return clip_to_range(Estimate(name, value, low, high, n, note), *RANGES[name])
