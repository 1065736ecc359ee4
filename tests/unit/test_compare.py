"""Distances between sets: checked against the reference implementations on the same inputs."""

import contextlib
import io
import tracemalloc

import numpy as np
import pytest
import scipy.linalg

from core.analysis.compare import (
    DISTANCES,
    cmmd,
    distance_estimates,
    frechet_distance,
    knn_radii,
    natural_coverage,
    nearest,
    prdc,
    two_sample_interval,
)
from core.pipeline.embed import l2_normalise


def gaussian(n, d, seed, shift=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + shift


def unit_rows(n, d, seed=0, shift=0.0):
    return l2_normalise(gaussian(n, d, seed, shift)).astype(np.float64)


# -- Fréchet distance ----------------------------------------------------------------------------------------------

def scipy_frechet(x, y):
    """The pytorch-fid / clean-fid computation: scipy's sqrtm of S1 S2, real part of the trace."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n1,n2,d", [(300, 200, 16), (40, 60, 8), (30, 25, 48), (500, 400, 64)])
def test_frechet_matches_scipy_sqrtm(n1, n2, d):
    x, y = gaussian(n1, d, 1), gaussian(n2, d, 2, shift=0.3, scale=1.5)
    assert frechet_distance(x, y) == pytest.approx(scipy_frechet(x, y), rel=1e-6, abs=1e-8)


def test_frechet_of_rank_deficient_clip_like_sets_matches_scipy():
    # n < d: the covariances are singular (CLIP sets of 100 images in 512 dimensions). sqrtm still agrees to a
    # looser tolerance; its imaginary round-off is what the nuclear-norm route avoids.
    x, y = unit_rows(40, 96, 3), unit_rows(50, 96, 4, shift=0.2)
    assert frechet_distance(x, y) == pytest.approx(scipy_frechet(x, y), rel=1e-5, abs=1e-7)


def test_frechet_golden_values():
    x = gaussian(200, 12, 5)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = np.arange(12) / 10.0
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)  # same covariance
    assert frechet_distance(x, 2 * x) == pytest.approx(float(np.trace(np.cov(x, rowvar=False))) + x.mean(0) @ x.mean(0),
                                                       rel=1e-9)  # Tr(S + 4S - 2*2S) = Tr(S), |mu|^2
    with pytest.raises(ValueError, match="at least 3 images"):
        frechet_distance(x[:1], x)


def test_frechet_both_routes_agree_when_n_exceeds_d():
    x, y = gaussian(80, 10, 6), gaussian(90, 10, 7, shift=0.5)
    # min(n) > d: the d x d route; the same sets through the n x n route (pad to d > n with zero columns).
    padded = frechet_distance(np.hstack([x, np.zeros((80, 100))]), np.hstack([y, np.zeros((90, 100))]))
    assert frechet_distance(x, y) == pytest.approx(padded, rel=1e-9)


# -- CMMD ----------------------------------------------------------------------------------------------------------

def reference_cmmd(x, y):
    """google-research cmmd/distance.py `mmd`, written out with numpy (the reference uses jax)."""
    sigma, scale = 10, 1000
    x_sqnorms = np.diag(x @ x.T)
    y_sqnorms = np.diag(y @ y.T)
    gamma = 1 / (2 * sigma**2)
    k_xx = np.mean(np.exp(-gamma * (-2 * (x @ x.T) + x_sqnorms[:, None] + x_sqnorms[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * (x @ y.T) + x_sqnorms[:, None] + y_sqnorms[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * (y @ y.T) + y_sqnorms[:, None] + y_sqnorms[None, :])))
    return scale * (k_xx + k_yy - 2 * k_xy)


@pytest.mark.parametrize("n1,n2,d", [(50, 70, 32), (8, 100, 512), (200, 150, 64)])
def test_cmmd_matches_the_reference_definition(n1, n2, d):
    x, y = unit_rows(n1, d, 1), unit_rows(n2, d, 2, shift=0.1)
    assert cmmd(x, y) == pytest.approx(reference_cmmd(x, y), rel=1e-9, abs=1e-12)
    # float32 input (as the cache stores embeddings) and tiny blocks give the same answer
    assert cmmd(x.astype(np.float32), y.astype(np.float32), block_elements=97) == pytest.approx(
        reference_cmmd(x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)), rel=1e-9)


def test_cmmd_of_a_set_with_itself_is_zero_and_grows_with_shift():
    x = unit_rows(60, 16, 3)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-10)
    assert cmmd(x, unit_rows(60, 16, 4, shift=0.5)) < cmmd(x, unit_rows(60, 16, 4, shift=2.0))


# -- PRDC ----------------------------------------------------------------------------------------------------------

def reference_prdc(real, fake, k):
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints the set sizes
        return compute_prdc(real_features=real, fake_features=fake, nearest_k=k)


@pytest.mark.parametrize("n_real,n_fake,d,k,shift", [(100, 80, 16, 5, 0.3), (60, 60, 8, 3, 0.0),
                                                     (200, 30, 32, 5, 1.0), (50, 120, 512, 5, 0.05)])
def test_prdc_matches_the_prdc_package(n_real, n_fake, d, k, shift):
    real, fake = gaussian(n_real, d, 10), gaussian(n_fake, d, 11, shift=shift, scale=0.8)
    ours = prdc(real, fake, k)
    ref = reference_prdc(real, fake, k)
    for name in ("precision", "recall", "density", "coverage"):
        assert getattr(ours, name) == pytest.approx(float(ref[name]), abs=1e-12), name
    # Blocks of a few rows give exactly the same answer (the blockwise code paths, not the single block).
    small = prdc(real, fake, k, block_elements=3 * max(n_real, n_fake))
    assert small == ours


def test_knn_radii_match_the_package_and_refuse_too_few_points():
    from prdc.prdc import compute_nearest_neighbour_distances

    x = gaussian(70, 6, 12)
    assert np.allclose(knn_radii(x, 5), compute_nearest_neighbour_distances(x, 5), atol=1e-12)
    with pytest.raises(ValueError, match="at least 6 points"):
        knn_radii(x[:5], 5)


def test_prdc_golden_values():
    real = gaussian(200, 4, 13)
    same = prdc(real, real.copy(), 5)
    assert same.precision == 1.0 and same.recall == 1.0 and same.coverage == 1.0
    far = prdc(real, gaussian(100, 4, 14, shift=50.0), 5)
    assert far.precision == 0.0 and far.recall == 0.0 and far.density == 0.0 and far.coverage == 0.0


def test_prdc_memory_stays_bounded_at_ten_thousand_images():
    # A full 10,000 x 10,000 float64 distance matrix is 800 MB; the blockwise pass must stay far below it.
    real = gaussian(10_000, 8, 15).astype(np.float32)
    fake = gaussian(10_000, 8, 16, shift=0.1).astype(np.float32)
    tracemalloc.start()
    try:
        result = prdc(real, fake, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300e6, f"peak {peak / 1e6:.0f} MB"
    assert 0.5 < result.precision <= 1.0 and 0.5 < result.coverage <= 1.0


# -- nearest neighbours and coverage -------------------------------------------------------------------------------

def test_nearest_equals_a_full_sort():
    q, r = unit_rows(37, 16, 20), unit_rows(53, 16, 21)
    idx, sims = nearest(q, r, 5, block_elements=50)
    full = q @ r.T
    expected = np.argsort(-full, axis=1)[:, :5]
    assert np.array_equal(idx, expected)
    assert np.allclose(sims, np.take_along_axis(full, expected, axis=1))
    idx_all, _ = nearest(q, r[:3], 5)  # fewer references than k: all of them, ordered
    assert idx_all.shape == (37, 3)


def test_coverage_ranks_the_photo_no_synthetic_image_is_near():
    # Six photos of a kind the generator never draws: a tight cluster far away (their k-NN radii are small).
    natural = np.vstack([gaussian(30, 4, 22), gaussian(6, 4, 24, shift=10.0, scale=0.1)])
    synthetic = gaussian(30, 4, 23)
    cov = natural_coverage(natural, synthetic, 5)
    assert set(cov.most_uncovered(6)) == set(range(30, 36))
    assert not cov.covered[30:].any() and cov.covered[:30].mean() > 0.8
    # Its mean equals PRDC's coverage.
    assert cov.covered.mean() == pytest.approx(prdc(natural, synthetic, 5).coverage)


# -- intervals -----------------------------------------------------------------------------------------------------

def test_distance_estimates_have_intervals_n_and_notes():
    natural, synthetic = unit_rows(40, 16, 30), unit_rows(12, 16, 31, shift=0.3)
    ests = distance_estimates(natural, synthetic, resamples=30)
    assert [e.name for e in ests] == list(DISTANCES)
    for e in ests:
        assert e.n == 52 and "12 synthetic + 40 natural" in e.note
        assert e.low <= e.value <= e.high
    few = distance_estimates(natural, synthetic[:5], resamples=10)
    assert np.isnan(few[2].value) and "k = 5" in few[2].note
    assert np.isfinite(few[0].value)


def test_two_sample_interval_is_centred_on_the_estimate():
    x, y = gaussian(30, 3, 40), gaussian(30, 3, 41, shift=1.0)
    ((value, low, high),) = two_sample_interval(x, y, frechet_distance, 50)
    assert value == pytest.approx(frechet_distance(x, y))
    assert low < value < high and (value - low) == pytest.approx(high - value)


def test_intervals_stay_inside_each_statistics_range():
    # Six synthetic images, all inside the natural manifold: precision 1 with a wide normal interval, clipped.
    natural = unit_rows(30, 8, 50)
    synthetic = natural[:6] + 1e-4
    estimates = {e.name: e for e in distance_estimates(natural, synthetic, resamples=50)}
    assert all(np.isfinite(e.low) and np.isfinite(e.high) for e in estimates.values()), estimates  # none skipped
    for name, e in estimates.items():
        if name != "CMMD (unbiased)":  # the U-statistic can be negative
            assert e.low >= 0.0, e
            if name in ("precision", "recall", "coverage"):
                assert e.high <= 1.0, e
    # The clipping these bounds rely on happened, and says so.
    assert estimates["precision"].value == 1.0 and estimates["precision"].clipped == "[0, 1]"
    assert estimates["FD (CLIP)"].low == 0.0 and estimates["FD (CLIP)"].clipped == "[0, inf]"


def test_the_fast_bootstrap_on_stored_distances_equals_recomputing_each_resample(monkeypatch):
    import core.analysis.compare as compare

    natural, synthetic = unit_rows(40, 16, 60), unit_rows(15, 16, 61, shift=0.2)
    fast = distance_estimates(natural, synthetic, resamples=40)
    monkeypatch.setattr(compare, "MATRIX_ELEMENTS", 0)  # force the blockwise path
    monkeypatch.setattr(compare, "LARGE_SET_RESAMPLES", 40)
    slow = distance_estimates(natural, synthetic, resamples=40)
    for a, b in zip(fast, slow):
        assert a.name == b.name
        assert a.value == pytest.approx(b.value, rel=1e-12)
        assert a.low == pytest.approx(b.low, rel=1e-6, abs=1e-9) and a.high == pytest.approx(b.high, rel=1e-6,
                                                                                              abs=1e-9), a.name
    assert "interval from 40 resamples" in slow[0].note and "resamples" not in fast[0].note


# -- sample-size bias and guards (issue #15) ------------------------------------------------------------------------

def reference_unbiased_mmd(x, y, sigma=10, scale=1000):
    """Gretton et al. 2012, Eq. 3, written out: within-set means over i != j."""
    gamma = 1 / (2 * sigma**2)

    def k(a, b):
        return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    kxx, kyy = k(x, x), k(y, y)
    m, n = len(x), len(y)
    return scale * ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                    - 2 * k(x, y).mean())


def test_unbiased_cmmd_matches_the_u_statistic_definition():
    from core.analysis.compare import cmmd_unbiased

    x, y = unit_rows(30, 16, 1), unit_rows(45, 16, 2, shift=0.2)
    assert cmmd_unbiased(x, y) == pytest.approx(reference_unbiased_mmd(x, y), rel=1e-9)
    assert cmmd_unbiased(x, y, block_elements=53) == pytest.approx(reference_unbiased_mmd(x, y), rel=1e-9)


def test_cmmd_is_biased_upwards_at_small_n_and_the_u_statistic_is_not():
    from core.analysis.compare import cmmd_unbiased

    # Two fixed populations; the value at large n is known from all of them.
    syn_pop, nat_pop = unit_rows(3000, 16, 5, shift=0.3), unit_rows(3000, 16, 6)
    truth = cmmd_unbiased(syn_pop, nat_pop)
    rng = np.random.default_rng(7)
    v, u = [], []
    for _ in range(300):
        x, y = syn_pop[rng.choice(3000, 30, replace=False)], nat_pop[rng.choice(3000, 30, replace=False)]
        v.append(cmmd(x, y))
        u.append(cmmd_unbiased(x, y))
    se = np.std(u, ddof=1) / np.sqrt(len(u))
    assert abs(np.mean(u) - truth) < 3 * se  # unbiased
    assert np.mean(v) - truth > 10 * se and np.mean(v) > 1.1 * truth  # the reference estimator is not


def test_cmmd_needs_two_images_per_set_and_fd_needs_three():
    x, y = unit_rows(5, 8, 1), unit_rows(5, 8, 2)
    with pytest.raises(ValueError, match="at least 2 images in each set"):
        cmmd(x[:1], y)
    with pytest.raises(ValueError, match="at least 3 images in each"):
        frechet_distance(x[:2], y)
    ests = {e.name: e for e in distance_estimates(x, y[:2], resamples=10)}
    assert np.isnan(ests["FD (CLIP)"].value) and "at least 3" in ests["FD (CLIP)"].format()
    assert np.isfinite(ests["CMMD"].value) and np.isfinite(ests["CMMD (unbiased)"].value)
    one = {e.name: e for e in distance_estimates(x, y[:1], resamples=10)}
    assert all(np.isnan(e.value) and e.note for e in one.values())


def test_distance_intervals_say_when_they_were_clipped():
    natural = unit_rows(30, 8, 50)
    synthetic = natural[:6] + 1e-4
    clipped = [e for e in distance_estimates(natural, synthetic, resamples=50) if e.clipped]
    assert clipped and all("interval clipped to" in e.format() for e in clipped)


def test_fd_extrapolated_to_infinite_n_removes_most_of_the_small_n_bias():
    from core.analysis.compare import frechet_distance_infinity

    # Two Gaussians whose true FD is known: same covariance (identity), means 0.5 apart in each of 4 dimensions.
    d = 4
    truth = d * 0.5**2
    rng = np.random.default_rng(21)
    plain, extrapolated = [], []
    for _ in range(40):
        x, y = rng.normal(size=(40, d)), rng.normal(size=(40, d)) + 0.5
        plain.append(frechet_distance(x, y))
        extrapolated.append(frechet_distance_infinity(x, y).value)
    assert np.mean(plain) - truth > 0.25  # biased upwards at n = 40
    assert abs(np.mean(extrapolated) - truth) < 0.4 * (np.mean(plain) - truth)
    with pytest.raises(ValueError, match="too few"):
        frechet_distance_infinity(x[:3], y[:3])
