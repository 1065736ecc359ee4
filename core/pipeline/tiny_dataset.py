"""A synthetic dataset in a sweep's output layout (core.pipeline.sweep), made in seconds without Ray or models: for
tests and benchmarks of the app at scale (100,000 images). Its images are small coloured PNGs, its embeddings clusters
of unit vectors (one cluster per prompt), its thumbnails a pool of JPEGs; keys and settings are made as a sweep makes
them, so the app's lookups find its rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from core.pipeline.cache import atomic_write_bytes, canonical_json, key_of, sha256_bytes
from core.pipeline.generate import GenerationSettings
from core.pipeline.registry import TINY_RANDOM

THUMB_POOL = 512  # distinct thumbnails, reused: their bytes only set the payload's size


def synthetic_settings(device_type: str = "cpu", dtype: str = "float32") -> GenerationSettings:
    return GenerationSettings(TINY_RANDOM, "synthetic", "StableDiffusionPipeline", {"_class_name": "DDIMScheduler"},
                              steps=4, guidance=0.0, width=64, height=64, dtype=dtype, device_type=device_type)


def _png(i: int) -> bytes:
    from PIL import Image, PngImagePlugin

    rgb = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
    info = PngImagePlugin.PngInfo()
    info.add_text("row", str(i))  # distinct bytes, distinct sha256, for every row
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _thumb(i: int, size: int) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(i)
    a = np.stack([(x * rng.uniform(1, 3) + y * rng.uniform(0, 2) + rng.uniform(0, 255)) % 256 for _ in range(3)], -1)
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def write_synthetic_dataset(folder: Path, n: int, d: int = 512, prompts: list[str] | None = None,
                            title: str = "synthetic", rows_per_shard: int = 1024, clip_key: str = "synthetic-clip",
                            thumb_size: int = 80, seed: int = 0) -> Path:
    """n images spread over `prompts` (seeds 0, 1, ... per prompt), in shards of `rows_per_shard` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    prompts = prompts or [f"a photo of class {c}" for c in range(10)]
    settings = synthetic_settings()
    skey = settings.key()
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(prompts), d))
    thumbs = [_thumb(i, thumb_size) for i in range(min(THUMB_POOL, n))]
    per_prompt = -(-n // len(prompts))
    rows = [(p, s) for p in range(len(prompts)) for s in range(per_prompt)][:n]

    def write(table: str, name: str, data: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(data, buf)
        atomic_write_bytes(folder / table / name, buf.getvalue())

    for start in range(0, n, rows_per_shard):
        part = rows[start : start + rows_per_shard]
        pngs = [_png(start + i) for i in range(len(part))]
        shas = [sha256_bytes(p) for p in pngs]
        keys = [settings.image_key(prompts[p], s) for p, s in part]
        vectors = centres[[p for p, _ in part]] + rng.normal(scale=1.5, size=(len(part), d))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        name = f"part-{key_of(sorted(keys))[:24]}.parquet"
        write("embeddings", name, pa.table({"key": shas, "clip_key": [clip_key] * len(part),
                                            "vector": pa.array(list(vectors), pa.list_(pa.float32()))}))
        write("thumbnails", name, pa.table({"sha256": shas, "size": [thumb_size] * len(part),
                                            "jpeg": [thumbs[(start + i) % len(thumbs)] for i in range(len(part))]}))
        write("images", name, pa.table({
            "key": keys, "settings_key": [skey] * len(part), "prompt": [prompts[p] for p, _ in part],
            "seed": pa.array([s for _, s in part], pa.int64()), "sha256": shas, "png": pa.array(pngs, pa.binary())}))
    buf = io.BytesIO()
    pq.write_table(pa.table({"settings_key": [skey], "json": [canonical_json(settings.to_dict())]}), buf)
    atomic_write_bytes(folder / "settings.parquet", buf.getvalue())
    manifest = {"format": "diffusion-diversity-lab sweep", "version": 1, "title": title, "images": n,
                "plan": {"title": title, "prompts": [[p, p] for p in prompts], "clip": [TINY_RANDOM]},
                "settings_keys": [skey], "synthetic": True}
    atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=2).encode())
    return folder
