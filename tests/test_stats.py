import numpy as np
import pytest

from core.embed import l2_normalise
from core.stats import (
    Estimate,
    bootstrap_interval,
    cosine_matrix,
    diversity_statistics,
    effective_rank,
    mean_pairwise_cosine,
    pca_spectrum,
    project_2d,
    variance_explained,
    vendi_score,
)


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
    from core.stats import centred_singular_values

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


def test_identical_images_give_similarity_one_vendi_one_and_say_there_is_no_variance():
    x = np.tile(unit_rows(1, 8), (5, 1))
    by_name = {e.name: e for e in diversity_statistics(x, resamples=20)}
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
    stats = diversity_statistics(unit_rows(16, 32), resamples=50)
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
