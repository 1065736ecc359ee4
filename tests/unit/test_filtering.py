"""He et al.'s CLIP filter on constructed embeddings: the score equals a hand computation, the threshold keeps and
drops the images it should (strictly above 1/K), the lab's top-up and the reference script's selection rule."""

import math

import numpy as np
import pytest

from core.analysis.filtering import (
    LOGIT_SCALE,
    MIN_KEEP,
    class_texts,
    clip_filter,
    confidences,
    default_threshold,
    filter_reading,
    per_class_rows,
    reference_selection,
    same_size_random,
)

TEXTS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_texts_and_default_threshold_follow_the_script():
    assert class_texts(["golf_ball", "tench"]) == ["a photo of a golf ball.", "a photo of a tench."]
    assert default_threshold(10) == pytest.approx(0.1) and LOGIT_SCALE == 100.0
    with pytest.raises(ValueError):
        default_threshold(0)


def test_confidence_matches_a_hand_computation():
    image = np.array([[0.8, 0.6, 0.0]])  # cosines 0.8, 0.6, 0 with the three class texts
    by_hand = math.exp(10 * 0.6) / (math.exp(10 * 0.8) + math.exp(10 * 0.6) + math.exp(0.0))
    assert confidences(image, TEXTS, [1], logit_scale=10) == pytest.approx([by_hand], rel=1e-12)
    # Inputs need not be unit length: the filter compares directions (cosines), as CLIP does.
    assert confidences(5 * image, 3 * TEXTS, [1], logit_scale=10) == pytest.approx([by_hand], rel=1e-12)
    # At CLIP's scale 100 a clear image is near-certain and a confused one near zero, without overflow.
    conf = confidences(np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]), TEXTS, [0, 0])
    assert conf[0] == pytest.approx(1 / (1 + 2 * math.exp(-100)))
    assert conf[1] == pytest.approx(math.exp(60) / (math.exp(60) + math.exp(80) + 1), rel=1e-9)


def test_the_threshold_keeps_and_drops_the_known_images():
    images = np.array([[1.0, 0.1, 0.0],   # class 0, clearly class 0: kept
                       [0.1, 1.0, 0.0],   # labelled 0 but looks like class 1: dropped
                       [1.0, 1.0, 0.0],   # labelled 0, a tie with class 1: confidence 0.5 (not > 1/2 when K = 2)
                       [0.0, 1.0, 0.05],  # class 1, clear: kept
                       [0.0, 0.9, 1.0]])  # labelled 1, looks like class 2: dropped
    labels = np.array([0, 0, 0, 1, 1])
    conf = confidences(images, TEXTS, labels)
    result = clip_filter(conf, labels, default_threshold(3), min_keep=0)
    assert list(result.passed) == [True, False, True, True, False]  # 0.5 > 1/3
    strict = clip_filter(confidences(images, TEXTS[:2], labels), labels, default_threshold(2), min_keep=0)
    assert strict.confidence[2] == pytest.approx(0.5) and not strict.passed[2]  # the script keeps only "> thres"
    assert list(result.kept) == list(result.passed) and list(result.dropped) == [False, True, False, False, True]
    rows = per_class_rows(result, labels, ["a", "b"])
    assert rows[0]["generated"] == 3 and rows[0]["kept"] == 2 and rows[0]["filtered out"] == 1
    assert rows[1] == {**rows[1], "generated": 2, "above threshold": 1, "kept": 1, "topped up": 0}
    assert "3 of 5 synthetic images" in filter_reading(result, 3) and "2 filtered out" in filter_reading(result, 3)


def test_a_class_with_too_few_passing_is_topped_up_with_its_most_confident():
    conf = np.array([0.9, 0.2, 0.05, 0.3, 0.8, 0.7])
    labels = np.array([0, 0, 0, 1, 1, 1])
    result = clip_filter(conf, labels, threshold=0.5, min_keep=MIN_KEEP)
    assert list(result.passed) == [True, False, False, False, True, True]
    assert list(result.kept) == [True, True, False, False, True, True]  # class 0: its 2 best (0.9, 0.2)
    assert list(result.topped_up) == [False, True, False, False, False, False]
    with pytest.raises(ValueError, match="between 0 and 1"):
        clip_filter(conf, labels, threshold=1.5)


def test_reference_selection_is_the_scripts_rule():
    conf = np.array([0.9, 0.8, 0.1, 0.05, 0.6, 0.3, 0.2, 0.7])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # Class 0: only 2 pass 0.5 -> the 3 most confident; class 1: 2 pass (0.6, 0.7) < 3 -> the 3 most confident.
    assert sorted(reference_selection(conf, labels, 0.5, shot=3)) == [0, 1, 2, 4, 5, 7]
    # Enough pass: a random `shot` of those above the threshold, never one below it.
    picked = reference_selection(conf, labels, 0.15, shot=2, seed=1)
    assert len(picked) == 4 and all(conf[i] > 0.15 for i in picked)


def test_same_size_random_subset_matches_the_kept_counts():
    labels = np.repeat([0, 1, 2], 10)
    kept = np.zeros(30, bool)
    kept[[0, 1, 2, 10, 20, 21, 22, 23, 24, 25]] = True
    mask = same_size_random(labels, kept, seed=0)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [3, 1, 6]
    assert np.array_equal(mask, same_size_random(labels, kept, seed=0))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="one class index per image"):
        confidences(np.ones((2, 3)), TEXTS, [0])
    with pytest.raises(ValueError, match="0..2"):
        confidences(np.ones((1, 3)), TEXTS, [3])
