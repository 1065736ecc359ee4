"""Images and texts -> L2-normalised CLIP embeddings, cached by (image sha256, CLIP key)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .cache import Cache
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


def embed_pil(clip: ClipModel, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            batch = torch.stack([clip.preprocess(im.convert("RGB")) for im in images[i : i + batch_size]])
            out.append(clip.model.encode_image(batch.to(clip.device)).float().cpu().numpy())
    return l2_normalise(np.concatenate(out)) if out else np.zeros((0, 0), np.float32)


def embed_texts(clip: ClipModel, texts: Sequence[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        feats = clip.model.encode_text(clip.tokenizer(list(texts)).to(clip.device)).float().cpu().numpy()
    return l2_normalise(feats)


def embeddings_for(
    cache: Cache,
    clip_key: str,
    items: Sequence[tuple[str, Callable[[], Image.Image]]],
    get_clip: Callable[[], ClipModel],
    batch_size: int = 32,
) -> np.ndarray:
    """Embeddings of (sha256, load_image) items in order. Only uncached images are decoded and embedded;
    the CLIP model is requested (`get_clip()`) only when there is something to embed."""
    shas = [sha for sha, _ in items]
    found = cache.get_embeddings(clip_key, shas)
    todo = [(sha, load) for sha, load in items if sha not in found]
    if todo:
        clip = get_clip()
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            vectors = embed_pil(clip, [load() for _, load in chunk], batch_size)
            new = dict(zip((sha for sha, _ in chunk), vectors))
            cache.put_embeddings(clip_key, new)  # commit per batch: a kill loses at most one batch of work
            found.update(new)
    return np.stack([found[sha] for sha in shas]) if shas else np.zeros((0, 0), np.float32)
