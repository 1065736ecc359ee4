"""The Diversity analysis as plain functions: image sets -> embeddings -> statistics -> map -> export.

Used by pages/diversity.py, the benchmarks and the tests alike.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from core.analysis.stats import STATISTICS, Estimate, curve_sizes, equal_n_estimate, statistic_curve
from core.pipeline.cache import THUMB_SIZE, Cache, CachedImage, data_uri
from core.pipeline.config import library_versions
from core.pipeline.embed import embeddings_for
from core.pipeline.natural import NaturalImage

PREVIEW_SIZE = 256  # the image grid


@dataclass
class ImageSet:
    """Images of one source with what every analysis needs: labels, content hashes and lazy loaders."""

    source: str  # "synthetic" | "natural"
    labels: list[str]
    shas: list[str]
    loaders: list[Callable[[], Image.Image]] = field(repr=False)
    files: list[Path] = field(repr=False)

    def __len__(self) -> int:
        return len(self.shas)


def _open_rgb(path: Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with Image.open(path) as im:
            return im.convert("RGB")

    return load


def synthetic_set(images: list[CachedImage]) -> ImageSet:
    # An image of an opened dataset (core.pipeline.dataset.DatasetImage) loads from its shard; its path spools on
    # demand.
    return ImageSet("synthetic", [f"seed {im.seed}" for im in images], [im.sha256 for im in images],
                    [getattr(im, "load", None) or _open_rgb(im.path) for im in images], [im.path for im in images])


def natural_set(images: list[NaturalImage], n: int | None = None, seed: int = 0) -> ImageSet:
    """At most `n` photos, drawn without replacement with a fixed seed (same photos every time)."""
    if n is not None and len(images) > n:
        pick = sorted(np.random.default_rng(seed).choice(len(images), n, replace=False))
        images = [images[i] for i in pick]
    return ImageSet("natural", [f"{im.class_name}/{im.path.name}" for im in images], [im.sha256 for im in images],
                    [im.load for im in images], [im.path for im in images])


def embed_set(cache: Cache, clip_key: str, images: ImageSet, get_clip,
              progress: Callable[[int, int], None] | None = None, lock=None) -> np.ndarray:
    files = images.files if len(images.files) == len(images) else None  # lets large sets decode in processes
    return embeddings_for(cache, clip_key, list(zip(images.shas, images.loaders)), get_clip, files=files,
                          progress=progress, lock=lock)


def thumbnails(cache: Cache, images: ImageSet, size: int = THUMB_SIZE) -> list[bytes]:
    return [cache.thumbnail(sha, size, load) for sha, load in zip(images.shas, images.loaders)]


def map_points(cache: Cache, sets: list[ImageSet], coords: np.ndarray,
               highlight: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Rows for the embedding map: one per image, in the order of `sets`, with its thumbnail as a data URI.
    `coords` come from one projection fitted on all sets together, so the sets share the same axes."""
    rows, i = [], 0
    for images in sets:
        for label, jpeg in zip(images.labels, thumbnails(cache, images)):
            rows.append({"x": float(coords[i, 0]), "y": float(coords[i, 1]), "source": images.source,
                         "label": label, "image": data_uri(jpeg), "highlighted": label in highlight})
            i += 1
    return pd.DataFrame(rows)


def equal_n_estimates(synthetic: np.ndarray, natural: np.ndarray,
                      name: str = "Vendi score") -> tuple[Estimate, Estimate]:
    """An n-dependent statistic (Vendi, effective rank) of both sets at the smaller set's n: the larger set is
    subsampled (core.analysis.stats.equal_n_estimate: the mean over random subsets, its note says so)."""
    n = min(len(synthetic), len(natural))
    return equal_n_estimate(synthetic, name, n), equal_n_estimate(natural, name, n)


def curve_rows(named: dict[str, np.ndarray], name: str = "Vendi score") -> pd.DataFrame:
    """The statistic against n for each set (mean and SD over random subsets of each size), up to the largest
    set's size: where the sets differ in size, read both curves at the same n."""
    largest = max((len(x) for x in named.values()), default=0)
    rows = [{"source": source, "n": n, "value": mean, "sd": sd}
            for source, x in named.items() for n, mean, sd in statistic_curve(x, name, curve_sizes(largest))]
    return pd.DataFrame(rows, columns=["source", "n", "value", "sd"])


def diversity_reading(synthetic: list[Estimate], natural: list[Estimate]) -> str:
    """One sentence comparing the Vendi scores of the two sets, honest about overlap. Vendi grows with n: sets of
    different sizes get no verdict (compare them with `equal_n_estimates`)."""
    syn = next(e for e in synthetic if e.name == "Vendi score")
    nat = next(e for e in natural if e.name == "Vendi score")
    head = f"Synthetic Vendi {syn.format(1)} (n={syn.n}) vs natural {nat.format(1)} (n={nat.n})"
    if not (np.isfinite(syn.value) and np.isfinite(nat.value)):
        return head + ": not enough images to compare."
    if syn.n != nat.n:
        return head + ": Vendi grows with n, so sets of different sizes cannot be compared; compare them at equal n."
    subsampled = next((e.note for e in (syn, nat) if "subsets" in e.note), "")
    if subsampled:
        head += f", at equal n ({'synthetic' if subsampled == syn.note else 'natural'}: {subsampled})"
    if syn.high < nat.low:
        verdict = "far less" if syn.value < 0.5 * nat.value else "less"
        return head + f": the synthetic set covers {verdict} than the natural photos."
    if syn.low > nat.high:
        return head + ": the synthetic set is more diverse than the natural photos."
    return head + ": the intervals overlap, no clear difference at this n."


def statistics_table(named: dict[str, list[Estimate]]) -> pd.DataFrame:
    meaning = {name: text for name, _, text in STATISTICS}
    return pd.DataFrame([{"statistic": e.name, "source": src, "value": e.value, "95% low": e.low,
                          "95% high": e.high, "n": e.n, "meaning": meaning.get(e.name, ""),
                          "note": "; ".join(filter(None, [e.note, e.clipped and f"interval clipped to {e.clipped}"]))}
                         for src, ests in named.items() for e in ests])


def export_zip(images: ImageSet, embeddings: np.ndarray, stats: dict[str, list[Estimate]], settings: dict,
               natural: tuple[ImageSet, np.ndarray] | None = None) -> bytes:
    """The whole run as a zip: PNGs, embeddings (.npy), a per-image CSV, statistics and settings (JSON)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # PNG/JPEG are compressed already
        table = []
        for label, sha, path in zip(images.labels, images.shas, images.files):
            name = f"images/{label.replace(' ', '_')}.png"
            z.write(path, name)
            table.append({"label": label, "sha256": sha, "file": name})
        per_image = pd.DataFrame(table)
        if len(embeddings) > 1:
            sim = embeddings @ embeddings.T
            per_image["mean cosine to the others"] = (sim.sum(1) - 1) / (len(sim) - 1)
        z.writestr("images.csv", per_image.to_csv(index=False))
        z.writestr("embeddings.npy", _npy(embeddings))
        if natural is not None:
            nat_set, nat_emb = natural
            # Labels (class/file name) and hashes only: no local paths leave the machine in a shared zip.
            natural_table = pd.DataFrame({"label": nat_set.labels, "sha256": nat_set.shas})
            z.writestr("natural_images.csv", natural_table.to_csv(index=False))
            z.writestr("natural_embeddings.npy", _npy(nat_emb))
        z.writestr("statistics.json", json.dumps({src: [asdict(e) for e in ests] for src, ests in stats.items()},
                                                 indent=2, default=float))
        z.writestr("settings.json", json.dumps({**settings, "library_versions": library_versions()}, indent=2,
                                               default=str))
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.getvalue()

