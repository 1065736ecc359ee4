import numpy as np
import pytest

from core.analysis.stats import (
    Estimate,
    bootstrap_interval,
    clip_to_range,
    cosine_matrix,
    diversity_statistics,
    effective_rank,
    jackknife_interval,
    mean_pairwise_cosine,
    pca_spectrum,
    project_2d,
    statistic_range,
    variance_explained,
    vendi_score,
)
from core.pipeline.embed import l2_normalise


def unit_rows(n, d, seed=0):
    return l2_normalise(np.random.default_rng(seed).normal(size=(n, d)))


# -- golden values -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 5, 40])
def test_identical_vectors_have_vendi_one_and_similarity_one(n):
    x = np.tile(unit_rows(1, 16), (n, 1))
    assert vendi_score(x) == pytest.approx(1.0, abs=1e-6)  # float32 unit vectors
    assert mean_pairwise_cosine(x) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("n,d", [(4, 4), (8, 32), (64, 512)])
def test_orthonormal_vectors_have_vendi_n_and_similarity_zero(n, d):
    x = np.eye(d, dtype=np.float32)[:n]
    assert vendi_score(x) == pytest.approx(n, rel=1e-9)
    assert mean_pairwise_cosine(x) == pytest.approx(0.0, abs=1e-12)


def test_two_clusters_have_vendi_two():
    a, b = np.eye(8)[0], np.eye(8)[1]
    assert vendi_score(np.array([a] * 5 + [b] * 5)) == pytest.approx(2.0, rel=1e-9)


@pytest.mark.parametrize("n,d", [(10, 64), (200, 32), (50, 50)])
def test_vendi_matches_the_reference_package(n, d):
    from vendi_score import vendi

    x = unit_rows(n, d, seed=n).astype(np.float64)
    reference = vendi.score_K(x @ x.T)  # the package's definition: exp(entropy(eig(K / n)))
    assert vendi_score(x) == pytest.approx(reference, rel=1e-6)


def test_mean_pairwise_cosine_equals_the_brute_force_mean():
    x = unit_rows(30, 8)
    sim = cosine_matrix(x)
    brute = (sim.sum() - np.trace(sim)) / (30 * 29)
    assert mean_pairwise_cosine(x) == pytest.approx(brute, abs=1e-6)


def test_effective_rank_of_a_regular_simplex_is_its_dimension():
    # n orthonormal points, centred, have n-1 equal singular values: effective rank n-1.
    assert effective_rank(np.eye(6)) == pytest.approx(5.0, rel=1e-9)


def test_singular_values_match_numpy_svd_for_wide_and_tall_sets():
    from core.analysis.stats import centred_singular_values

    for n, d in [(10, 64), (64, 10)]:
        x = unit_rows(n, d, seed=d)
        expected = np.linalg.svd(x - x.mean(0), compute_uv=False)
        got = centred_singular_values(x)[: len(expected)]
        assert np.allclose(got, expected, atol=1e-6)


def test_points_on_a_line_have_effective_rank_one_and_all_variance_in_pc1():
    t = np.linspace(-1, 1, 20)[:, None]
    x = np.hstack([t, 2 * t, np.zeros_like(t)])
    assert effective_rank(x) == pytest.approx(1.0, abs=1e-6)
    assert variance_explained(x, 1) == pytest.approx(1.0, abs=1e-12)
    assert pca_spectrum(x).sum() == pytest.approx(1.0)


# -- intervals -----------------------------------------------------------------------------------------------------
def test_bootstrap_interval_contains_the_estimate_and_is_deterministic():
    x = unit_rows(24, 16)
    first = bootstrap_interval(x, vendi_score)
    assert first == bootstrap_interval(x, vendi_score)
    value, low, high = first
    assert low < value < high and value == pytest.approx(vendi_score(x))


def test_bootstrap_interval_narrows_with_more_data():
    wide = bootstrap_interval(unit_rows(10, 8, 1), mean_pairwise_cosine)
    narrow = bootstrap_interval(unit_rows(400, 8, 1), mean_pairwise_cosine)
    assert (narrow[2] - narrow[1]) < (wide[2] - wide[1]) / 3


def test_statistics_need_two_images():
    stats = diversity_statistics(unit_rows(1, 8))
    assert all(np.isnan(e.value) and e.n == 1 and "at least 2" in e.note for e in stats)
    assert stats[0].format() == "n/a (needs at least 2 images)"


def test_an_estimate_without_an_interval_says_so_instead_of_printing_nan():
    assert Estimate("x", 0.5, 0.4, 0.61, 10).format() == "0.50 [0.40, 0.61]"
    no_interval = Estimate("x", 0.5, np.nan, np.nan, 2, "too few to resample")
    assert no_interval.format() == "0.50 (no interval: too few to resample)"
    assert Estimate("x", 0.5, np.nan, np.nan, 2).format(3) == "0.500 (no interval)"


def test_an_estimate_shown_in_other_units_scales_its_interval_and_says_the_clip_in_words():
    accuracy = Estimate("accuracy", 0.75, 0.5, 1.0, 8, clipped="[0, 1]")
    assert accuracy.format() == "0.75 [0.50, 1.00] (interval clipped to [0, 1])"
    assert accuracy.format(1, 100.0) == "75.0 [50.0, 100.0] (interval clipped to the statistic's range)"
    percent = accuracy.scaled(100.0, "accuracy (%)")
    assert (percent.name, percent.value, percent.high, percent.clipped) == ("accuracy (%)", 75.0, 100.0,
                                                                            "the statistic's range")
    assert Estimate("x", 0.5, np.nan, np.nan, 2).format(1, 100.0) == "50.0 (no interval)"


def test_identical_images_give_similarity_one_vendi_one_and_say_there_is_no_variance():
    x = np.tile(unit_rows(1, 8), (5, 1))
    by_name = {e.name: e for e in diversity_statistics(x, groups=20)}
    assert by_name["mean pairwise cosine"].value == pytest.approx(1.0)
    assert by_name["Vendi score"].value == pytest.approx(1.0)
    for name in ("effective rank", "variance in first 2 PCs"):
        assert np.isnan(by_name[name].value) and by_name[name].note == "all images are identical: no variance"


@pytest.mark.parametrize("bad", [np.nan, 0.0, 3.0])
def test_statistics_refuse_nan_zero_or_unnormalised_embeddings_with_the_rows(bad):
    x = unit_rows(6, 8)
    x[4] = bad if bad != 3.0 else x[4] * 3.0
    with pytest.raises(ValueError, match=r"1 of 6 embeddings are not finite unit vectors \(rows \[4\]"):
        diversity_statistics(x)


def test_statistics_report_n_and_intervals():
    stats = diversity_statistics(unit_rows(16, 32), groups=50)
    assert [e.name for e in stats] == ["mean pairwise cosine", "Vendi score", "effective rank",
                                       "variance in first 2 PCs"]
    for e in stats:
        assert e.n == 16 and e.low <= e.value <= e.high


def test_l2_normalise_rejects_zero_and_nan_rows():
    with pytest.raises(ValueError, match="zero or not finite"):
        l2_normalise(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError):
        l2_normalise(np.array([[np.nan, 1.0]]))


# -- projections ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projections_are_deterministic(method):
    x = unit_rows(20, 16)
    a, used = project_2d(x, method)
    b, _ = project_2d(x, method)
    assert a.shape == (20, 2) and np.allclose(a, b)
    assert used.lower().startswith(method.replace("tsne", "t-sne"))


def test_pca_projection_keeps_the_main_direction():
    t = np.linspace(-1, 1, 10)[:, None]
    coords, _ = project_2d(np.hstack([t, np.zeros_like(t)]), "pca")
    assert np.allclose(np.abs(coords[:, 0]), np.abs(t[:, 0])) and np.allclose(coords[:, 1], 0)


def test_tiny_sets_fall_back_gracefully():
    coords, used = project_2d(unit_rows(2, 4), "tsne")
    assert coords.shape == (2, 2) and "fewer than 3" in used


# -- interval coverage with known truth (README: "How to read the numbers") -----------------------------------------
def _binomial_coverage(interval, n, p):
    """Exact coverage: every possible count k, weighted by its binomial probability."""
    from scipy.stats import binom

    return sum(binom.pmf(k, n, p) for k in range(n + 1) if interval(k, n)[0] <= p <= interval(k, n)[1])


@pytest.mark.parametrize("n", [20, 50])
@pytest.mark.parametrize("p", [0.05, 0.1, 0.3])
def test_proportion_intervals_cover_at_least_93_percent(n, p):
    from core.analysis.stats import count_estimate

    def interval(k, n):
        e = count_estimate("share", k, n)
        return e.low, e.high

    coverage = _binomial_coverage(interval, n, p)
    assert 0.93 <= coverage <= 0.995, coverage  # and not uselessly wide


def test_the_old_clipped_normal_bootstrap_for_a_share_undercovers():
    # Why the proportion interval changed: the test above fails for the normal bootstrap (k = 0 gives [0, 0]).
    def old(k, n):
        _, low, high = bootstrap_interval(np.r_[np.ones(k), np.zeros(n - k)], lambda a: float(a.mean()), 100)
        return max(low, 0.0) if np.isfinite(low) else 0.0, min(high, 1.0) if np.isfinite(high) else 0.0

    assert _binomial_coverage(old, 20, 0.05) < 0.80


def test_a_proportion_of_zero_has_a_nonzero_interval_and_flags_must_be_yes_or_no():
    from core.analysis.stats import proportion_estimate

    e = proportion_estimate("top-1", np.zeros(20, bool))
    assert e.value == 0 and e.low == 0 and 0.1 < e.high < 0.25 and e.n == 20
    with pytest.raises(ValueError, match="yes/no"):
        proportion_estimate("top-1", np.array([0.0, 0.5]))


def _finite_population(m, d, seed, shift, decay=0.5):
    """M unit vectors with a common direction: datasets are iid draws from them, so the truth is known exactly."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d)) * np.arange(1, d + 1) ** -decay
    x[:, 0] += shift
    return l2_normalise(x).astype(np.float64)


@pytest.mark.parametrize("n,low", [(20, 0.92), (50, 0.93)])
def test_mean_cosine_interval_covers_the_true_mean_cosine(n, low):
    population = _finite_population(4000, 32, 1, 1.0)
    truth = float(population.mean(axis=0) @ population.mean(axis=0))  # E[x . x'] for independent draws
    rng = np.random.default_rng(2)
    hits, widths = 0, []
    for _ in range(1000):
        # The page's path (diversity_statistics) for this one statistic: jackknife, then its range.
        value, low, high = jackknife_interval(population[rng.integers(0, len(population), n)], mean_pairwise_cosine)
        est = clip_to_range(Estimate("mean pairwise cosine", value, low, high, n),
                            *statistic_range("mean pairwise cosine", n, 32))
        hits += est.low <= truth <= est.high
        widths.append(est.high - est.low)
    assert low <= hits / 1000 <= 0.97
    assert np.mean(widths) < 0.6 if n == 20 else np.mean(widths) < 0.2


def t_quantile(n):
    from scipy import stats as sps

    return sps.t.ppf(0.975, n - 1)


def _effective_rank_case(n, datasets, d=64, decay=1.0, truth_sets=4000):
    population = _finite_population(4000, d, 3, 0.5, decay=decay)
    rng = np.random.default_rng(4)
    # The estimand: the expected effective rank of n images (it grows with n), from independent draws.
    truth_draws = [effective_rank(population[rng.choice(4000, n, replace=False)]) for _ in range(truth_sets)]
    truth, true_sd = float(np.mean(truth_draws)), float(np.std(truth_draws, ddof=1))
    hits, sds = 0, []
    for _ in range(datasets):
        x = population[rng.choice(4000, n, replace=False)]
        value, low, high = jackknife_interval(x, effective_rank)
        hits += low <= truth <= high
        sds.append((high - low) / (2 * t_quantile(n)))
    return hits / datasets, float(np.mean(sds)) / true_sd


def test_effective_rank_interval_has_near_nominal_coverage_and_width_at_n_20():
    coverage, sd_ratio = _effective_rank_case(20, 600)
    assert 0.93 <= coverage <= 0.97, coverage
    assert 0.8 <= sd_ratio <= 1.3, sd_ratio


def test_effective_rank_interval_in_clip_like_dimensions_where_the_bootstrap_was_7x_too_wide():
    # 512 dimensions with a slowly decaying spectrum: the setting where the bootstrap SD was ~7x the true SD at n = 20.
    coverage, sd_ratio = _effective_rank_case(20, 400, d=512, decay=0.5, truth_sets=1000)
    assert 0.93 <= coverage <= 0.97, coverage
    assert 0.75 <= sd_ratio <= 1.3, sd_ratio


@pytest.mark.slow
def test_effective_rank_interval_has_near_nominal_coverage_and_width_at_n_100():
    coverage, sd_ratio = _effective_rank_case(100, 300)
    assert 0.93 <= coverage <= 0.97, coverage
    assert 0.8 <= sd_ratio <= 1.3, sd_ratio


def test_the_bootstrap_sd_of_the_effective_rank_is_far_too_wide():
    # Why the jackknife: on resamples, repeated images drop the effective rank by a varying amount.
    population = _finite_population(4000, 32, 3, 0.5)
    rng = np.random.default_rng(5)
    truth_sd = np.std([effective_rank(population[rng.integers(0, 4000, 20)]) for _ in range(1000)], ddof=1)
    boot = [bootstrap_interval(population[rng.integers(0, 4000, 20)], effective_rank, 100) for _ in range(20)]
    assert np.mean([(h - lo) / (2 * 1.959964) for _, lo, h in boot]) > 2 * truth_sd


# -- ranges and guards ----------------------------------------------------------------------------------------------
def test_intervals_stay_inside_each_statistics_range_and_say_when_clipped():
    for n in (3, 4, 6):
        for seed in range(5):
            x = unit_rows(n, 8, seed)
            for e in diversity_statistics(x):
                lo, hi = statistic_range(e.name, n, 8)
                assert lo - 1e-12 <= e.low <= e.value + 1e-12 and e.value - 1e-12 <= e.high <= hi + 1e-12, e
    clipped = [e for s in range(20) for e in diversity_statistics(unit_rows(3, 8, s)) if e.clipped]
    assert clipped and all("interval clipped to [" in e.format() for e in clipped)


def test_two_images_get_a_value_but_no_interval_instead_of_an_impossible_one():
    e = diversity_statistics(unit_rows(2, 8))[0]
    assert np.isfinite(e.value) and np.isnan(e.low) and "at least 3" in e.format()


def test_clip_to_range_only_marks_intervals_it_changed():
    inside = Estimate("x", 0.5, 0.4, 0.6, 10)
    assert clip_to_range(inside, 0, 1) is inside and "clipped" not in inside.format()
    cut = clip_to_range(Estimate("x", 0.1, -0.2, 0.4, 10), 0, 1)
    assert (cut.low, cut.high, cut.clipped) == (0.0, 0.4, "[0, 1]")
    assert cut.format() == "0.10 [0.00, 0.40] (interval clipped to [0, 1])"


def test_vendi_refuses_rows_that_are_not_unit_vectors():
    with pytest.raises(ValueError, match="L2-normalised"):
        vendi_score(unit_rows(10, 8) * 30.0)


@pytest.mark.parametrize("fn", [vendi_score, effective_rank, mean_pairwise_cosine, variance_explained])
def test_a_nan_row_is_named_not_a_linalg_error(fn):
    x = unit_rows(10, 8)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        fn(x)


def test_mean_estimate_uses_a_t_interval_clipped_to_the_values_range():
    from scipy import stats as sps

    from core.analysis.stats import mean_estimate

    values = np.array([0.0, 0.0, 0.1, 0.5])
    e = mean_estimate("CLIPScore", values)
    half = sps.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    assert (e.low, e.high) == pytest.approx((values.mean() - half, values.mean() + half)) and e.low < 0
    clipped = mean_estimate("CLIPScore", values, bounds=(0.0, 2.5))
    assert clipped.low == 0.0 and clipped.clipped == "[0, 2.5]"
    with pytest.raises(ValueError, match="NaN"):
        mean_estimate("CLIPScore", np.array([0.1, np.nan]))


# -- equal n ------------------------------------------------------------------------------------------------------
def test_equal_n_compares_a_large_set_at_the_small_sets_size():
    from core.analysis.stats import equal_n_estimate

    big = np.eye(16)  # orthonormal: Vendi of any m of them is m
    e = equal_n_estimate(big, "Vendi score", 3)
    assert e.value == pytest.approx(3.0) and e.n == 3 and "subsets of 3 of the 16" in e.note
    assert equal_n_estimate(big[:3], "Vendi score", 3).value == pytest.approx(3.0)


def test_statistic_curve_grows_with_n_for_vendi():
    from core.analysis.stats import curve_sizes, statistic_curve

    sizes = curve_sizes(40)
    assert sizes[0] == 2 and sizes[-1] == 40 and sizes == sorted(set(sizes))
    curve = statistic_curve(unit_rows(40, 64, 3), "Vendi score", sizes)
    means = [m for _, m, _ in curve]
    assert [n for n, _, _ in curve] == sizes and all(b > a for a, b in zip(means, means[1:]))
