"""Where do synthetic and natural images sit in CLIP space, relative to each other and to their prompts?

All embeddings are L2-normalised (the lab stores only unit vectors), so distances lie in [0, 2] and cosines are
dot products. Definitions (the lab's; each page line says what it means):
- modality gap (Liang et al. 2022): the Euclidean distance between the centroid of the image embeddings and the
  centroid of the text embeddings (for one class: its one prompt);
- cos(image, own prompt): each image's cosine with its class's prompt, averaged;
- cos(prompt, centroid): the cosine between a class's prompt and the centroid of its images (averaged over
  classes for "all classes");
- conformity: each image's cosine with the centroid of its own set (same class, same source): how typical the
  image is of its set; high for sets whose images are all alike;
- synthetic offset of a class: centroid(synthetic) - centroid(natural); if the offsets of different classes point
  the same way (mean pairwise cosine well above the random-direction level ~ +-2/sqrt(d)), there is one shared
  "synthetic direction", and projecting every image on the mean offset separates the sources.
- embedding norms: the length of CLIP's output *before* normalisation, which the cache does not keep: measured
  here by running the image encoder again (`embedding_norms`), and kept in the cache's embeddings table under
  namespaced keys so it is measured once.
Intervals: the normal bootstrap (resampling images, within class and source; prompts fixed), clipped to each
statistic's range (GEOMETRY_RANGES; the Estimate says when).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.analysis.compare import single_threaded
from core.analysis.stats import BOOTSTRAP_RESAMPLES, Estimate, clip_to_range

GEOMETRY_STATS: dict[str, str] = {
    "modality gap": "distance from the images' centroid to the prompts' text embedding (0 = same point; unit "
                    "vectors, so at most 2). CLIP keeps images and texts in separate cones: this is never near 0.",
    "cos(image, own prompt)": "mean cosine of each image with its class's prompt: how well the images match the "
                              "text, image by image (CLIPScore = 2.5 x max(cos, 0)).",
    "cos(prompt, centroid)": "cosine between the prompt and the centroid of the images: how close the set as a "
                             "whole sits to the text.",
    "conformity": "mean cosine of each image with its own set's centroid: how alike and typical the images are "
                  "(1 = all the same).",
}


# What each statistic can be for unit vectors: a distance between points of the unit ball is in [0, 2]; cosines
# (and a mean of cosines) in [-1, 1]. Intervals are cut to these.
GEOMETRY_RANGES: dict[str, tuple[float, float]] = {
    "modality gap": (0.0, 2.0), "cos(image, own prompt)": (-1.0, 1.0), "cos(prompt, centroid)": (-1.0, 1.0),
    "conformity": (-1.0, 1.0), "offset norm": (0.0, 2.0), "mean pairwise cosine of offsets": (-1.0, 1.0)}


def _in_range(e: Estimate) -> Estimate:
    return clip_to_range(e, *GEOMETRY_RANGES[e.name])


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def class_centroids(x: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, d) means of each class's rows; NaN rows for classes without rows. One matrix product (the
    bootstrap calls this thousands of times)."""
    onehot = (labels[None, :] == np.arange(n_classes)[:, None]).astype(np.float64)
    counts = onehot.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (onehot @ np.asarray(x, dtype=np.float64)) / counts[:, None]


def per_image_conformity(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray | None = None) -> np.ndarray:
    """Each row's cosine with the centroid of its own class's rows (pass one source at a time)."""
    x = np.asarray(x, dtype=np.float64)
    cents = centroids if centroids is not None else class_centroids(x, labels, int(labels.max(initial=-1)) + 1)
    return (x @ _unit(np.nan_to_num(cents)).T)[np.arange(len(x)), labels]  # (n, K) then each row's own class


def per_image_prompt_cosine(x: np.ndarray, labels: np.ndarray, texts: np.ndarray) -> np.ndarray:
    sims = np.asarray(x, dtype=np.float64) @ np.asarray(texts, dtype=np.float64).T  # (n, K): cheaper than a gather
    return sims[np.arange(len(sims)), labels]


def _source_statistics(x: np.ndarray, labels: np.ndarray, texts: np.ndarray) -> dict[str, float]:
    present = np.unique(labels)
    cents = class_centroids(x, labels, len(texts))
    image_centroid = x.mean(axis=0)
    text_centroid = texts[present].mean(axis=0)
    prompt_centroid = np.mean([float(_unit(cents[c]) @ texts[c]) for c in present])
    return {"modality gap": float(np.linalg.norm(image_centroid - text_centroid)),
            "cos(image, own prompt)": float(per_image_prompt_cosine(x, labels, texts).mean()),
            "cos(prompt, centroid)": float(prompt_centroid),
            "conformity": float(per_image_conformity(x, labels, cents).mean())}


def _stratified(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bootstrap resample of row indices, within each class (every class keeps its size)."""
    return np.concatenate([rng.choice(rows, len(rows)) for rows in (np.flatnonzero(labels == c)
                                                                    for c in np.unique(labels))])


@single_threaded
def source_geometry(x: np.ndarray, labels: np.ndarray, texts: np.ndarray,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[Estimate]:
    """The GEOMETRY_STATS of one source's images (`labels`: class index per row into `texts`), pooled over the
    classes present: pass one class's rows for a per-class line. Normal bootstrap intervals, images resampled
    within their class."""
    from statistics import NormalDist

    x, texts = np.asarray(x, dtype=np.float64), np.asarray(texts, dtype=np.float64)
    n = len(x)
    if n == 0:
        return [Estimate(name, float("nan"), float("nan"), float("nan"), 0, "no images") for name in GEOMETRY_STATS]
    values = _source_statistics(x, labels, texts)
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in GEOMETRY_STATS}
    if n >= 2:
        for _ in range(resamples):
            pick = _stratified(labels, rng)
            for name, v in _source_statistics(x[pick], labels[pick], texts).items():
                draws[name].append(v)
    z = NormalDist().inv_cdf(0.975)
    out = []
    for name in GEOMETRY_STATS:
        sd = float(np.std(draws[name], ddof=1)) if len(draws[name]) > 1 else float("nan")
        out.append(_in_range(Estimate(name, values[name], values[name] - z * sd, values[name] + z * sd, n)))
    return out


# -- the synthetic offset ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Offsets:
    offsets: np.ndarray  # (K, d): centroid(synthetic) - centroid(natural), per class
    norms: list[Estimate]  # per class, with bootstrap intervals
    cosines: np.ndarray  # (K, K) cosine between the classes' offsets
    mean_pairwise_cosine: Estimate  # over class pairs; NaN with one class
    random_level: float  # 2 / sqrt(d): |cosine| of two random directions stays below this ~95% of the time
    direction: np.ndarray  # the unit mean offset


def _offsets(syn_x, syn_y, nat_x, nat_y, k):
    return class_centroids(syn_x, syn_y, k) - class_centroids(nat_x, nat_y, k)


def _mean_offdiag(cos: np.ndarray) -> float:
    k = len(cos)
    return float((cos.sum() - np.trace(cos)) / (k * (k - 1))) if k > 1 else float("nan")


@single_threaded
def synthetic_offsets(syn_x: np.ndarray, syn_y: np.ndarray, nat_x: np.ndarray, nat_y: np.ndarray,
                      n_classes: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Offsets:
    from statistics import NormalDist

    syn_x, nat_x = np.asarray(syn_x, np.float64), np.asarray(nat_x, np.float64)
    offsets = _offsets(syn_x, syn_y, nat_x, nat_y, n_classes)
    units = _unit(offsets)
    cosines = units @ units.T
    rng = np.random.default_rng(seed)
    norm_draws, mean_draws = [], []
    for _ in range(resamples):
        s, t = _stratified(syn_y, rng), _stratified(nat_y, rng)
        o = _offsets(syn_x[s], syn_y[s], nat_x[t], nat_y[t], n_classes)
        norm_draws.append(np.linalg.norm(o, axis=1))
        u = _unit(o)
        mean_draws.append(_mean_offdiag(u @ u.T))
    z = NormalDist().inv_cdf(0.975)
    norms = np.linalg.norm(offsets, axis=1)
    norm_sd = np.std(norm_draws, axis=0, ddof=1) if resamples > 1 else np.full(n_classes, np.nan)
    counts = np.bincount(syn_y, minlength=n_classes) + np.bincount(nat_y, minlength=n_classes)
    norm_estimates = [_in_range(Estimate("offset norm", float(v), float(v - z * sd), float(v + z * sd), int(c)))
                      for v, sd, c in zip(norms, norm_sd, counts)]
    mean_cos = _mean_offdiag(cosines)
    mean_sd = float(np.std(mean_draws, ddof=1)) if resamples > 1 and n_classes > 1 else float("nan")
    mean_estimate = _in_range(Estimate("mean pairwise cosine of offsets", mean_cos, mean_cos - z * mean_sd,
                                       mean_cos + z * mean_sd, len(syn_x) + len(nat_x),
                                       "" if n_classes > 1 else "needs at least 2 classes"))
    direction = _unit(offsets.mean(axis=0))
    return Offsets(offsets, norm_estimates, cosines, mean_estimate, 2.0 / np.sqrt(syn_x.shape[1]), direction)


def offsets_reading(result: Offsets) -> str:
    m = result.mean_pairwise_cosine
    if not np.isfinite(m.value):
        return "One class: there is no second offset to compare its direction with."
    head = (f"The classes' synthetic-minus-natural offsets have mean pairwise cosine {m.format(2)} "
            f"(random directions in this space: within +-{result.random_level:.2f})")
    if np.isfinite(m.low) and m.low > result.random_level:
        return head + ": they share a direction, one 'synthetic direction' across classes."
    if m.value > result.random_level:
        return head + ": a shared direction is suggested, but the interval reaches the random level."
    return head + ": no shared direction; each class is off in its own way."


def project(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64) @ np.asarray(direction, np.float64)


# -- norms before normalisation ------------------------------------------------------------------------------------

NORM_PREFIX, TEXT_NORM_PREFIX = "norm:", "textnorm:"
# Rows holding a length, not a unit vector (core.present.pack checks both).
NORM_PREFIXES = (NORM_PREFIX, TEXT_NORM_PREFIX)


def norm_cache_key(sha: str) -> str:
    """The embeddings table row for an image's pre-normalisation norm: namespaced so it never equals an image
    hash. Stored as a 1-element vector under the CLIP model's key."""
    return NORM_PREFIX + sha


def text_norm_cache_key(prompt: str) -> str:
    return TEXT_NORM_PREFIX + hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def is_norm_key(key: str) -> bool:
    return key.startswith(NORM_PREFIXES)


def raw_image_norms(clip, images: list, batch_size: int = 32) -> np.ndarray:
    """Lengths of CLIP's image features as the encoder returns them (core.pipeline.embed normalises them away)."""
    import torch

    out = []
    with torch.inference_mode(), clip.autocast():
        for i in range(0, len(images), batch_size):
            batch = torch.stack([clip.preprocess(im.convert("RGB")) for im in images[i:i + batch_size]])
            feats = clip.model.encode_image(batch.to(clip.device)).float()
            out.append(torch.linalg.vector_norm(feats, dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def raw_text_norms(clip, texts: list[str]) -> np.ndarray:
    import torch

    with torch.inference_mode(), clip.autocast():
        feats = clip.model.encode_text(clip.tokenizer(list(texts)).to(clip.device)).float()
    return torch.linalg.vector_norm(feats, dim=1).cpu().numpy().astype(np.float64)


def cached_norms(cache, clip_key: str, keys: list[str]) -> dict[str, float]:
    return {k: float(v[0]) for k, v in cache.get_embeddings(clip_key, keys).items()}


def embedding_norms(cache, clip_key: str, shas: list[str], loaders: list[Callable], get_clip: Callable,
                    progress: Callable[[float], None] | None = None, batch_size: int = 32) -> np.ndarray:
    """Pre-normalisation norms of images (by sha256, in order); only those not measured before are embedded,
    batch by batch, each batch committed to the cache at once."""
    keys = [norm_cache_key(s) for s in shas]
    found = cached_norms(cache, clip_key, keys)
    todo = [(k, load) for k, load in zip(keys, loaders) if k not in found]
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        norms = raw_image_norms(get_clip(), [load() for _, load in chunk], batch_size)
        new = {k: float(v) for (k, _), v in zip(chunk, norms)}
        cache.put_embeddings(clip_key, {k: np.array([v], np.float32) for k, v in new.items()})
        found.update(new)
        if progress:
            progress(min(1.0, (i + len(chunk)) / len(todo)))
    return np.array([found[k] for k in keys], dtype=np.float64)


def text_norms(cache, clip_key: str, prompts: list[str], get_clip: Callable) -> np.ndarray:
    keys = [text_norm_cache_key(p) for p in prompts]
    found = cached_norms(cache, clip_key, keys)
    todo = [(k, p) for k, p in zip(keys, prompts) if k not in found]
    if todo:
        norms = raw_text_norms(get_clip(), [p for _, p in todo])
        new = {k: float(v) for (k, _), v in zip(todo, norms)}
        cache.put_embeddings(clip_key, {k: np.array([v], np.float32) for k, v in new.items()})
        found.update(new)
    return np.array([found[k] for k in keys], dtype=np.float64)
