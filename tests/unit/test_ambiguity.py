"""Ambiguity analysis: zero-shot sense assignment, shares, entropy, calibration and clusters.

Semantics are tested with constructed embeddings whose answer is known (random-weight CLIP makes zero-shot results
chance); the mechanics with the tiny-random CLIP and the shared ImageNet photos.
"""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from core.analysis.ambiguity import (
    AMBIGUITY_PRESETS,
    MAX_VARIANTS,
    VARIANT_STYLES,
    AmbiguityRequest,
    Sense,
    calibrate,
    calibration_set,
    cluster_images,
    entropy_rows,
    format_senses,
    grouped_by_sense,
    make_variants,
    parse_senses,
    photo_labels,
    preset_request,
    senses_reading,
    share_rows,
    validate_ambiguity,
    validate_senses,
)
from core.analysis.zeroshot import (
    ZERO_SHOT_TEMPLATES,
    Assignment,
    assign,
    class_vectors,
    distribution,
    ensemble,
    entropy,
    entropy_estimate,
    share_estimates,
)
from core.pipeline.cache import Cache
from core.pipeline.embed import embed_texts, text_embeddings
from core.present.charts import SHARES_TITLE, variant_shares_chart


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted(k: int, per: int, d: int = 64, noise: float = 0.05, seed: int = 0):
    """k orthonormal centroids and `per` noisy unit vectors around each: (images, centroids, true labels)."""
    rng = np.random.default_rng(seed)
    centroids = np.linalg.qr(rng.normal(size=(d, k)))[0].T  # k orthonormal rows
    images = unit(np.repeat(centroids, per, axis=0) + noise * rng.normal(size=(k * per, d)))
    return images, centroids, np.repeat(np.arange(k), per)


# -- assignment, shares, entropy ---------------------------------------------------------------------------------------
def test_text_vectors_equal_to_planted_centroids_assign_every_image_correctly():
    images, centroids, truth = planted(3, 8)
    a = assign(images, centroids)
    assert np.array_equal(a.labels, truth)
    assert (a.margins > 0).all() and a.similarities.shape == (24, 3)
    shares = share_rows(make_variants("x", [Sense("a"), Sense("b"), Sense("c")]), [a], ["a", "b", "c"])
    assert shares["share"].tolist() == pytest.approx([1 / 3] * 3)


def test_margin_is_top1_minus_top2_cosine():
    images = unit(np.array([[1.0, 0.2, 0.0], [0.1, 1.0, 0.9]]))
    texts = np.eye(3)
    a = assign(images, texts)
    assert a.labels.tolist() == [0, 1]
    assert a.margins[0] == pytest.approx(images[0, 0] - images[0, 1])
    assert a.margins[1] == pytest.approx(images[1, 1] - images[1, 2])
    assert np.isnan(assign(images, texts[:1]).margins).all()  # one class: no runner-up


def test_two_equal_clusters_have_entropy_ln2_and_one_sense_has_zero():
    images, centroids, _ = planted(2, 10)
    e = entropy_estimate(assign(images, centroids).labels, 2)
    assert e.value == pytest.approx(math.log(2)) and e.n == 20
    assert 0 <= e.low <= e.value <= e.high <= math.log(2)
    one = entropy_estimate(np.zeros(7, int), 3)
    assert one.value == 0.0 and one.format(2) == "0.00 [0.00, 0.00]"  # not "-0.00"
    assert entropy([0.25] * 4) == pytest.approx(math.log(4))  # natural log: nats
    assert distribution(np.array([0, 0, 2]), 3).tolist() == pytest.approx([2 / 3, 0, 1 / 3])


def test_share_intervals_stay_in_the_unit_interval_and_cover_the_estimate():
    labels = np.array([0] * 9 + [1])
    shares = share_estimates(labels, ["bird", "machine"])
    assert [s.value for s in shares] == pytest.approx([0.9, 0.1])
    for s in shares:
        assert 0.0 <= s.low <= s.value <= s.high <= 1.0 and s.n == 10
    assert all(np.isnan(s.value) for s in share_estimates(np.zeros(0, int), ["a", "b"]))


def test_images_grouped_by_sense_least_confident_first():
    a = Assignment(np.zeros((5, 2)), np.array([1, 0, 1, 1, 0]), np.array([0.3, 0.2, 0.01, 0.1, 0.05]))
    assert grouped_by_sense(a, ["bird", "machine"]) == [("machine", [2, 3, 0]), ("bird", [4, 1])]


def test_reading_names_the_dominant_sense_and_the_entropy_scale():
    images, centroids, _ = planted(2, 6)
    text = senses_reading("a photo of a crane", assign(images[:6], centroids), ["bird", "machine"])
    assert "6 of 6 images to 'bird'" in text and "nats" in text and "ln 2 = 0.69" in text and "rule of three" in text
    mixed = senses_reading("a photo of a crane", assign(images, centroids), ["bird", "machine"])
    assert "No sense clearly dominates" in mixed


# -- the template ensemble and the text cache (tiny-random CLIP) -------------------------------------------------------
def test_ensemble_is_normalise_average_renormalise():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(3, 5, 16)) * rng.uniform(0.5, 3, size=(3, 5, 1))
    expected = np.stack([unit(unit(raw[c]).mean(axis=0)) for c in range(3)])
    assert np.allclose(ensemble(raw), expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(ensemble(raw), axis=1), 1.0, atol=1e-6)


def test_class_vectors_follow_clips_recipe_and_texts_are_cached(tmp_path, tiny_clip, counted_clip):
    cache = Cache(tmp_path)
    get_clip = counted_clip

    names = ["crane bird", "construction crane"]
    first = class_vectors(cache, tiny_clip.key, names, get_clip)
    manual = np.stack([unit(unit(embed_texts(tiny_clip, [t.format(n) for t in ZERO_SHOT_TEMPLATES])).mean(0))
                       for n in names])
    assert first.shape == (2, manual.shape[1]) and np.allclose(first, manual, atol=1e-5)
    again = class_vectors(cache, tiny_clip.key, names, get_clip)
    assert np.array_equal(first, again) and get_clip.loads == 1  # the second call read every text from the disk cache
    single = text_embeddings(cache, tiny_clip.key, ["a photo of a crane"], get_clip)
    assert np.allclose(single, embed_texts(tiny_clip, ["a photo of a crane"]), atol=1e-6)


# -- senses, presets, variants, the URL -------------------------------------------------------------------------------
def test_senses_text_round_trips_and_problems_teach():
    senses = list(AMBIGUITY_PRESETS["cardigan"].senses) + [Sense("plain")]
    parsed, problems = parse_senses(format_senses(senses))
    assert parsed == senses and not problems
    parsed, problems = parse_senses("# a comment\n\n | no name\nbird | a | b | c | d\nok")
    assert [s.name for s in parsed] == ["ok"]
    assert any("no name" in p for p in problems) and any("at most 4" in p for p in problems)
    assert "at least two senses" in validate_senses([Sense("bird")])[0]
    assert any("same name" in p for p in validate_senses([Sense("bird"), Sense("Bird", "x")]))
    assert any("same text" in p for p in validate_senses([Sense("a", "crane"), Sense("b", "crane")]))
    assert Sense("bird").text == "bird" and Sense("bird", "crane bird").gloss == "crane bird"


def test_presets_are_data_that_validate():
    wanted = {"crane", "bass", "jaguar", "mouse", "bat", "apple", "kite", "boxer", "cardigan", "drake", "tiger-cat",
              "sunglass"}
    assert wanted <= set(AMBIGUITY_PRESETS)
    for key, preset in AMBIGUITY_PRESETS.items():
        assert not validate_senses(preset.senses), key
        req = AmbiguityRequest(preset_request(key).run, preset.senses, tuple(VARIANT_STYLES))
        assert len(req.variants()) <= MAX_VARIANTS, key
        for sense in preset.senses:
            assert all(re.fullmatch(r"n\d{8}", label) for label in sense.photo_labels), (key, sense)


def test_variants_put_the_bare_prompt_first_and_drop_duplicates():
    senses = [Sense("bird", definition="a tall wading bird"), Sense("machine")]
    variants = make_variants("a photo of a crane", senses, ["the-sense", "parenthesis", "definition"],
                             ["a crane standing in a marsh", "a photo of a crane, the bird", "  "])
    assert [v.prompt for v in variants] == [
        "a photo of a crane", "a photo of a crane, the bird", "a photo of a crane, the machine",
        "a photo of a crane (bird)", "a photo of a crane (machine)", "a photo of a crane, a tall wading bird",
        "a photo of a crane, machine", "a crane standing in a marsh"]
    assert variants[0].style == "bare" and variants[1].sense == "bird" and variants[-1].style == "custom"


def test_request_round_trips_through_the_url_and_each_variant_is_a_normal_run():
    req = preset_request("crane", n=4, generator="tiny-random", clip="tiny-random")
    req = AmbiguityRequest(req.run, req.senses, ("the-sense", "parenthesis"), ("a crane at dusk",), "crane")
    back, problems = AmbiguityRequest.from_params(req.to_params())
    assert back == req and not problems
    runs = req.run_requests()
    assert [r.prompt for r in runs] == [v.prompt for v in req.variants()]
    assert {(r.n, r.first_seed, r.generator, r.clip) for r in runs} == {(4, 0, "tiny-random", "tiny-random")}
    assert not validate_ambiguity(req)


def test_tampered_url_gives_messages_and_falls_back_to_the_preset():
    req, problems = AmbiguityRequest.from_params({"prompt": "a bat", "n": "many", "preset": "nope",
                                                  "styles": "the-sense,shouting", "senses": "| nameless"})
    assert req is not None and req.styles == ("the-sense",)
    text = " ".join(problems)
    assert "'n'" in text and "nope" in text and "shouting" in text and "no name" in text
    assert AmbiguityRequest.from_params({"n": "4"}) == (None, [])
    default, _ = AmbiguityRequest.from_params({"prompt": "a photo of a crane"})
    assert default.senses == AMBIGUITY_PRESETS["crane"].senses
    too_many = AmbiguityRequest(default.run, default.senses, tuple(VARIANT_STYLES),
                                tuple(f"custom {i}" for i in range(10)))
    assert "more than 12" in " ".join(validate_ambiguity(too_many))


# -- calibration on labelled natural photos ----------------------------------------------------------------------------
@pytest.mark.parametrize("photos", ["ambiguous_dir", pytest.param("real_ambiguous_dir", marks=pytest.mark.real_photos)])
def test_calibration_reads_imagenet_style_photos_by_wordnet_id(photos, request):
    AMBIGUOUS = request.getfixturevalue(photos)  # generated files, and the real ImageNet photos where present
    labels = photo_labels(AMBIGUOUS)
    assert "n02012849" in labels and "n03126707" in labels  # two 'crane' files, told apart by WordNet id
    cal = calibration_set(AMBIGUOUS, AMBIGUITY_PRESETS["crane"].senses)
    assert cal.truth.tolist() == [0, 1] and cal.counts == {"bird": 1, "construction machine": 1}
    assert [p.name for p in cal.images.files] == ["n02012849_crane.JPEG", "n03126707_crane.JPEG"]
    cardigan = calibration_set(AMBIGUOUS, AMBIGUITY_PRESETS["cardigan"].senses)
    assert [p.name for p in cardigan.images.files] == ["n02113186_Cardigan.JPEG", "n02963159_cardigan.JPEG"]
    kite = calibration_set(AMBIGUOUS, AMBIGUITY_PRESETS["kite"].senses)
    assert kite.counts == {"bird": 1, "toy": 0}  # ImageNet has no toy kites: that sense cannot be checked


def test_calibration_reads_class_folders_and_refuses_labels_claimed_twice(tmp_path, ambiguous_dir):
    for label, source in (("birds", "n02012849_crane.JPEG"), ("machines", "n03126707_crane.JPEG")):
        (tmp_path / label).mkdir()
        shutil.copy(ambiguous_dir / source, tmp_path / label / "photo.jpg")
    senses = [Sense("bird", photo_labels=("birds",)), Sense("machine", photo_labels=("machines", "birds"))]
    cal = calibration_set(tmp_path, senses)
    assert cal.counts == {"bird": 0, "machine": 1} and len(cal.notes) == 1 and "birds" in cal.notes[0]
    with pytest.raises(FileNotFoundError):
        photo_labels(tmp_path / "missing")


def test_calibrate_counts_correct_photos_per_sense():
    images, centroids, truth = planted(2, 3)
    wrong = truth.copy()
    wrong[0] = 1  # one bird photo claimed to be a machine
    result = calibrate(assign(images, centroids), wrong, [f"p{i}" for i in range(6)], ["bird", "machine"])
    assert result.accuracy.value == pytest.approx(5 / 6) and result.accuracy.n == 6
    assert result.per_sense["correct"].tolist() == [2, 3] and result.per_sense["photos"].tolist() == [2, 4]
    assert result.per_photo["correct"].tolist() == [False, True, True, True, True, True]


def test_calibration_end_to_end_with_tiny_clip(tmp_path, tiny_clip, ambiguous_dir):
    from core.analysis.diversity import embed_set

    cache = Cache(tmp_path)
    senses = AMBIGUITY_PRESETS["sunglass"].senses
    cal = calibration_set(ambiguous_dir, senses)
    vectors = class_vectors(cache, tiny_clip.key, [s.text for s in senses], lambda: tiny_clip)
    emb = embed_set(cache, tiny_clip.key, cal.images, lambda: tiny_clip)
    result = calibrate(assign(emb, vectors), cal.truth, cal.images.labels, [s.name for s in senses])
    # Random weights put the answer at chance, so check the bookkeeping: the nearest sense text by cosine,
    # computed here from the embeddings, decides each photo, and the accuracy counts those decisions.
    nearest = (emb @ vectors.T).argmax(axis=1)
    assert cal.truth.tolist() == [0, 1] and result.accuracy.n == 2
    assert result.per_photo["correct"].tolist() == (nearest == cal.truth).tolist()
    assert result.accuracy.value == pytest.approx((nearest == cal.truth).mean())


# -- clusters --------------------------------------------------------------------------------------------------------
def test_silhouette_finds_the_planted_clusters_and_names_them_by_the_nearest_sense():
    images, centroids, truth = planted(3, 6, noise=0.1)
    c = cluster_images(images, centroids, ["bird", "machine", "origami"])
    assert c.k == 3 and c.chosen_by == "silhouette" and set(c.silhouettes) == {2, 3, 4, 5, 6}
    assert sorted(cl.nearest_sense for cl in c.clusters) == ["bird", "machine", "origami"]
    for cl in c.clusters:
        assert len(set(truth[list(cl.members)])) == 1 and cl.sense_similarity > 0.9


def test_a_reading_nobody_listed_is_a_cluster_far_from_every_sense():
    images, centroids, _ = planted(3, 6)
    c = cluster_images(images, centroids[:2], ["bird", "machine"])  # the third reading is not listed
    weakest = min(c.clusters, key=lambda cl: cl.sense_similarity)
    assert c.k == 3 and weakest.sense_similarity < 0.3


def test_clusters_with_a_user_k_and_degenerate_sets():
    images, centroids, _ = planted(2, 5)
    assert cluster_images(images, centroids, ["a", "b"], k=4).k == 4
    assert cluster_images(images[:2], centroids, ["a", "b"]).chosen_by == "fewer than 3 images"
    same = np.repeat(images[:1], 5, axis=0)
    one = cluster_images(same, centroids, ["a", "b"])
    assert one.k == 1 and one.chosen_by == "all images are identical" and len(one.clusters[0].members) == 5
    assert cluster_images(np.zeros((0, 64)), centroids, ["a", "b"]).k == 0


# -- the chart -------------------------------------------------------------------------------------------------------
def test_variant_chart_has_one_row_per_variant_and_intervals():
    images, centroids, _ = planted(2, 4)
    variants = make_variants("a photo of a crane", [Sense("bird"), Sense("machine")])
    assignments = [assign(images, centroids), assign(images[:4], centroids), assign(images[4:], centroids)]
    rows = share_rows(variants, assignments, ["bird", "machine"])
    assert len(rows) == 6 and rows.groupby("variant")["share"].sum().tolist() == pytest.approx([1, 1, 1])
    spec = variant_shares_chart(rows).to_dict()
    assert spec["title"] == SHARES_TITLE and json.dumps(spec).count('"yOffset"') >= 1
    assert [m["mark"]["type"] for m in spec["layer"]] == ["bar", "rule", "point"]
    ent = entropy_rows(variants, assignments, 2)
    assert ent["entropy (nats)"].tolist() == pytest.approx([math.log(2), 0.0, 0.0])


def test_sense_shares_cover_the_true_share_in_seeded_simulations():
    # Known truth: labels drawn with fixed sense probabilities; the share of each sense is a proportion.
    rng = np.random.default_rng(7)
    probabilities = np.array([0.05, 0.1, 0.3, 0.55])
    for n in (20, 50):
        hits = np.zeros(4)
        for _ in range(1000):
            shares = share_estimates(rng.choice(4, n, p=probabilities), ["a", "b", "c", "d"])
            hits += [s.low <= p <= s.high for s, p in zip(shares, probabilities)]
        assert (hits / 1000 >= 0.93).all(), (n, hits / 1000)


def test_a_zero_share_still_has_an_upper_bound():
    none, every = share_estimates(np.ones(20, int), ["bird", "machine"])
    assert none.value == 0 and none.low == 0 and none.high > 0.1
    assert every.value == 1 and every.high == 1 and every.low < 0.9


def test_a_nan_image_is_refused_not_labelled_class_zero():
    images = unit(np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0]]))
    images[1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite \(rows \[1\]\)"):
        assign(images, np.eye(3))
