"""Images and texts -> L2-normalised CLIP embeddings, cached by (image sha256, CLIP key)."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.pipeline.cache import Cache
from core.pipeline.config import decode_processes, decode_workers, embed_batch_size
from core.pipeline.models import ClipModel


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

    with torch.inference_mode(), clip.autocast():
        feats = clip.model.encode_image(batch.to(clip.device, non_blocking=True))
    return l2_normalise(feats.float().cpu().numpy())


def embed_pil(clip: ClipModel, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    import torch

    out = [encode_preprocessed(clip, torch.stack([clip.preprocess(_rgb(im)) for im in images[i : i + batch_size]]))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def embed_texts(clip: ClipModel, texts: Sequence[str]) -> np.ndarray:
    import torch

    with torch.inference_mode(), clip.autocast():
        feats = clip.model.encode_text(clip.tokenizer(list(texts)).to(clip.device)).float().cpu().numpy()
    return l2_normalise(feats)


# -- prompt and class texts, kept in the disk cache (the one home of a text's embedding) -----------------------------

def text_key(text: str) -> str:
    """The cache key of a text's embedding: a hash of the text, prefixed so it can never equal an image's sha256."""
    return hashlib.sha256(("clip-text\0" + text).encode("utf-8")).hexdigest()


def legacy_text_key(text: str) -> str:
    """The key the Synthetic vs natural pages used before text_key was the only one ('text:' + sha256 of the
    prompt): still read, so a cache or pack written then reopens without CLIP; never written."""
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_embeddings(cache: Cache, clip_key: str, texts: Sequence[str],
                    get_clip: Callable[[], object]) -> np.ndarray:
    """L2-normalised CLIP text embeddings in order. Stored in the cache's embeddings table under text_key(text),
    like images under their sha256: reopening an analysis needs no CLIP model, and `get_clip()` is called only
    when a text is new (found neither under text_key nor under legacy_text_key)."""
    texts = list(texts)
    keys = [text_key(t) for t in texts]
    found = cache.get_embeddings(clip_key, keys)
    missing = [t for t, k in zip(texts, keys) if k not in found]
    if missing:
        old = cache.get_embeddings(clip_key, [legacy_text_key(t) for t in missing])
        found.update({text_key(t): old[legacy_text_key(t)] for t in missing if legacy_text_key(t) in old})
    todo = sorted({t for t, k in zip(texts, keys) if k not in found})
    if todo:
        vectors = embed_texts(get_clip(), todo)
        new = {text_key(t): v for t, v in zip(todo, vectors)}
        cache.put_embeddings(clip_key, new)
        found.update(new)
    return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


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


# -- decoding in processes: photos -> CLIP's input pixels without the GIL --------------------------------------------
# On a GPU, CLIP encodes ViT-B-32 faster than Python threads decode JPEGs (they serialise on the GIL between PIL
# calls). Worker processes decode, resize and crop to CLIP's input size and send back 224 x 224 uint8 pixels; the
# GPU does the float conversion and normalisation. The result equals clip.preprocess bit for bit (tested).

@dataclass(frozen=True)
class PixelRecipe:
    """What clip.preprocess does to a PIL image, as plain values a worker process can replay with PIL alone."""

    resize: int  # the short side, bicubic (torchvision Resize with an int size)
    crop: tuple[int, int]  # (height, width), centred
    mean: tuple[float, ...]
    std: tuple[float, ...]


def pixel_recipe(preprocess) -> PixelRecipe | None:
    """`preprocess` as a PixelRecipe when it is open_clip's usual Resize -> CenterCrop -> (RGB) -> ToTensor ->
    Normalize; None for anything else (those models decode in threads, through preprocess itself)."""
    from torchvision import transforms as T

    steps = list(getattr(preprocess, "transforms", []))
    names = [type(t).__name__ for t in steps]
    if len(steps) != 5 or names[2:4] not in (["MaybeConvertMode", "MaybeToTensor"], ["function", "ToTensor"]):
        return None
    resize, crop, _, _, norm = steps
    if not (isinstance(resize, T.Resize) and isinstance(resize.size, int) and resize.max_size is None
            and resize.interpolation == T.InterpolationMode.BICUBIC and isinstance(crop, T.CenterCrop)
            and isinstance(norm, T.Normalize)):
        return None
    return PixelRecipe(resize.size, tuple(crop.size), tuple(norm.mean), tuple(norm.std))


def clip_pixels(path: str, recipe: PixelRecipe) -> np.ndarray:
    """A photo file decoded (core.pipeline.natural.open_rgb) and resized + centre-cropped as torchvision does on a PIL
    image: uint8, crop height x crop width x 3. Runs in worker processes: PIL and numpy only."""
    from core.pipeline.natural import open_rgb

    im = open_rgb(Path(path))
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = recipe.resize, int(recipe.resize * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != (w, h):  # torchvision returns the image untouched when it already has the size
        im = im.resize(size, Image.BICUBIC)
    ch, cw = recipe.crop
    top, left = int(round((size[1] - ch) / 2.0)), int(round((size[0] - cw) / 2.0))
    return np.array(im.crop((left, top, left + cw, top + ch)), dtype=np.uint8)


def normalised(pixels: np.ndarray, recipe: PixelRecipe, device: str):
    """N x H x W x 3 uint8 -> N x 3 x H x W float32 on `device`, as ToTensor + Normalize compute it."""
    import torch

    x = torch.from_numpy(pixels).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div(255)
    mean = torch.as_tensor(recipe.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.as_tensor(recipe.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


_POOL: dict[str, object] = {}  # the decoding processes: started once per process, reused by every call
_POOL_LOCK = threading.Lock()


def decode_pool(processes: int):
    """The process's pool of `processes` spawned decoders (a pool of another size replaces it). Spawning costs
    about a second, so the pool is kept for the process's life: a server decodes each page's photos warm."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _POOL_LOCK:
        pool = _POOL.get("pool")
        if pool is None or _POOL.get("size") != processes:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            # spawn, not fork: the parent may hold CUDA and a web server's threads, which a child must not inherit.
            pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
            with _plain_main():  # every worker starts now, while __main__ is a bare module
                for started in [pool.submit(_started, 0.2) for _ in range(processes)]:
                    started.result()
            _POOL.update(pool=pool, size=processes)
        return pool


def _started(seconds: float) -> int:
    """A worker's first task: busy long enough that each of the first tasks starts its own worker."""
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


@contextmanager
def _plain_main():
    """A spawned child first runs the parent's `__main__` file again (multiprocessing's spawn). Inside a Streamlit
    script run (a server's page, an AppTest) `__main__` is the page script, which a decoder must never run (it would
    draw a page, or fail: "NameError: __args" under AppTest). While the workers start, `__main__` is a bare module
    with no file, so the children import nothing of the parent's."""
    import sys
    import types

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _pixels_in_processes(clip: ClipModel, recipe: PixelRecipe, batches: list[list[str]], processes: int) -> Iterator:
    """Each batch of files as one normalised tensor on CLIP's device, decoded by the worker processes a batch or
    two ahead (each batch split across the workers). A file that cannot be decoded raises its
    UnreadableImageError for its batch."""
    from functools import partial

    pool = decode_pool(processes)
    decode = partial(clip_pixels, recipe=recipe)

    def submit(files: list[str]) -> list:
        share = max(1, -(-len(files) // processes))
        return [pool.submit(_decode_batch, decode, files[i : i + share]) for i in range(0, len(files), share)]

    pending = [submit(b) for b in batches[:2]]
    try:
        for i in range(len(batches)):
            parts = pending.pop(0)
            if i + 2 < len(batches):
                pending.append(submit(batches[i + 2]))
            yield normalised(np.concatenate([f.result() for f in parts]), recipe, clip.device)
    finally:
        for parts in pending:
            for f in parts:
                f.cancel()


def _decode_batch(decode: Callable[[str], np.ndarray], files: list[str]) -> np.ndarray:
    return np.stack([decode(f) for f in files])


def embeddings_for(
    cache: Cache,
    clip_key: str,
    items: Sequence[tuple[str, Callable[[], Image.Image]]],
    get_clip: Callable[[], ClipModel],
    batch_size: int | None = None,
    workers: int | None = None,
    files: Sequence[Path] | None = None,
    processes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    lock=None,
) -> np.ndarray:
    """Embeddings of (sha256, load_image) items in order. Only uncached images are decoded and embedded, each
    distinct sha256 once; the CLIP model is requested (`get_clip()`) only when there is something to embed.

    Runs in batches (`batch_size`, default core.pipeline.config.embed_batch_size), each committed to the cache as soon
    as it is encoded: a kill loses at most one batch of work. `workers` threads (default
    core.pipeline.config.decode_workers; 0: none) decode and preprocess the next batch meanwhile. With `files` (each
    item's image file, in order), `processes` worker processes decode instead (default
    core.pipeline.config.decode_processes: on a GPU, for large sets). `progress(done, total)` is called in the caller's
    thread after each committed batch (only when there is work).
    `lock`, held around each batch's forward pass: a shared server's fair-queue ticket (core.pipeline.queue), so
    embedding takes turns on the GPU with every session's generation.
    """
    shas = [sha for sha, _ in items]
    found = cache.get_embeddings(clip_key, shas)
    todo: dict[str, tuple[Callable[[], Image.Image], Path | None]] = {}
    for i, (sha, load) in enumerate(items):
        if sha not in found and sha not in todo:
            todo[sha] = (load, files[i] if files is not None else None)
    if todo:
        clip = get_clip()
        size = batch_size or embed_batch_size(clip.device)
        pending = list(todo.items())
        chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
        if files is None:
            processes = 0
        elif processes is None:
            processes = decode_processes(clip.device, len(pending))
        recipe = pixel_recipe(clip.preprocess) if processes else None
        if recipe is not None:
            batches = _pixels_in_processes(clip, recipe, [[str(f) for _, (_, f) in chunk] for chunk in chunks],
                                           processes)
        else:
            batches = _preprocessed_batches(clip, [[load for _, (load, _) in chunk] for chunk in chunks],
                                            decode_workers(clip.device) if workers is None else workers)
        with closing(batches):  # an error here stops the decoding threads at once
            done = 0
            if progress:
                progress(done, len(pending))
            for chunk, batch in zip(chunks, batches):
                with lock or nullcontext():
                    vectors = encode_preprocessed(clip, batch)
                new = dict(zip((sha for sha, _ in chunk), vectors))
                cache.put_embeddings(clip_key, new)  # commit per batch: a kill loses at most one batch of work
                found.update(new)
                done += len(chunk)
                if progress:
                    progress(done, len(pending))
    return np.stack([found[sha] for sha in shas]) if shas else np.zeros((0, 0), np.float32)
