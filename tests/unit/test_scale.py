"""core.analysis.scale: the diversity statistics from one pass in batches equal core.analysis.stats' on the same rows
(values and jackknife intervals); Vendi in d x d equals the reference n x n definition; faiss nearest neighbours equal
core.analysis.compare's; PRDC is exact up to the sample limit and states its sample above it; "never drawn" finds the
photos no synthetic image comes near."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.compare import nearest, prdc
from core.analysis.scale import (
    in_batches,
    nearest_neighbours,
    never_drawn,
    prdc_estimates,
    streamed_diversity_statistics,
)
from core.analysis.stats import diversity_statistics


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, d: int, seed: int = 0, spread: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d))
    return unit(centres[rng.integers(0, 4, n)] + spread * rng.normal(size=(n, d)))


def reference_vendi(x: np.ndarray) -> float:
    """The vendi-score package's definition, written out: exp of the entropy of eig(K / n), K the n x n kernel."""
    k = x @ x.T
    eig = np.linalg.eigvalsh(k / len(x))
    eig = eig[eig > 0]
    return float(np.exp(-(eig * np.log(eig)).sum()))


@pytest.mark.parametrize("n, d, groups, batch", [(300, 16, 20, 64), (40, 64, 25, 7), (150, 32, 150, 1000)])
def test_streamed_statistics_equal_the_in_memory_ones(n, d, groups, batch):
    x = clustered(n, d, seed=n)
    ours = streamed_diversity_statistics(in_batches(x, batch), n, groups=groups)
    theirs = diversity_statistics(x, groups=groups)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.name, a.n, a.clipped) == (b.name, b.n, b.clipped)
        np.testing.assert_allclose([a.value, a.low, a.high], [b.value, b.low, b.high], rtol=1e-7, atol=1e-9)


def test_vendi_in_d_by_d_is_the_reference_n_by_n_definition():
    for n, d in ((50, 8), (8, 50), (200, 200)):
        x = clustered(n, d, seed=d)
        (vendi,) = [e for e in streamed_diversity_statistics(in_batches(x, 17), n) if e.name == "Vendi score"]
        assert vendi.value == pytest.approx(reference_vendi(x), rel=1e-9)
    same = np.tile(unit(np.ones((1, 8))), (30, 1))  # n identical items -> 1; n orthonormal items -> n
    assert streamed_diversity_statistics([same], 30)[1].value == pytest.approx(1.0)
    assert streamed_diversity_statistics([np.eye(12)], 12)[1].value == pytest.approx(12.0)


def test_degenerate_sets_say_why_as_the_in_memory_statistics_do():
    same = np.tile(unit(np.ones((1, 8))), (10, 1))
    notes = {e.name: e.note for e in streamed_diversity_statistics([same], 10)}
    assert notes["effective rank"] == "all images are identical: no variance"
    assert [e.note for e in streamed_diversity_statistics([same[:1]], 1)] == ["needs at least 2 images"] * 4
    with pytest.raises(ValueError, match="were expected"):
        streamed_diversity_statistics([same], 11)
    bad = same.copy()
    bad[3] *= 2
    with pytest.raises(ValueError, match="unnormalised"):
        streamed_diversity_statistics([bad], 10)


def test_faiss_nearest_neighbours_equal_the_blockwise_search():
    ref, query = clustered(2000, 32, seed=1), clustered(300, 32, seed=2)
    idx, sims = nearest_neighbours(query, ref, k=5)
    their_idx, their_sims = nearest(query, ref, k=5)
    np.testing.assert_allclose(sims, their_sims, atol=1e-5)
    assert (idx == their_idx).mean() > 0.99  # exact search; float32 may swap two near-equal neighbours


def test_prdc_is_exact_below_the_limit_and_states_its_sample_above_it():
    natural, synthetic = clustered(400, 16, seed=3, spread=1.2), clustered(700, 16, seed=4, spread=0.8)
    ours = {e.name: e for e in prdc_estimates(natural, synthetic, k=5, limit=1000)}
    ref = prdc(natural, synthetic, k=5)
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name].value == pytest.approx(getattr(ref, name), abs=1e-12) and ours[name].note == ""
    assert ours["precision"].n == 700 and ours["recall"].n == 400 and ours["precision"].low < ours["precision"].value
    sampled = {e.name: e for e in prdc_estimates(natural, synthetic, k=5, limit=300)}
    assert sampled["precision"].n == 300 and "random sample of 300 of the 700 synthetic images" in \
        sampled["precision"].note and "300 of the 400 natural photos" in sampled["coverage"].note
    assert abs(sampled["coverage"].value - ref.coverage) < 0.15  # a sample estimates the same quantity


def test_never_drawn_finds_the_natural_photos_far_from_every_synthetic_image():
    rng = np.random.default_rng(5)
    near = unit(np.array([1.0, 0, 0, 0]) + 0.05 * rng.normal(size=(40, 4)))
    far = unit(np.array([0, 0, 0, 1.0]) + 0.05 * rng.normal(size=(10, 4)))
    natural = np.concatenate([near, far])
    synthetic = unit(np.array([1.0, 0, 0, 0]) + 0.05 * rng.normal(size=(500, 4)))
    result = never_drawn(natural, synthetic, k=5)
    assert set(result.photos.tolist()) == set(range(40, 50))
    assert result.share.value == pytest.approx(10 / 50) and result.share.n == 50
    assert "among the 500" in result.share.note


def test_float32_products_stay_within_1e_5_of_the_exact_statistics():
    x = clustered(2000, 64, seed=9)
    exact = streamed_diversity_statistics(in_batches(x, 300), len(x), groups=20)
    fast = streamed_diversity_statistics(in_batches(x.astype(np.float32), 300), len(x), groups=20, dtype=np.float32)
    for a, b in zip(fast, exact, strict=True):
        np.testing.assert_allclose([a.value, a.low, a.high], [b.value, b.low, b.high], rtol=1e-5, atol=1e-6)
