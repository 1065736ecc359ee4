"""CLIP geometry statistics: known answers on constructed embeddings; norms measured with the tiny CLIP."""

import numpy as np
import pytest

from core.analysis.geometry import (
    GEOMETRY_STATS,
    embedding_norms,
    offsets_reading,
    per_image_conformity,
    per_image_prompt_cosine,
    project,
    raw_image_norms,
    source_geometry,
    synthetic_offsets,
    text_norms,
)
from core.pipeline.embed import l2_normalise

D = 64


def unit(n, seed, d=D):
    return l2_normalise(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float64)


def around(centre, n, spread, seed):
    return l2_normalise(centre + spread * np.random.default_rng(seed).normal(size=(n, len(centre))))


def test_images_equal_to_their_prompt_have_gap_zero_and_cosines_one():
    texts = unit(3, 0)
    labels = np.repeat([0, 1, 2], 4)
    x = texts[labels]
    ests = {e.name: e for e in source_geometry(x[:4], labels[:4], texts, resamples=20)}
    assert list(ests) == list(GEOMETRY_STATS)
    assert ests["modality gap"].value == pytest.approx(0.0, abs=1e-12)
    assert ests["cos(image, own prompt)"].value == pytest.approx(1.0)
    assert ests["cos(prompt, centroid)"].value == pytest.approx(1.0)
    assert ests["conformity"].value == pytest.approx(1.0)
    assert ests["modality gap"].n == 4
    pooled = {e.name: e for e in source_geometry(x, labels, texts, resamples=20)}
    assert pooled["cos(image, own prompt)"].value == pytest.approx(1.0)
    assert pooled["conformity"].value == pytest.approx(1.0)
    # Pooled gap: |mean of images - mean of prompts| = 0 here too (4 images per prompt).
    assert pooled["modality gap"].value == pytest.approx(0.0, abs=1e-12)


def test_images_opposite_their_prompt_have_gap_two():
    t = unit(1, 1)
    ests = {e.name: e for e in source_geometry(-np.tile(t, (5, 1)), np.zeros(5, int), t, resamples=10)}
    assert ests["modality gap"].value == pytest.approx(2.0)
    assert ests["cos(image, own prompt)"].value == pytest.approx(-1.0)


def test_a_tighter_set_nearer_its_prompt_scores_higher_with_intervals():
    t = unit(1, 2)[0]
    tight = around(t, 40, 0.05, 3)
    loose = around(t, 40, 0.3, 4)
    a = {e.name: e for e in source_geometry(tight, np.zeros(40, int), t[None], resamples=100)}
    b = {e.name: e for e in source_geometry(loose, np.zeros(40, int), t[None], resamples=100)}
    assert a["conformity"].value > b["conformity"].value
    assert a["cos(image, own prompt)"].low > b["cos(image, own prompt)"].high
    assert a["modality gap"].value < b["modality gap"].value
    for e in a.values():
        assert e.low <= e.value <= e.high


def test_per_image_helpers():
    texts = unit(2, 5)
    x = unit(6, 6)
    labels = np.array([0, 0, 0, 1, 1, 1])
    cos = per_image_prompt_cosine(x, labels, texts)
    assert np.allclose(cos, [x[i] @ texts[labels[i]] for i in range(6)])
    conf = per_image_conformity(x, labels)
    centre = x[:3].mean(0)
    assert conf[0] == pytest.approx(x[0] @ centre / np.linalg.norm(centre))


def test_a_shared_synthetic_shift_is_one_direction():
    k, per = 5, 30
    nat_centres = unit(k, 7) * 3
    shift = unit(1, 8)[0] * 2
    nat = np.concatenate([around(c, per, 0.2, 10 + i) for i, c in enumerate(nat_centres)])
    syn = np.concatenate([around(c + shift, per, 0.2, 20 + i) for i, c in enumerate(nat_centres)])
    labels = np.repeat(np.arange(k), per)
    result = synthetic_offsets(syn, labels, nat, labels, k, resamples=50)
    assert result.mean_pairwise_cosine.low > result.random_level
    assert result.mean_pairwise_cosine.value > 0.5
    assert result.cosines.shape == (k, k) and np.allclose(np.diag(result.cosines), 1.0)
    assert all(e.value > 0 and e.low <= e.value <= e.high and e.n == 2 * per for e in result.norms)
    assert "share a direction" in offsets_reading(result)
    # Projected on the mean offset, every synthetic image lies beyond the natural ones on average.
    assert project(syn, result.direction).mean() > project(nat, result.direction).mean() + 0.1


def test_class_specific_shifts_share_no_direction():
    k, per = 6, 30
    rng_shifts = unit(k, 30) * 2
    nat_centres = unit(k, 31) * 3
    nat = np.concatenate([around(c, per, 0.2, 40 + i) for i, c in enumerate(nat_centres)])
    syn = np.concatenate([around(c + s, per, 0.2, 50 + i) for i, (c, s) in enumerate(zip(nat_centres, rng_shifts))])
    labels = np.repeat(np.arange(k), per)
    result = synthetic_offsets(syn, labels, nat, labels, k, resamples=50)
    # Six random shifts in 64 dimensions: their pairwise cosines average near 0, the whole interval under the
    # random level, so the reading is the "no shared direction" one (not merely "suggested").
    assert abs(result.mean_pairwise_cosine.value) < 0.1 and result.mean_pairwise_cosine.high < result.random_level
    assert offsets_reading(result).endswith(": no shared direction; each class is off in its own way.")


def test_one_class_has_no_pairwise_cosine():
    x = unit(10, 60)
    labels = np.zeros(10, int)
    result = synthetic_offsets(x[:5], labels[:5], x[5:], labels[5:], 1, resamples=10)
    assert np.isnan(result.mean_pairwise_cosine.value) and "One class" in offsets_reading(result)


def test_embedding_norms_match_the_raw_encoder_and_are_measured_once(tmp_path, tiny_clip, counted_clip):
    import torch
    from PIL import Image

    from core.pipeline.cache import Cache
    from core.pipeline.embed import embed_pil

    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8))
              for i in range(3)]
    raw = raw_image_norms(tiny_clip, images)
    with torch.inference_mode():
        feats = tiny_clip.model.encode_image(torch.stack([tiny_clip.preprocess(im) for im in images])).float().numpy()
    assert np.allclose(raw, np.linalg.norm(feats, axis=1), rtol=1e-5)
    assert np.allclose(embed_pil(tiny_clip, images) * raw[:, None], feats, atol=1e-4)  # normalised x norm = raw
    cache = Cache(tmp_path)
    get_clip = counted_clip

    shas = ["a" * 64, "b" * 64, "c" * 64]
    loaders = [lambda im=im: im for im in images]
    first = embedding_norms(cache, tiny_clip.key, shas, loaders, get_clip)
    second = embedding_norms(cache, tiny_clip.key, shas, loaders, get_clip)
    assert np.allclose(first, raw, rtol=1e-5) and np.array_equal(first, second) and get_clip.loads == 1
    t1 = text_norms(cache, tiny_clip.key, ["a photo of a tench"], get_clip)
    t2 = text_norms(cache, tiny_clip.key, ["a photo of a tench"], get_clip)
    assert t1.shape == (1,) and t1[0] > 0 and np.array_equal(t1, t2) and get_clip.loads == 2


def test_geometry_intervals_stay_in_range_and_say_when_clipped():
    # Two images on either side of their prompt: their centroid is near it (gap 1 - cos 0.3 = 0.045), but a
    # resample holding one image twice has gap ~0.3, so the normal interval reaches below 0 and is cut there.
    from core.analysis.geometry import GEOMETRY_RANGES

    texts = np.array([[1.0, 0.0, 0.0]])
    x = np.array([[np.cos(0.3), np.sin(0.3), 0.0], [np.cos(0.3), -np.sin(0.3), 0.0]])
    ests = source_geometry(x, np.zeros(2, int), texts, resamples=50)
    for e in ests:
        lo, hi = GEOMETRY_RANGES[e.name]
        assert lo <= e.low <= e.high <= hi, e
    gap = next(e for e in ests if e.name == "modality gap")
    assert gap.low == 0.0 and gap.clipped == "[0, 2]" and "interval clipped to [0, 2]" in gap.format()
