"""Images and texts -> L2-normalised CLIP embeddings, cached by (image sha256, CLIP key)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from .cache import Cache
from .config import decode_workers, embed_batch_size
from .models import ClipModel


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length. A zero or non-finite row is an error: it has no direction to compare."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} embedding(s) are zero or not finite (rows {np.flatnonzero(bad)[:10]}); "
                         f"they cannot be normalised. The model or its weights are broken for these inputs.")
    return x / norms


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even an RGB image


def encode_preprocessed(clip: ClipModel, batch) -> np.ndarray:
    """L2-normalised image embeddings of a batch already through `clip.preprocess` (a tensor N x 3 x H x W).
    Every image embedding in the lab goes through here."""
    import torch

    with torch.inference_mode():
        feats = clip.model.encode_image(batch.to(clip.device))
    return l2_normalise(feats.float().cpu().numpy())


def embed_pil(clip: ClipModel, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    import torch

    out = [encode_preprocessed(clip, torch.stack([clip.preprocess(_rgb(im)) for im in images[i : i + batch_size]]))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def embed_texts(clip: ClipModel, texts: Sequence[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        feats = clip.model.encode_text(clip.tokenizer(list(texts)).to(clip.device)).float().cpu().numpy()
    return l2_normalise(feats)


def _preprocessed_batches(clip: ClipModel, batches: list[list[Callable[[], Image.Image]]],
                          workers: int) -> Iterator:
    """Yield each batch of loaders as one preprocessed tensor.

    workers = 0: decode and preprocess in the calling thread, just before the batch is encoded. workers >= 1: that
    many threads decode + preprocess the next batch while the caller encodes this one (PIL's decoders and resampling
    release the GIL, and so does torch); at most two batches are in memory. Either way a loader's exception is
    raised for its batch, in order."""
    import torch

    def prepare(load: Callable[[], Image.Image]):
        return clip.preprocess(_rgb(load()))

    if workers <= 0:
        for loads in batches:
            yield torch.stack([prepare(load) for load in loads])
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip-decode") as pool:
        pending: list[Future] = [pool.submit(prepare, load) for load in batches[0]] if batches else []
        try:
            for i in range(len(batches)):
                current = pending
                pending = [pool.submit(prepare, load) for load in batches[i + 1]] if i + 1 < len(batches) else []
                yield torch.stack([f.result() for f in current])
        finally:
            for f in pending:  # stopped early (an error, or the caller gave up): skip the work not started
                f.cancel()


def embeddings_for(
    cache: Cache,
    clip_key: str,
    items: Sequence[tuple[str, Callable[[], Image.Image]]],
    get_clip: Callable[[], ClipModel],
    batch_size: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Embeddings of (sha256, load_image) items in order. Only uncached images are decoded and embedded, each
    distinct sha256 once; the CLIP model is requested (`get_clip()`) only when there is something to embed.

    Runs in batches (`batch_size`, default core.config.embed_batch_size), each committed to the cache as soon as it
    is encoded: a kill loses at most one batch of work. `workers` threads (default core.config.decode_workers; 0:
    none) decode and preprocess the next batch meanwhile."""
    shas = [sha for sha, _ in items]
    found = cache.get_embeddings(clip_key, shas)
    todo: dict[str, Callable[[], Image.Image]] = {}
    for sha, load in items:
        if sha not in found and sha not in todo:
            todo[sha] = load
    if todo:
        clip = get_clip()
        size = batch_size or embed_batch_size(clip.device)
        pending = list(todo.items())
        chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
        batches = _preprocessed_batches(clip, [[load for _, load in chunk] for chunk in chunks],
                                        decode_workers(clip.device) if workers is None else workers)
        with closing(batches):  # an error here stops the decoding threads at once
            for chunk, batch in zip(chunks, batches):
                new = dict(zip((sha for sha, _ in chunk), encode_preprocessed(clip, batch)))
                cache.put_embeddings(clip_key, new)  # commit per batch: a kill loses at most one batch of work
                found.update(new)
    return np.stack([found[sha] for sha in shas]) if shas else np.zeros((0, 0), np.float32)
