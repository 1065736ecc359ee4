"""The CLIP filter of He et al., "Is synthetic data from generative models ready for image recognition?" (ICLR 2023),
as their released script defines it (CVMI-Lab/SyntheticData, src/classifier-tuning/src/select_glide_ims_by_clip.py):

- one text per class, "a photo of a {class}." (the script's ImageNet prompt), embedded by CLIP and L2-normalised;
- logits = exp(logit_scale) * cos(image, text) over the task's whole label set; confidence = softmax(logits) at the
  image's own class ("CLIP zero-shot classification confidence");
- an image passes when confidence > threshold, with threshold = 1/K for K classes (strictly greater).

The script then keeps exactly `shot` (800) images per class: a random `shot` of those that pass, or the `shot` most
confident when fewer pass (`reference_selection`, implemented as written). The lab's pages keep every image that
passes (`clip_filter`), topping a class up to MIN_KEEP most-confident images only so that every class can still be
learned; the page says so. exp(logit_scale) is fixed at LOGIT_SCALE = 100, the value of the released OpenAI and LAION
CLIP models (the clamp of CLIP training), so cached embeddings can be scored without loading the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

TEXT_TEMPLATE = "a photo of a {}."
LOGIT_SCALE = 100.0
MIN_KEEP = 2  # a class needs images to be learned at all; 2: the lab's minimum per class elsewhere too
SEED = 0


def class_texts(names: Sequence[str]) -> list[str]:
    """The filter's text per class: 'a photo of a golf ball.' for the folder name 'golf_ball'."""
    return [TEXT_TEMPLATE.format(name.replace("_", " ")) for name in names]


def default_threshold(n_classes: int) -> float:
    """1/K, the script's `threshold = 1/class_num`: above it, CLIP prefers the image's class to a uniform guess."""
    if n_classes < 1:
        raise ValueError("The CLIP filter needs at least one class to score images against.")
    return 1.0 / n_classes


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def confidences(images: np.ndarray, texts: np.ndarray, labels: np.ndarray,
                logit_scale: float = LOGIT_SCALE) -> np.ndarray:
    """Per image, softmax over the K class texts of logit_scale x cosine, taken at the image's own class."""
    images, texts, labels = _unit(images), _unit(texts), np.asarray(labels, dtype=int)
    if texts.ndim != 2 or len(texts) == 0:
        raise ValueError("The CLIP filter needs the text embedding of every class (none given).")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels: give one class index per image.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(texts)):
        raise ValueError(f"Class indices must lie in 0..{len(texts) - 1}.")
    logits = logit_scale * images @ texts.T
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax: the same probabilities
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[np.arange(len(labels)), labels]


@dataclass(frozen=True)
class FilterResult:
    confidence: np.ndarray  # per image
    passed: np.ndarray  # bool: confidence > threshold
    kept: np.ndarray  # bool: passed, plus the top-up of classes with fewer than min_keep passing
    threshold: float

    @property
    def topped_up(self) -> np.ndarray:
        return self.kept & ~self.passed

    @property
    def dropped(self) -> np.ndarray:
        return ~self.kept


def clip_filter(confidence: np.ndarray, labels: np.ndarray, threshold: float,
                min_keep: int = MIN_KEEP) -> FilterResult:
    """Keep every image whose confidence is above `threshold`; a class with fewer than `min_keep` passing keeps its
    `min_keep` most confident (ties: the earlier image, i.e. the lower seed)."""
    confidence, labels = np.asarray(confidence, dtype=np.float64), np.asarray(labels, dtype=int)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"The threshold is a probability: choose it between 0 and 1 (got {threshold}).")
    passed = confidence > threshold
    kept = passed.copy()
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if passed[rows].sum() < min_keep:
            best = rows[np.argsort(-confidence[rows], kind="stable")[:min_keep]]
            kept[best] = True
    return FilterResult(confidence, passed, kept, float(threshold))


def reference_selection(confidence: np.ndarray, labels: np.ndarray, threshold: float, shot: int,
                        seed: int = SEED) -> np.ndarray:
    """The script's `select_by_clip_thres_RS` for every class: row indices of exactly `shot` images per class (fewer
    only when a class has fewer images): a random `shot` of those above the threshold when at least `shot` pass,
    else the `shot` most confident. (The script samples with Python's random; here numpy's, with `seed`.)"""
    confidence, labels = np.asarray(confidence, dtype=np.float64), np.asarray(labels, dtype=int)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        above = rows[confidence[rows] > threshold]
        if len(above) < shot:
            chosen.append(rows[np.argsort(-confidence[rows], kind="stable")[:shot]])
        else:
            chosen.append(np.sort(rng.choice(above, shot, replace=False)))
    return np.concatenate(chosen) if chosen else np.zeros(0, int)


def same_size_random(labels: np.ndarray, kept: np.ndarray, seed: int = SEED) -> np.ndarray:
    """A bool mask with, per class, as many images as `kept` has, drawn at random (seed): the control that tells
    'the filter chose better images' from 'there are fewer images'."""
    labels, kept = np.asarray(labels, dtype=int), np.asarray(kept, dtype=bool)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        mask[rng.choice(rows, int(kept[rows].sum()), replace=False)] = True
    return mask


def per_class_rows(result: FilterResult, labels: np.ndarray, names: Sequence[str]) -> list[dict]:
    labels = np.asarray(labels, dtype=int)
    rows = []
    for i, name in enumerate(names):
        r = labels == i
        rows.append({"class": name, "generated": int(r.sum()), "above threshold": int(result.passed[r].sum()),
                     "kept": int(result.kept[r].sum()), "topped up": int(result.topped_up[r].sum()),
                     "filtered out": int(result.dropped[r].sum()),
                     "median confidence": float(np.median(result.confidence[r])) if r.any() else float("nan")})
    return rows


def filter_reading(result: FilterResult, n_classes: int) -> str:
    n, kept = len(result.kept), int(result.kept.sum())
    passed = int(result.passed.sum())
    head = (f"{passed} of {n} synthetic images ({100 * passed / max(n, 1):.0f}%) have a CLIP zero-shot confidence "
            f"above {result.threshold:.3g} for their own class among {n_classes}")
    extra = f"; {kept - passed} more kept to give every class at least {MIN_KEEP}" if kept > passed else ""
    return head + extra + f": {n - kept} filtered out."
