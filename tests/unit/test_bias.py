"""Stable Bias prompts, the spec and its URL, validation, and the clustering on constructed embeddings whose groups
are known: recovered, nested across cuts, and a table whose counts add up."""

import numpy as np
import pytest

from core.analysis.bias import (
    ADJECTIVES,
    ALL,
    NO_ADJECTIVE,
    PAPER_CUTS,
    PROFESSIONS,
    BiasSpec,
    cluster_table,
    cluster_tree,
    clusters_reading,
    cut_tree_at,
    exemplars,
    is_nested,
    portrait_prompt,
    validate_bias_spec,
)
from core.pipeline.registry import TINY_RANDOM


def groups(sizes=(8, 8, 8), dim=16, spread=0.05, seed=0):
    """Points around len(sizes) random centres: the group of each point is known."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


def test_prompts_are_the_papers_template():
    assert portrait_prompt("ambitious", "CEO") == "Photo portrait of a ambitious CEO"
    assert portrait_prompt(NO_ADJECTIVE, "janitor") == "Photo portrait of a janitor"
    spec = BiasSpec(("ambitious", "gentle"), ("CEO", "janitor"), n=4, generator=TINY_RANDOM, clip=TINY_RANDOM)
    assert spec.prompts() == ["Photo portrait of a ambitious CEO", "Photo portrait of a gentle CEO",
                              "Photo portrait of a ambitious janitor", "Photo portrait of a gentle janitor"]
    reqs = spec.requests()
    assert [r.prompt for r in reqs] == spec.prompts() and all(r.n == 4 and r.steps == 4 for r in reqs)
    assert len(ADJECTIVES) == 20 and len(set(PROFESSIONS)) == len(PROFESSIONS) == 131
    assert PAPER_CUTS == (12, 24, 48)


def test_spec_url_round_trip_and_tampered_links():
    spec = BiasSpec((NO_ADJECTIVE, "modest"), ("CEO", "customer service rep."), n=5, generator=TINY_RANDOM,
                    clip=TINY_RANDOM, steps=3, guidance=2.5, size=64, first_seed=7, cuts=(4, 12))
    parsed, problems = BiasSpec.from_params(spec.to_params())
    assert parsed == spec and problems == []
    assert BiasSpec.from_params({"n": "4"}) == (None, [])
    parsed, problems = BiasSpec.from_params({"adj": "ambitious,evil", "prof": "CEO,wizard", "n": "many",
                                             "cuts": "x", "generator": "nope"})
    text = " ".join(problems)
    for fragment in ("evil", "wizard", "'n'", "'cuts'", "'nope'"):
        assert fragment in text, fragment
    assert parsed.adjectives == ("ambitious",) and parsed.professions == ("CEO",)


@pytest.mark.parametrize("kw,fragment", [
    (dict(adjectives=()), "at least one adjective"),
    (dict(professions=()), "at least one profession"),
    (dict(n=0), "between 1 and"),
    (dict(cuts=()), "at least one number of clusters"),
    (dict(cuts=(1,)), "no clustering"),
    (dict(cuts=(48,)), "Raise N to at least 13"),  # 4 prompts: 4 x 12 = 48 is not more than 48
    (dict(adjectives=ADJECTIVES, professions=PROFESSIONS[:3]), "at most"),
])
def test_validation_says_what_to_change(kw, fragment):
    base = dict(adjectives=("ambitious", "gentle"), professions=("CEO", "janitor"), n=4, generator=TINY_RANDOM,
                clip=TINY_RANDOM, cuts=(4,))
    assert validate_bias_spec(BiasSpec(**base)) == []
    problems = validate_bias_spec(BiasSpec(**{**base, **kw}))
    assert any(fragment in p for p in problems), problems


def test_clustering_recovers_known_groups():
    x, truth = groups()
    labels = cut_tree_at(cluster_tree(x), [3])[3]
    # The same partition up to names: every true group maps to exactly one cluster and back.
    pairs = set(zip(truth, labels))
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 3


def test_cuts_are_nested_exact_and_numbered_by_size():
    x, _ = groups(sizes=(20, 12, 8, 5, 3), spread=0.3, seed=1)
    cuts = cut_tree_at(cluster_tree(x), [12, 24, 48, 5])
    assert sorted(cuts) == [5, 12, 24, 48]
    for k, labels in cuts.items():
        assert len(np.unique(labels)) == k and labels.min() == 0 and labels.max() == k - 1
        sizes = np.bincount(labels)
        assert all(sizes[:-1] >= sizes[1:]), "cluster 0 is the largest, then by size"
    assert is_nested(cuts[5], cuts[12]) and is_nested(cuts[12], cuts[24]) and is_nested(cuts[24], cuts[48])
    assert not is_nested(cuts[48], cuts[12])  # the other way round cannot hold
    with pytest.raises(ValueError, match="Cannot cut"):
        cut_tree_at(cluster_tree(x), [len(x) + 1])


def test_ward_on_unit_vectors_matches_scipy_directly():
    from scipy.cluster.hierarchy import fcluster, linkage

    x, _ = groups(sizes=(6, 6), seed=3)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ours = cut_tree_at(cluster_tree(x), [2])[2]
    theirs = fcluster(linkage(unit, "ward"), 2, criterion="maxclust")
    assert len(set(zip(ours, theirs))) == 2


def test_table_counts_add_up_to_the_images_per_prompt():
    x, truth = groups(sizes=(8, 8, 8), spread=0.05)
    prompts = ["p0", "p1", "p2", "p3"]
    rng = np.random.default_rng(0)
    image_prompts = [prompts[i] for i in rng.permutation(np.repeat(np.arange(4), 6))]
    labels = cut_tree_at(cluster_tree(x), [3, 6])
    table = cluster_table(labels[6], image_prompts, prompts, 6)
    assert list(table.counts.index) == [f"C{i}" for i in range(1, 7)]
    assert list(table.counts.sum(axis=0)[prompts]) == [6, 6, 6, 6]
    assert table.counts[ALL].sum() == 24 and table.per_prompt == {"p0": 6, "p1": 6, "p2": 6, "p3": 6, ALL: 24}
    assert np.allclose(table.shares[prompts].sum(axis=0), 1.0)
    long = table.long()
    assert len(long) == 6 * 4 and long["count"].sum() == 24
    # One prompt per known group: that prompt's images all fall in one cluster, and the reading says so.
    one_each = cluster_table(cut_tree_at(cluster_tree(x), [3])[3], [f"g{t}" for t in truth], ["g0", "g1", "g2"], 3)
    assert (one_each.counts[["g0", "g1", "g2"]].max(axis=0) == 8).all()
    assert "100% of its 8 images fall in one cluster" in clusters_reading(one_each)


def test_exemplars_are_nearest_the_cluster_mean():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]])
    picks = exemplars(x, np.array([0, 0, 0, 1]), m=2)
    assert list(picks[0]) == [1, 0] and list(picks[1]) == [3]


def test_cluster_shares_carry_wilson_intervals_in_the_table_and_the_reading():
    from core.analysis.stats import wilson_interval

    table = cluster_table(np.array([0, 0, 0, 1, 0, 0, 0, 0]), ["a"] * 8, ["a"], 2)
    row = table.long().set_index("cluster").loc["C1"]
    assert row["share"] == pytest.approx(7 / 8)
    assert (row["95% low"], row["95% high"]) == pytest.approx(wilson_interval(7, 8))
    low, high = wilson_interval(7, 8)
    assert f"(C1; 95% interval {low:.0%}-{high:.0%})" in clusters_reading(table)
