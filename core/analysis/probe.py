"""Classifiers on CLIP embeddings: can a probe tell synthetic from natural, and does a classifier trained on
synthetic images work on natural photos?

The lab's choices (the paper's settings are unknown), stated by the pages:
- the linear probe is scikit-learn's LogisticRegression (L2, C = 1, lbfgs) on standardised embeddings
  (StandardScaler fitted on the training data only); the k-NN classifier votes among the k = 5 nearest training
  images by cosine;
- separability: stratified 5-fold cross-validation (strata = class x source, shuffled, random_state 0), classes
  weighted so both sources count equally; balanced accuracy (chance = 0.5 whatever the set sizes) and ROC AUC of
  the out-of-fold decision scores;
- train on synthetic: half of each class's natural photos are held out for testing (a fixed split, seed 0) and
  every training condition is tested on exactly those photos; each condition trains on the same number of
  images per class, so only their source differs;
- "the sources differ" is a permutation test (PERMUTATIONS, ALPHA below): the source labels are shuffled within
  each class and the whole cross-validated probe refitted; p = the share of shuffles whose out-of-fold AUC
  reaches the observed one. Refitting is the point: a bootstrap of fixed out-of-fold scores keeps the fold models
  fixed and understates the spread (SD 0.063 vs 0.085 across datasets), and "its interval's lower end > 0.5"
  fired 7-9% of the time with no difference at all.
- the AUC interval is DeLong's (DeLong et al. 1988; Sun & Xu 2014) on the out-of-fold scores. Caveat, stated on
  the page: it treats the fold models as one fixed scorer, so it leaves out the refitting variance; the verdict
  comes from the permutation test, not from this interval.
- accuracies on held-out photos (train on synthetic) are proportions of fixed test photos: Wilson intervals.
  Balanced accuracy (the mean of two per-source accuracies): percentile bootstrap over the items (200 resamples,
  seed 0), models fixed.
The entry points run with single-threaded BLAS (core.analysis.compare.single_threaded): small fits, shared cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.analysis.compare import single_threaded
from core.analysis.stats import Estimate, clip_to_range, proportion_estimate, vendi_score

SEED = 0
FOLDS = 5
TEST_FRACTION = 0.5
KNN_K = 5
RESAMPLES = 200
PERMUTATIONS = 200  # at most; the p-value's floor is 1 / (PERMUTATIONS + 1)
# Besag & Clifford (1991) sequential stop: after this many shuffles reach the observed AUC, p = count / shuffles is
# already above ALPHA (5 / 199 > 0.025), so the verdict cannot change: stop. Valid at any stopping point.
PERMUTATION_STOP = 5
# One-sided, as "AUC > 0.5" is: the error rate the former rule (a 95% interval's lower end above 0.5) claimed.
# At 0.05 an exact test fires 4.98% of the time under no difference, which a finite check reads as "about 5%".
ALPHA = 0.025
CLASSIFIERS = {"probe": "linear probe (logistic regression)", "knn": "k-NN (cosine)"}
CONDITIONS = {"synthetic": "synthetic only", "natural": "natural only", "mix": "mix"}


def make_probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))


def make_classifier(kind: str, n_train: int, k: int = KNN_K):
    if kind == "probe":
        return make_probe()
    if kind == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=max(1, min(k, n_train)), metric="cosine", algorithm="brute")
    raise ValueError(f"Unknown classifier '{kind}': choose one of {', '.join(CLASSIFIERS)}.")


def bootstrap_metric(name: str, metric, *arrays: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = 0.95) -> Estimate:
    """metric(*arrays) with a percentile bootstrap interval over the rows (items) of `arrays`. Resamples on which
    the metric is undefined (e.g. AUC with one class) are skipped."""
    n = len(arrays[0])
    try:
        value = float(metric(*arrays)) if n else float("nan")
    except ValueError:
        value = float("nan")
    if n < 2 or not np.isfinite(value):
        return Estimate(name, value, float("nan"), float("nan"), n, "needs at least 2 items" if n < 2 else "")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        try:
            draws.append(float(metric(*(a[pick] for a in arrays))))
        except ValueError:
            continue
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    if len(draws) < 2:
        return Estimate(name, value, float("nan"), float("nan"), n)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(name, value, float(low), float(high), n)


def balanced_accuracy(y: np.ndarray, score: np.ndarray) -> float:
    """Mean of the per-source accuracies of `score > 0`: 0.5 is chance whatever the two set sizes."""
    if len(np.unique(y)) < 2:
        raise ValueError("balanced accuracy needs both sources")
    pred = score > 0
    return float(np.mean([np.mean(pred[y == v] == bool(v)) for v in (0, 1)]))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties count half): equal to sklearn's roc_auc_score, ~20x faster,
    which matters inside a bootstrap of a few thousand calls."""
    from scipy.stats import rankdata

    positive = np.asarray(y).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both sources")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def delong_auc(name: str, y: np.ndarray, score: np.ndarray, level: float = 0.95) -> Estimate:
    """ROC AUC with DeLong's interval (the fast midrank form of Sun & Xu 2014), clipped to [0, 1]: AUC is a
    two-sample U-statistic, and its variance is var(V10)/m + var(V01)/n over the structural components (each
    positive's share of negatives scored below it, each negative's share of positives scored above it)."""
    from statistics import NormalDist

    from scipy.stats import rankdata

    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=np.float64)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return Estimate(name, float("nan"), float("nan"), float("nan"), m + n, "needs both sources")
    combined = rankdata(np.concatenate([pos, neg]))
    auc = float((combined[:m].sum() - m * (m + 1) / 2) / (m * n))
    if m < 2 or n < 2:
        return Estimate(name, auc, float("nan"), float("nan"), m + n, "needs 2 images of each source for an interval")
    v10 = (combined[:m] - rankdata(pos)) / n
    v01 = 1.0 - (combined[m:] - rankdata(neg)) / m
    half = NormalDist().inv_cdf(0.5 + level / 2) * float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))
    return clip_to_range(Estimate(name, auc, auc - half, auc + half, m + n), 0.0, 1.0)


def _out_of_fold_scores(x: np.ndarray, y: np.ndarray, cls: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Decision scores, each from the probe of the fold that did not train on it (stratified by class x source).
    A plain loop rather than cross_val_predict: the permutation test calls this hundreds of times."""
    from sklearn.model_selection import StratifiedKFold

    strata = cls * 2 + y
    scores = np.empty(len(y))
    for train, test in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, strata):
        scores[test] = make_probe().fit(x[train], y[train]).decision_function(x[test])
    return scores


@dataclass(frozen=True)
class PermutationTest:
    p_value: float
    shuffles: int  # how many refits ran
    reached: int  # how many of them reached the observed AUC
    stopped_early: bool

    def describe(self) -> str:
        how = (f"stopped after {self.shuffles} shuffles: {self.reached} reached the observed AUC, so p cannot fall "
               f"below {ALPHA}" if self.stopped_early else f"{self.shuffles} shuffles")
        return f"permutation test p = {self.p_value:.3f} ({how})"


def permutation_test(x: np.ndarray, y: np.ndarray, cls: np.ndarray, n_splits: int, observed_auc: float,
                     permutations: int = PERMUTATIONS, stop_after: int = PERMUTATION_STOP,
                     seed: int = SEED) -> PermutationTest:
    """One-sided p-value of 'the probe separates the sources better than chance': shuffle the source labels
    within each class (class sizes and the number of synthetic images per class kept), refit the whole
    cross-validated probe, count shuffles whose out-of-fold AUC >= the observed one. p = (count + 1) /
    (shuffles + 1) after all shuffles, or count / shuffles when `stop_after` is reached first (Besag & Clifford
    1991): both are valid p-values, so under no difference p <= ALPHA happens at most ALPHA of the time."""
    rng = np.random.default_rng(seed + 1)
    by_class = [np.flatnonzero(cls == c) for c in np.unique(cls)]
    reached = 0
    for b in range(1, permutations + 1):
        shuffled = y.copy()
        for rows in by_class:
            shuffled[rows] = y[rng.permutation(rows)]
        if roc_auc(shuffled, _out_of_fold_scores(x, shuffled, cls, n_splits, seed)) >= observed_auc - 1e-12:
            reached += 1
            if reached >= stop_after and b < permutations:  # at the last shuffle the full-run p applies
                return PermutationTest(reached / b, b, reached, True)
    return PermutationTest((reached + 1) / (permutations + 1), permutations, reached, False)


# -- separability ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Separability:
    accuracy: Estimate  # balanced accuracy of the out-of-fold predictions
    auc: Estimate  # with DeLong's interval on the out-of-fold scores (fold models held fixed)
    per_class: list[tuple[str, Estimate, Estimate]]  # (class, balanced accuracy, AUC) of that class's rows
    scores: np.ndarray  # out-of-fold decision scores; > 0 means "synthetic"
    is_synthetic: np.ndarray  # bool per row
    class_index: np.ndarray  # class per row
    folds: int
    test: PermutationTest | None = None  # "do the sources differ?": refits under shuffled labels


@single_threaded
def separability(synthetic: np.ndarray, natural: np.ndarray, syn_class: np.ndarray, nat_class: np.ndarray,
                 class_names: list[str], folds: int = FOLDS, seed: int = SEED,
                 resamples: int = RESAMPLES, permutations: int = PERMUTATIONS) -> Separability:
    """A logistic-regression probe predicting 'synthetic?' from the embeddings, cross-validated, and the
    permutation test of 'the sources differ' (`permutations` = 0 skips it).

    Every image is scored by the probe of the fold that did not train on it; accuracy and AUC are of those
    out-of-fold scores, pooled and per class (the same pooled probe, its scores restricted to one class)."""
    x = np.concatenate([synthetic, natural]).astype(np.float64)
    y = np.concatenate([np.ones(len(synthetic), int), np.zeros(len(natural), int)])
    cls = np.concatenate([syn_class, nat_class]).astype(int)
    strata = cls * 2 + y
    present = np.bincount(strata)
    smallest = int(present[present > 0].min()) if present.any() else 0
    if len(synthetic) == 0 or len(natural) == 0 or smallest < 2:
        raise ValueError("The separability probe needs at least 2 synthetic images and 2 natural photos in every "
                         "class (cross-validation holds some out). Fix: raise N or the natural photos per class.")
    n_splits = min(folds, smallest)
    scores = _out_of_fold_scores(x, y, cls, n_splits, seed)
    per_class = []
    for i, name in enumerate(class_names):
        rows = cls == i
        per_class.append((name, bootstrap_metric("balanced accuracy", balanced_accuracy, y[rows], scores[rows],
                                                 resamples=resamples, seed=seed),
                          delong_auc("ROC AUC", y[rows], scores[rows])))
    auc = delong_auc("ROC AUC", y, scores)
    test = permutation_test(x, y, cls, n_splits, auc.value, permutations, seed=seed) if permutations else None
    return Separability(bootstrap_metric("balanced accuracy", balanced_accuracy, y, scores, resamples=resamples,
                                         seed=seed),
                        auc, per_class, scores, y.astype(bool), cls, n_splits, test)


def sources_differ(result: Separability, alpha: float = ALPHA) -> bool | None:
    """The verdict: True when the permutation test rejects 'no difference' at `alpha`; None without a test."""
    return None if result.test is None else result.test.p_value <= alpha


def separability_reading(result: Separability) -> str:
    auc = result.auc
    head = (f"A linear probe tells synthetic from natural with ROC AUC {auc.format(2)} and balanced accuracy "
            f"{result.accuracy.format(2)} (n = {auc.n} images, {result.folds}-fold cross-validation")
    differ = sources_differ(result)
    if differ is None:
        return head + "; no permutation test was run)."
    head += f"; {result.test.describe()})"
    if not differ:
        return head + f": no evidence the probe can tell them apart (p > {ALPHA}; 0.5 is chance)."
    if np.isfinite(auc.low) and auc.low > 0.9:
        return head + ": the sources differ, and are easy to tell apart."
    return head + ": the sources differ, but overlap."


# -- train on synthetic, test on natural ---------------------------------------------------------------------------

def natural_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, training-pool rows) of the natural photos, per class: a fixed shuffle with `seed`, then
    `test_fraction` of each class (at least 1) for testing, the rest (at least 1) for training. The pool keeps
    the shuffled order, so 'the first m of a class' is a random sample of m."""
    rng = np.random.default_rng(seed)
    test, pool = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if len(rows) < 2:
            raise ValueError(f"Class {c} has {len(rows)} natural photo(s): a train/test split needs at least 2.")
        n_test = min(len(rows) - 1, max(1, round(len(rows) * test_fraction)))
        test.append(rows[:n_test])
        pool.append(rows[n_test:])
    return np.concatenate(test), np.concatenate(pool)


def training_rows(syn_labels: np.ndarray, pool_labels: np.ndarray, per_class: int,
                  share: float) -> tuple[np.ndarray, np.ndarray]:
    """(synthetic rows, natural-pool rows) for a training set of `per_class` images per class, `share` of them
    synthetic: the first round(share * per_class) synthetic images of each class (seed order) and the first of
    its shuffled pool. A class with too few images contributes what it has."""
    syn_rows, nat_rows = [], []
    for c in np.unique(np.concatenate([syn_labels, pool_labels])):
        n_syn = int(round(share * per_class))
        syn_rows.append(np.flatnonzero(syn_labels == c)[:n_syn])
        nat_rows.append(np.flatnonzero(pool_labels == c)[:per_class - n_syn])
    return np.concatenate(syn_rows).astype(int), np.concatenate(nat_rows).astype(int)


@dataclass(frozen=True)
class TrainResult:
    condition: str  # "synthetic" | "natural" | "mix"
    share: float  # synthetic share of the training set
    classifier: str
    accuracy: Estimate  # on the held-out natural photos
    per_class: np.ndarray  # accuracy on each class's test photos (recall)
    per_class_n: np.ndarray
    confusion: np.ndarray  # rows: true class, columns: predicted
    n_train_synthetic: int
    n_train_natural: int
    y_true: np.ndarray
    y_pred: np.ndarray


def fit_and_test(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 classifier: str = "probe", k: int = KNN_K) -> np.ndarray:
    """Predicted labels of `test_x` by `classifier` trained on (train_x, train_y)."""
    if len(np.unique(train_y)) < 2:
        raise ValueError("A classifier needs training images of at least 2 classes.")
    model = make_classifier(classifier, len(train_x), k)
    model.fit(train_x.astype(np.float64), train_y)
    return model.predict(test_x.astype(np.float64))


@single_threaded
def train_on(share: float, syn_x: np.ndarray, syn_y: np.ndarray, nat_x: np.ndarray, nat_y: np.ndarray,
             per_class: int, classifier: str = "probe", k: int = KNN_K, seed: int = SEED,
             resamples: int = RESAMPLES) -> TrainResult:
    """Train on `per_class` images per class (`share` synthetic, the rest natural from the training pool), test
    on the held-out natural photos (natural_split with `seed`)."""
    test, pool = natural_split(nat_y, seed=seed)
    syn_rows, pool_rows = training_rows(syn_y, nat_y[pool], per_class, share)
    train_x = np.concatenate([syn_x[syn_rows], nat_x[pool][pool_rows]])
    train_y = np.concatenate([syn_y[syn_rows], nat_y[pool][pool_rows]])
    test_x, test_y = nat_x[test], nat_y[test]
    pred = fit_and_test(train_x, train_y, test_x, test_y, classifier, k)
    from sklearn.metrics import confusion_matrix

    n_classes = int(max(syn_y.max(initial=0), nat_y.max(initial=0))) + 1
    confusion = confusion_matrix(test_y, pred, labels=np.arange(n_classes))
    per_class_n = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / per_class_n
    condition = "synthetic" if share >= 1 else "natural" if share <= 0 else "mix"
    accuracy = proportion_estimate("accuracy", test_y == pred)  # fixed model, independent test photos: Wilson
    return TrainResult(condition, float(share), classifier, accuracy, per_class, per_class_n, confusion,
                       len(syn_rows), len(pool_rows), test_y, pred)


def gap_sentence(synthetic: TrainResult, natural: TrainResult, n_classes: int) -> str:
    gap = 100 * (natural.accuracy.value - synthetic.accuracy.value)
    name = CLASSIFIERS[synthetic.classifier]
    direction = "lower" if gap > 0 else "higher"
    return (f"Trained on {synthetic.n_train_synthetic} synthetic images, the {name} classifies "
            f"{100 * synthetic.accuracy.value:.0f}% of {synthetic.accuracy.n} held-out natural photos correctly; "
            f"trained on {natural.n_train_natural} natural photos instead, {100 * natural.accuracy.value:.0f}%: "
            f"synthetic training is {abs(gap):.0f} points {direction} (chance is {100 / n_classes:.0f}%).")


def learning_curve_sizes(max_per_class: int) -> list[int]:
    """1, 2, 4, ... up to and including `max_per_class`."""
    sizes, n = [], 1
    while n < max_per_class:
        sizes.append(n)
        n *= 2
    return sizes + [max_per_class]


@single_threaded
def learning_curve(syn_x: np.ndarray, syn_y: np.ndarray, nat_x: np.ndarray, nat_y: np.ndarray,
                   max_per_class: int, classifier: str = "probe", k: int = KNN_K, seed: int = SEED,
                   resamples: int = RESAMPLES) -> list[tuple[int, str, Estimate]]:
    """[(images per class, condition, accuracy on the held-out natural photos)] for synthetic-only and
    natural-only training. Natural sizes stop at the training pool's size."""
    _, pool = natural_split(nat_y, seed=seed)
    pool_max = int(np.bincount(nat_y[pool]).min())
    rows = []
    for n in learning_curve_sizes(max_per_class):
        for share, condition in ((1.0, "synthetic"), (0.0, "natural")):
            if condition == "natural" and n > pool_max:
                continue
            result = train_on(share, syn_x, syn_y, nat_x, nat_y, n, classifier, k, seed, resamples)
            rows.append((n, condition, result.accuracy))
    return rows


@single_threaded
def relative_diversity(synthetic: np.ndarray, natural: np.ndarray, seed: int = SEED) -> tuple[float, int]:
    """(Vendi of the synthetic set / Vendi of as many natural photos, n compared). Vendi grows with n, so the
    natural set is subsampled (seed) to the synthetic set's size; 1 = as diverse as the photos."""
    n = min(len(synthetic), len(natural))
    if n < 2:
        return float("nan"), n
    rng = np.random.default_rng(seed)
    nat = natural[np.sort(rng.choice(len(natural), n, replace=False))]
    syn = synthetic[:n]
    return vendi_score(syn) / vendi_score(nat), n
