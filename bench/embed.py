"""Benchmark: the lab's image-embedding path vs the bare open_clip encoder, at full ViT-B-32 size (random weights).

- lab: `core.analysis.diversity.embed_set` into a fresh Cache (a new folder each run, so every image is embedded):
  decode the JPEGs, open_clip's preprocessing, `encode_image`, L2-normalise, store in SQLite, batch by batch, with the
  device's decode worker threads (core.pipeline.config.decode_workers: none on a CPU).
- lab, 1 worker thread (info, full run only): the same with one thread decoding + preprocessing the next batch
  while this one encodes: the evidence for the CPU's choice.
- raw: `model.encode_image(batch)` on the same images already decoded and preprocessed, same batch size, under
  `torch.inference_mode()`.

Photos: the shared Imagenette photos (224 px JPEGs), read where they are, never copied. Random weights run at the
speed of real ones. The breakdown (decode / preprocess / encode / normalise / store) comes from a separate pass
that runs each phase on its own, one after the other.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .stats import Row, Samples, Section, Stopwatch, fmt_s

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGENETTE = (REPO_ROOT.parent / "shared" / "data" / "imagenette224").resolve()


def pick_photos(n: int, root: Path = IMAGENETTE):
    """n photos, round-robin over the classes (sorted: the same photos every run), as the page's ImageSet."""
    from core.analysis.diversity import natural_set
    from core.pipeline.natural import NaturalFolder

    folder = NaturalFolder(root)
    per_class = [folder.images(c) for c in folder.classes()]
    photos = []
    for i in range(max(len(p) for p in per_class)):
        for p in per_class:
            if i < len(p) and len(photos) < n:
                photos.append(p[i])
    if len(photos) < n:
        raise RuntimeError(f"only {len(photos)} usable photos under {root}, {n} asked for")
    return natural_set(photos)


def build_clip(arch: str):
    """open_clip `arch` with random weights (seed 0), wrapped as the lab's ClipModel on the CPU."""
    import open_clip
    import torch

    from core.pipeline.models import ClipModel
    from core.pipeline.registry import ClipPreset

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    preset = ClipPreset(f"bench-{arch}", f"{arch} random weights", arch, None)
    return ClipModel(preset, f"bench-{arch}-random", model.eval(), preprocess, None, "cpu")


def _breakdown(clip, images, batch_size: int, tmp_root: Path) -> dict[str, float]:
    """Each phase of the lab's path on its own, in sequence (seconds for all images)."""
    import torch

    from core.pipeline.cache import Cache
    from core.pipeline.embed import _rgb, l2_normalise

    spent = {}
    with Stopwatch() as sw:
        decoded = [load() for load in images.loaders]
    spent["decode"] = sw.wall
    with Stopwatch() as sw:
        tensors = [clip.preprocess(_rgb(im)) for im in decoded]
    spent["preprocess"] = sw.wall
    feats = []
    with Stopwatch() as sw, torch.inference_mode():
        for i in range(0, len(tensors), batch_size):
            feats.append(clip.model.encode_image(torch.stack(tensors[i : i + batch_size])).float().cpu().numpy())
    spent["encode"] = sw.wall
    with Stopwatch() as sw:
        vectors = [l2_normalise(f) for f in feats]
    spent["normalise"] = sw.wall
    root = Path(tempfile.mkdtemp(prefix="emb-", dir=tmp_root))
    cache = Cache(root)
    with Stopwatch() as sw:
        start = 0
        for v in vectors:
            cache.put_embeddings(clip.key, dict(zip(images.shas[start : start + len(v)], v)))
            start += len(v)
    spent["store"] = sw.wall
    shutil.rmtree(root, ignore_errors=True)
    return spent


def bench_embedding(n: int, repeats: int, tmp_root: Path, log, arch: str = "ViT-B-32",
                    with_threaded: bool = True) -> tuple[list[Row], Section]:
    import torch

    from core.analysis.diversity import embed_set
    from core.pipeline.cache import Cache
    from core.pipeline.config import decode_workers, embed_batch_size
    from core.pipeline.embed import _rgb, embeddings_for, l2_normalise

    with Stopwatch() as sw:
        clip = build_clip(arch)
    images = pick_photos(n)
    batch = embed_batch_size(clip.device)
    log(f"[embed] {arch} random weights built in {fmt_s(sw.wall)}; {n} Imagenette photos, batch {batch}, "
        f"{decode_workers(clip.device)} decode worker thread(s) (core.pipeline.config.decode_workers), "
        f"{repeats} repeats")
    raw_input = torch.stack([clip.preprocess(_rgb(load())) for load in images.loaders])

    def raw_once():
        gc.collect()
        with Stopwatch() as sw, torch.inference_mode():
            feats = [clip.model.encode_image(raw_input[i : i + batch]) for i in range(0, n, batch)]
        return sw, torch.cat(feats).float().numpy()

    def lab_once(threaded: bool = False):
        root = Path(tempfile.mkdtemp(prefix="emb-", dir=tmp_root))
        cache = Cache(root)
        gc.collect()
        with Stopwatch() as sw:
            if threaded:
                vectors = embeddings_for(cache, clip.key, list(zip(images.shas, images.loaders)), lambda: clip,
                                         workers=1)
            else:
                vectors = embed_set(cache, clip.key, images, lambda: clip)
        stored = len(cache.get_embeddings(clip.key, images.shas))
        shutil.rmtree(root, ignore_errors=True)
        if stored != n or vectors.shape[0] != n:
            raise RuntimeError(f"the lab embedded {vectors.shape[0]} and stored {stored} of {n} images")
        return sw, vectors

    sw_lab, lab_vectors = lab_once()
    sw_raw, raw_feats = raw_once()
    diff = float(np.abs(lab_vectors - l2_normalise(raw_feats)).max())
    log(f"[embed] warm-up: lab {fmt_s(sw_lab.wall)}, raw {fmt_s(sw_raw.wall)}; lab vectors vs normalised raw "
        f"features: max difference {diff:.1e}")
    if diff > 1e-4:
        raise RuntimeError(f"the lab's embeddings differ from open_clip's by {diff}: not the same work")

    lab, threaded, raw = Samples(), Samples(), Samples()
    sides = ["lab", "raw", "threaded"] if with_threaded else ["lab", "raw"]
    for i in range(repeats):
        for side in (sides if i % 2 == 0 else sides[::-1]):
            if side == "raw":
                sw, _ = raw_once()
                raw.add(sw.wall, sw.cpu)
            else:
                sw, _ = lab_once(threaded=side == "threaded")
                (threaded if side == "threaded" else lab).add(sw.wall, sw.cpu)
        log(f"[embed] repeat {i + 1}/{repeats}: lab {fmt_s(lab.wall[-1])}  raw {fmt_s(raw.wall[-1])}  "
            + (f"1 worker {fmt_s(threaded.wall[-1])}  " if with_threaded else "")
            + f"raw/lab {raw.wall[-1] / lab.wall[-1]:.3f}")
    parts = _breakdown(clip, images, batch, tmp_root)
    total = sum(parts.values())
    log("[embed] breakdown (each phase alone): " + ", ".join(f"{k} {fmt_s(v)}" for k, v in parts.items()))

    ratio = raw.median / lab.median  # lab throughput as a share of the bare encoder's
    rate = {k: n / s.median for k, s in (("lab", lab), ("threaded", threaded), ("raw", raw)) if s.wall}
    details = {"images": n, "arch": arch, "batch": batch, "repeats": repeats, "images_per_s": rate,
               "breakdown_s": parts, "max_abs_vector_diff": diff,
               "paired_ratio_median": float(np.median([r / la for r, la in zip(raw.wall, lab.wall)]))}
    note = (f"embedding: the lab made {rate['lab']:.3g} images/s, the bare encoder {rate['raw']:.3g} "
            f"(paired median raw/lab {details['paired_ratio_median']:.3f}); decode + preprocess + normalise + store "
            f"measured alone are {(total - parts['encode']) / parts['encode']:.1%} of the encoder's time")
    rows = [
        Row(benchmark=f"embed {arch} {n} img: lab path vs raw encode_image", lab_label="lab", other_label="raw",
            lab=lab, other=raw, ratio=ratio, ratio_kind="raw/lab time", target=">= 0.95", ok=ratio >= 0.95,
            details=details, note=note,
            noise_suspected=(total - parts["encode"]) / parts["encode"] <= 0.05),
    ]
    if with_threaded:
        rows.append(Row(
            benchmark=f"embed {arch} {n} img: with 1 decode worker thread", lab_label="1 worker",
            other_label="raw", lab=threaded, other=raw, ratio=raw.median / threaded.median,
            ratio_kind="raw/lab time", target="info", ok=None, details={"images_per_s": rate["threaded"]}))
    section = Section(
        title=f"Embedding, where the time goes: {arch} (random weights), {n} photos of 224 px, batch {batch}, each "
              f"phase run alone",
        headers=["phase", "time for all", "per image", "share"],
        lines=[[k, fmt_s(v), fmt_s(v / n), f"{v / total:.1%}"] for k, v in parts.items()]
        + [["sum", fmt_s(total), fmt_s(total / n), "100%"],
           ["lab path (measured)", fmt_s(lab.median), fmt_s(lab.median / n), f"{lab.median / total:.1%}"]],
        notes=["With decode worker threads (a GPU), the lab path decodes the next batch while this one encodes, so "
               "it can take less than the sum of the phases; on a CPU it runs them one after the other."],
        data={"breakdown_s": parts, "lab_median_s": lab.median},
    )
    return rows, section
