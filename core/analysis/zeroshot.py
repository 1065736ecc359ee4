"""Zero-shot CLIP, shared by the Ambiguity and Adherence pages: texts -> class vectors -> labels, margins, ranks,
CLIPScores, and the sense distribution's entropy, each with an interval: shares and top-1 rates with the Wilson
interval (core.analysis.stats.proportion_estimate), means with Student's t, the entropy with the normal bootstrap
(clipped to [0, ln k], and saying so).

Definitions (match the references):
- Class vector (CLIP's zero-shot recipe, Radford et al. 2021): embed the class name in each prompt template,
  L2-normalise each, average over the templates, L2-normalise the mean.
- Zero-shot label: the class whose vector has the highest cosine with the image; margin = top-1 minus top-2 cosine.
  (CLIP's softmax over 100 x cosine has the same argmax, so the label is the same.)
- CLIPScore (Hessel et al. 2021): 2.5 * max(cos(image, text), 0), per image. torchmetrics' CLIPScore reports
  100 * max(cos, 0): the same number times 40 (torchmetrics clamps the batch mean, not each image: equal per image,
  and for a batch whenever no cosine is negative).
- Entropy of the sense distribution: -sum p ln p, in nats (natural log): 0 = one sense only, ln k = k senses
  equally often.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# mean_estimate (Student's t) and proportion_estimate (Wilson) live in core.analysis.stats; imported here too because
# the zero-shot pages take them from this module.
from core.analysis.stats import Estimate, bootstrap_interval, clip_to_range, count_estimate, mean_estimate
from core.analysis.stats import proportion_estimate as proportion_estimate  # re-exported (redundant alias)
from core.pipeline.cache import Cache
from core.pipeline.embed import l2_normalise, text_embeddings

# A plain subset of the 80 ImageNet templates published with CLIP: varied enough to average out the wording,
# none that changes the subject (no "origami", "tattoo" or "video game").
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "itap of a {}.",
)

CLIPSCORE_WEIGHT = 2.5  # Hessel et al.'s w: rescales cosines, which CLIP keeps in a narrow band, towards [0, 1]
TORCHMETRICS_SCALE = 100.0


def ensemble(per_template: np.ndarray) -> np.ndarray:
    """(classes, templates, d) text embeddings -> (classes, d) class vectors: normalise, average, re-normalise."""
    per_template = np.asarray(per_template, dtype=np.float64)
    unit = per_template / np.linalg.norm(per_template, axis=-1, keepdims=True)
    return l2_normalise(unit.mean(axis=1)).astype(np.float32)


def template_texts(names: Sequence[str], templates: Sequence[str] = ZERO_SHOT_TEMPLATES) -> list[str]:
    """Every (name, template) text, class-major: the layout `ensemble` expects after a reshape."""
    return [t.format(name) for name in names for t in templates]


def class_vectors(cache: Cache, clip_key: str, names: Sequence[str], get_clip: Callable[[], object],
                  templates: Sequence[str] = ZERO_SHOT_TEMPLATES) -> np.ndarray:
    """One zero-shot vector per class name (the template ensemble)."""
    if not names:
        return np.zeros((0, 0), np.float32)
    flat = text_embeddings(cache, clip_key, template_texts(names, templates), get_clip)
    return ensemble(flat.reshape(len(names), len(templates), -1))


@dataclass(frozen=True)
class Assignment:
    """Zero-shot labels of n images among k classes."""

    similarities: np.ndarray  # (n, k) cosines
    labels: np.ndarray  # (n,) index of the most similar class
    margins: np.ndarray  # (n,) top-1 minus top-2 cosine (NaN with a single class): small = a near tie

    def __len__(self) -> int:
        return len(self.labels)


def _check_finite(images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64, refusing NaN/inf rows: argmax over a NaN row returns 0, so a broken embedding would silently
    count as class 0 (or as a top-1 success)."""
    images, classes = np.asarray(images, np.float64), np.asarray(classes, np.float64)
    if classes.ndim != 2 or len(classes) == 0:
        raise ValueError("Zero-shot assignment needs at least one class text to compare the images with.")
    for what, x in (("image", images), ("class-text", classes)):
        if x.ndim == 2 and len(x):
            bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
            if len(bad):
                raise ValueError(f"{len(bad)} {what} embedding(s) are NaN or infinite (rows {bad[:10].tolist()}): "
                                 f"re-embed them; a NaN cannot be given a label.")
    return images, classes


def assign(images: np.ndarray, classes: np.ndarray) -> Assignment:
    """Each image's nearest class by cosine, with its margin. Both inputs are L2-normalised rows."""
    images, classes = _check_finite(images, classes)
    sims = images @ classes.T if len(images) else np.zeros((0, len(classes)))
    labels = sims.argmax(axis=1) if len(images) else np.zeros(0, int)
    if len(classes) < 2:
        margins = np.full(len(images), np.nan)
    else:
        top2 = np.sort(sims, axis=1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
    return Assignment(sims, labels, margins)


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats (natural log) of a distribution; zero probabilities contribute nothing."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return max(0.0, float(-(p * np.log(p)).sum()))  # max: one sense gives -0.0, shown as "-0.00"


def distribution(labels: np.ndarray, k: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=int)
    return np.bincount(labels, minlength=k)[:k] / max(len(labels), 1)


def share_estimates(labels: np.ndarray, names: Sequence[str]) -> list[Estimate]:
    """Share of images per class (sense), each with its Wilson interval (core.analysis.stats.wilson_interval): a share
    of 0 of 20 still gets an upper bound, not a zero-width [0, 0]."""
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return [Estimate(n, float("nan"), float("nan"), float("nan"), 0, "no images") for n in names]
    return [count_estimate(name, int(np.sum(labels == j)), len(labels)) for j, name in enumerate(names)]


def entropy_estimate(labels: np.ndarray, k: int) -> Estimate:
    """Entropy (nats) of the label distribution over k classes, with its 95% normal bootstrap interval, clipped to
    [0, ln k] (and saying so when it was)."""
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return Estimate("sense entropy (nats)", float("nan"), float("nan"), float("nan"), 0, "no images")
    value, low, high = bootstrap_interval(labels, lambda a: entropy(distribution(a, k)))
    return clip_to_range(Estimate("sense entropy (nats)", value, low, high, len(labels)), 0.0, float(np.log(k)))


def clip_scores(images: np.ndarray, text: np.ndarray, weight: float = CLIPSCORE_WEIGHT) -> np.ndarray:
    """CLIPScore of each image against one text: weight * max(cos, 0). Inputs need not be normalised."""
    images = np.asarray(images, dtype=np.float64)
    text = np.asarray(text, dtype=np.float64).reshape(-1)
    cos = (images @ text) / (np.linalg.norm(images, axis=1) * np.linalg.norm(text))
    return weight * np.maximum(cos, 0.0)


def score_estimate(name: str, scores: np.ndarray, weight: float = CLIPSCORE_WEIGHT) -> Estimate:
    """Mean CLIPScore with its t interval, clipped to CLIPScore's range [0, weight]."""
    return mean_estimate(name, scores, bounds=(0.0, weight))



def ranks(images: np.ndarray, classes: np.ndarray, intended: int) -> np.ndarray:
    """Rank (1 = first) of class `intended` among the classes, for each image, by zero-shot cosine. A tie counts in
    the intended class's favour: rank = 1 + the number of classes strictly more similar."""
    images, classes = _check_finite(images, classes)  # a NaN row would otherwise rank 1: a false top-1 success
    if not 0 <= intended < len(classes):
        raise ValueError(f"The intended class index {intended} is not among the {len(classes)} classes.")
    sims = images @ classes.T
    return 1 + (sims > sims[:, [intended]]).sum(axis=1)
