"""Classifiers on embeddings: known answers on constructed data (random-weight CLIP would make them chance)."""

import numpy as np
import pytest

from core.analysis.probe import (
    bootstrap_metric,
    fit_and_test,
    gap_sentence,
    learning_curve,
    learning_curve_sizes,
    natural_split,
    relative_diversity,
    separability,
    separability_reading,
    train_on,
    training_rows,
)
from core.pipeline.embed import l2_normalise

D = 32


def blobs(centres: np.ndarray, per_class: int, seed: int, spread: float = 1.0):
    """Unit vectors around each centre: (x, class index per row)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + spread * rng.normal(size=(per_class, centres.shape[1])) for c in centres])
    return l2_normalise(x), np.repeat(np.arange(len(centres)), per_class)


def centres(k: int, seed: int = 0, scale: float = 3.0):
    return np.random.default_rng(seed).normal(size=(k, D)) * scale


def test_far_apart_sources_are_separable_with_auc_near_one():
    c = centres(3)
    syn, syn_y = blobs(c + 6.0, 20, 1, spread=0.5)  # every synthetic class shifted the same way
    nat, nat_y = blobs(c, 30, 2, spread=0.5)
    result = separability(syn, nat, syn_y, nat_y, ["a", "b", "c"], resamples=50, permutations=50)
    assert result.auc.value > 0.99 and result.auc.low > 0.95
    assert result.accuracy.value > 0.95
    assert all(auc.value > 0.95 for _, _, auc in result.per_class)
    assert result.folds == 5 and len(result.scores) == 150 and result.is_synthetic.sum() == 60
    assert "easy to tell apart" in separability_reading(result)


def test_identical_distributions_give_auc_near_half_within_its_interval():
    c = centres(2, seed=3)
    syn, syn_y = blobs(c, 40, 4)
    nat, nat_y = blobs(c, 40, 5)
    result = separability(syn, nat, syn_y, nat_y, ["a", "b"], resamples=200)
    assert result.auc.low <= 0.5 <= result.auc.high, result.auc
    assert abs(result.auc.value - 0.5) < 0.15
    assert result.accuracy.low <= 0.5 <= result.accuracy.high
    assert "no evidence" in separability_reading(result)


def test_separability_refuses_a_class_with_one_image():
    c = centres(2)
    syn, syn_y = blobs(c, 1, 1)
    nat, nat_y = blobs(c, 5, 2)
    with pytest.raises(ValueError, match="at least 2 synthetic images"):
        separability(syn, nat, syn_y, nat_y, ["a", "b"])


def test_folds_shrink_to_the_smallest_stratum():
    c = centres(2)
    syn, syn_y = blobs(c, 3, 1)
    nat, nat_y = blobs(c, 10, 2)
    assert separability(syn, nat, syn_y, nat_y, ["a", "b"], resamples=10).folds == 3


def test_one_nearest_neighbour_accuracy_equals_nearest_label_agreement():
    c = centres(4, seed=7, scale=1.0)
    train_x, train_y = blobs(c, 15, 8, spread=1.0)
    test_x, test_y = blobs(c, 25, 9, spread=1.0)
    pred = fit_and_test(train_x, train_y, test_x, test_y, "knn", k=1)
    nearest_label = train_y[np.argmax(test_x @ train_x.T, axis=1)]
    assert np.array_equal(pred, nearest_label)
    assert np.mean(pred == test_y) == pytest.approx(np.mean(nearest_label == test_y))
    assert 0.3 < np.mean(pred == test_y) < 1.0  # overlapping blobs: neither chance nor perfect


def test_natural_split_is_fixed_disjoint_and_per_class():
    labels = np.repeat([0, 1, 2], [10, 7, 2])
    test, pool = natural_split(labels, seed=0)
    again, _ = natural_split(labels, seed=0)
    assert np.array_equal(test, again)
    assert not set(test) & set(pool) and len(test) + len(pool) == 19
    assert list(np.bincount(labels[test])) == [5, 4, 1] and list(np.bincount(labels[pool])) == [5, 3, 1]
    with pytest.raises(ValueError, match="at least 2"):
        natural_split(np.array([0, 0, 1]))


def test_training_rows_honour_the_share_and_cap_at_what_exists():
    syn_y, pool_y = np.repeat([0, 1], 8), np.repeat([0, 1], [5, 2])
    syn, nat = training_rows(syn_y, pool_y, 4, 0.5)
    assert list(np.bincount(syn_y[syn])) == [2, 2] and list(np.bincount(pool_y[nat])) == [2, 2]
    syn, nat = training_rows(syn_y, pool_y, 4, 0.0)
    assert len(syn) == 0 and list(np.bincount(pool_y[nat])) == [4, 2]  # class 1 has only 2 in the pool
    syn, nat = training_rows(syn_y, pool_y, 4, 1.0)
    assert len(nat) == 0 and list(syn) == [0, 1, 2, 3, 8, 9, 10, 11]  # the first images, seed order


def shifted_domain(k=3, shift=2.0):
    """Natural classes around centres; 'synthetic' images of each class sit off to one side of their class,
    squeezed (low diversity): a classifier trained on them misplaces its boundaries for natural photos."""
    c = centres(k, seed=11, scale=1.0)
    nat, nat_y = blobs(c, 40, 12, spread=1.0)
    direction = np.random.default_rng(13).normal(size=(k, D)) * shift
    syn, syn_y = blobs(c + direction, 20, 14, spread=0.2)
    return syn, syn_y, nat, nat_y


@pytest.mark.parametrize("classifier", ["probe", "knn"])
def test_training_on_shifted_synthetic_images_loses_accuracy_on_natural_photos(classifier):
    syn, syn_y, nat, nat_y = shifted_domain()
    on_syn = train_on(1.0, syn, syn_y, nat, nat_y, 20, classifier, resamples=50)
    on_nat = train_on(0.0, syn, syn_y, nat, nat_y, 20, classifier, resamples=50)
    mix = train_on(0.5, syn, syn_y, nat, nat_y, 20, classifier, resamples=50)
    assert on_nat.accuracy.value > on_syn.accuracy.value + 0.1
    assert on_syn.n_train_synthetic == 60 and on_syn.n_train_natural == 0
    assert on_nat.n_train_natural == 60 and mix.n_train_synthetic == 30 and mix.n_train_natural == 30
    assert on_syn.accuracy.n == on_nat.accuracy.n == 60  # the same held-out photos
    assert np.array_equal(on_syn.y_true, on_nat.y_true)
    assert on_syn.confusion.sum() == 60 and on_syn.confusion.shape == (3, 3)
    assert np.allclose(on_syn.per_class, np.diag(on_syn.confusion) / on_syn.confusion.sum(1))
    assert on_syn.accuracy.low <= on_syn.accuracy.value <= on_syn.accuracy.high
    sentence = gap_sentence(on_syn, on_nat, 3)
    assert "points lower" in sentence and "chance is 33%" in sentence


def test_synthetic_images_from_the_natural_distribution_lose_nothing():
    c = centres(3, seed=21, scale=1.0)
    nat, nat_y = blobs(c, 60, 22)
    syn, syn_y = blobs(c, 30, 23)
    on_syn = train_on(1.0, syn, syn_y, nat, nat_y, 30, resamples=100)
    on_nat = train_on(0.0, syn, syn_y, nat, nat_y, 30, resamples=100)
    assert abs(on_syn.accuracy.value - on_nat.accuracy.value) < 0.1
    assert on_syn.accuracy.low <= on_nat.accuracy.value <= on_syn.accuracy.high


def test_learning_curve_sizes_and_rows():
    assert learning_curve_sizes(8) == [1, 2, 4, 8] and learning_curve_sizes(6) == [1, 2, 4, 6]
    assert learning_curve_sizes(1) == [1]
    syn, syn_y, nat, nat_y = shifted_domain()
    rows = learning_curve(syn, syn_y, nat, nat_y, 20, resamples=20)
    sizes = {(n, cond) for n, cond, _ in rows}
    assert (16, "natural") in sizes and (20, "synthetic") in sizes and (20, "natural") in sizes
    final = {cond: est.value for n, cond, est in rows if n == 20}
    assert final["natural"] > final["synthetic"]


def test_relative_diversity():
    x = l2_normalise(np.random.default_rng(30).normal(size=(50, D)))
    same, n = relative_diversity(x[:20], x[20:])
    assert n == 20 and 0.8 < same < 1.25
    collapsed = l2_normalise(np.tile(x[:1], (20, 1)) + 0.01 * np.random.default_rng(31).normal(size=(20, D)))
    low, _ = relative_diversity(collapsed, x)
    assert low < 0.2
    assert np.isnan(relative_diversity(x[:1], x)[0])


def test_bootstrap_metric_percentile_interval_and_degenerate_inputs():
    y = np.array([1, 0] * 50)
    pred = y.copy()
    pred[:10] = 1 - pred[:10]
    est = bootstrap_metric("accuracy", lambda t, p: float(np.mean(t == p)), y, pred)
    assert est.value == pytest.approx(0.9) and est.low < 0.9 < est.high and est.n == 100
    single = bootstrap_metric("accuracy", lambda t, p: float(np.mean(t == p)), y[:1], pred[:1])
    assert np.isnan(single.low) and "at least 2" in single.note


def test_roc_auc_equals_sklearn_including_ties():
    from sklearn.metrics import roc_auc_score

    from core.analysis.probe import roc_auc

    rng = np.random.default_rng(40)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.normal(size=300) + y, 1)  # rounded: many ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    with pytest.raises(ValueError):
        roc_auc(np.ones(5), np.arange(5.0))


# -- "the sources differ": permutation test and DeLong (issue #15) -------------------------------------------------
def test_delong_variance_matches_the_structural_components_written_out():
    from core.analysis.probe import delong_auc

    rng = np.random.default_rng(3)
    y = np.r_[np.ones(12, int), np.zeros(17, int)]
    score = np.round(rng.normal(size=29) + 0.7 * y, 1)  # rounded: ties count half
    pos, neg = score[y == 1], score[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    var = psi.mean(axis=1).var(ddof=1) / 12 + psi.mean(axis=0).var(ddof=1) / 17
    e = delong_auc("ROC AUC", y, score)
    assert e.value == pytest.approx(auc)
    assert (e.low, e.high) == pytest.approx((auc - 1.959964 * np.sqrt(var), auc + 1.959964 * np.sqrt(var)))


def _says_differ_with_no_difference(n_syn, n_nat, rng):
    """One dataset with no real difference (both sources drawn around the same class centres): does the lab say
    "the sources differ"?"""
    from core.analysis.probe import sources_differ

    centres = rng.normal(size=(2, 8)) * 2.0
    syn, syn_y = blobs(centres, n_syn // 2, int(rng.integers(1 << 30)))
    nat, nat_y = blobs(centres, n_nat // 2, int(rng.integers(1 << 30)))
    return bool(sources_differ(separability(syn, nat, syn_y, nat_y, ["a", "b"], resamples=2)))


@pytest.mark.slow
def test_the_probe_says_the_sources_differ_at_most_5_percent_of_the_time_when_they_do_not():
    # 200 datasets, half 40 vs 40 and half 20 vs 100 (the unbalanced case fired most often with the former rule).
    # ~100 s on two shared cores: the permutation test refits the probe ~25 times per dataset under no difference.
    rng = np.random.default_rng(15)
    fired = {(40, 40): 0, (20, 100): 0}
    for i in range(200):
        design = (40, 40) if i % 2 == 0 else (20, 100)
        fired[design] += _says_differ_with_no_difference(*design, rng)
    assert sum(fired.values()) / 200 <= 0.05, fired
    assert all(count / 100 <= 0.07 for count in fired.values()), fired


def test_the_permutation_test_detects_a_real_shift_and_stops_early_without_one():
    c = centres(2, seed=8)
    syn, syn_y = blobs(c + 1.0, 20, 9)
    nat, nat_y = blobs(c, 20, 10)
    shifted = separability(syn, nat, syn_y, nat_y, ["a", "b"], resamples=2)
    assert shifted.test.p_value == pytest.approx(1 / 201) and shifted.test.shuffles == 200
    assert "the sources differ" in separability_reading(shifted) and "p = 0.005" in separability_reading(shifted)
    same, same_y = blobs(c, 20, 11)
    null = separability(same, nat, same_y, nat_y, ["a", "b"], resamples=2)
    assert null.test.stopped_early and null.test.shuffles < 200 and null.test.p_value > 0.025
    assert "no evidence" in separability_reading(null)


def test_permutation_p_value_is_the_share_of_refits_reaching_the_observed_auc():
    from core.analysis.probe import _out_of_fold_scores, permutation_test, roc_auc

    c = centres(2, seed=12)
    x, cls = blobs(c, 12, 13)
    y = np.tile(np.r_[np.ones(6, int), np.zeros(6, int)], 2)
    observed = roc_auc(y, _out_of_fold_scores(x, y, cls, 3, 0))
    result = permutation_test(x, y, cls, 3, observed, permutations=30, stop_after=1000)
    assert not result.stopped_early and result.shuffles == 30
    assert result.p_value == pytest.approx((result.reached + 1) / 31)
    stopped = permutation_test(x, y, cls, 3, 0.0, permutations=30, stop_after=4)  # every refit reaches AUC 0
    assert stopped.stopped_early and stopped.shuffles == 4 and stopped.p_value == 1.0
    last = permutation_test(x, y, cls, 3, 0.0, permutations=4, stop_after=4)  # the stop falls on the last shuffle
    assert not last.stopped_early and last.p_value == 1.0 and last.shuffles == 4
