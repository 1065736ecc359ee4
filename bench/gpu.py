"""GPU check: `python -m bench.gpu [--dry-run] [--compile] [--json PATH]` (bench/README.md, "GPU check").

On one CUDA GPU, with random weights (no download; random weights run at the speed of real ones):

1. Generation, SD 1.5's architecture, 512 x 512, 25 steps, guidance 7.5, the same 8 images at batch 1, 4 and 8:
   (a) diffusers defaults: the pipeline in float16 moved to the GPU, nothing else (the common recipe);
   (b) the lab: the dtype core.config picks for this GPU (bf16 on compute capability >= 8, else fp16) and
       core.models.tune_pipeline (channels_last UNet, VAE slicing; torch.compile with --compile or DDL_COMPILE=1).
   Images/s, the speed-up of (b) over (a), and peak GPU memory of each. Both sides hold the same weights.
2. The lab's whole generation path (core.generate.generate_missing: PNG encoding, hashing, fsynced writes, SQLite)
   at the lab's batch size (core.config.auto_batch_size) vs the bare call on the same tuned pipeline: lab/raw.
3. Embedding, CLIP ViT-L-14 (float32, as core.models.load_clip keeps it): core.diversity.embed_set (decoding in
   worker threads) vs `encode_image` on the same images already preprocessed and on the GPU.

No CUDA device: it stops at once with "no CUDA device" (exit status 2). `--dry-run` runs every code path that can run
on a CPU, at tiny size (the tiny SD architecture at 64 px, 2 steps; CLIP ViT-S-32; a few images), and prints the
same tables: it checks the script, not the GPU. Expect ~3-5 minutes on an H100 (without --compile, which adds a
compilation per batch size).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from bench.stats import Row, Samples, Section, Stopwatch, fmt_bytes, fmt_s, format_table  # noqa: E402

PROMPT = "a photo of a golden retriever on a beach"
NO_CUDA = ("bench.gpu: no CUDA device (torch.cuda.is_available() is False). This benchmark measures the GPU path: "
           "run it on a machine with an NVIDIA GPU, or add --dry-run to exercise its code on the CPU at tiny size.")


@dataclass
class Plan:
    size: int
    steps: int
    guidance: float
    images: int
    batches: list[int]
    repeats: int
    clip_arch: str
    embed_images: int


REAL = Plan(size=512, steps=25, guidance=7.5, images=8, batches=[1, 4, 8], repeats=3, clip_arch="ViT-L-14",
            embed_images=512)
DRY = Plan(size=64, steps=2, guidance=7.5, images=2, batches=[1, 2], repeats=1, clip_arch="ViT-S-32",
           embed_images=8)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="on the CPU, at tiny size: checks the script, not a GPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the lab's UNet (DDL_COMPILE=1): adds a "
                   "compilation per batch size, minutes")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per batch size (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, flush=True)


class _Settings:
    """What bench.overhead.raw_run reads from a GenerationSettings."""

    def __init__(self, plan: Plan):
        self.steps, self.guidance, self.width, self.height = plan.steps, plan.guidance, plan.size, plan.size


def build_pipelines(plan: Plan, device, dry: bool, work: Path):
    """(diffusers defaults, the lab's tuned pipeline, tuning): the same random weights in both."""
    import torch

    from core.config import DeviceSpec, pipeline_tuning
    from core.models import tune_pipeline

    if dry:
        from core.tiny import build_tiny_sd_pipeline

        torch.manual_seed(0)
        base = build_tiny_sd_pipeline(work)
        plain_dtype = torch.float32
    else:
        from bench.pipelines import build_sd15_random

        _, base = build_sd15_random(DeviceSpec("cpu", "float32"), work, tuned=False)
        plain_dtype = torch.float16
    plain = copy.deepcopy(base).to(device.device, plain_dtype)
    lab = base.to(device.device, device.dtype)
    for pipe in (plain, lab):
        pipe.set_progress_bar_config(disable=True)
    # The CUDA settings, also in a dry run on the CPU (they run there too): what this script is here to check.
    tuning = pipeline_tuning(DeviceSpec("cuda", device.dtype_name))
    tune_pipeline(lab, device, tuning)
    return plain, lab, tuning


def peak_gpu_memory(fn) -> tuple[object, int | None]:
    import torch

    if not torch.cuda.is_available():
        return fn(), None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    return out, torch.cuda.max_memory_allocated()


def bench_generation(plain, lab, plan: Plan, log) -> tuple[list[Row], Section]:
    from bench.overhead import raw_run

    settings = _Settings(plan)
    seeds = list(range(plan.images))
    sides = {"diffusers defaults": plain, "lab": lab}
    samples = {(s, b): Samples() for s in sides for b in plan.batches}
    peaks: dict[tuple[str, int], int | None] = {}
    for b in plan.batches:  # warm-up (and the compilation, with --compile), with the peak memory of each
        for side, pipe in sides.items():
            (sw, _), peaks[side, b] = peak_gpu_memory(lambda pipe=pipe, b=b: raw_run(pipe, settings, PROMPT,
                                                                                      seeds[:b], b))
            log(f"[gpu gen] warm-up {side}, batch {b}: {fmt_s(sw.wall)}, peak GPU memory {fmt_bytes(peaks[side, b])}")
    for i in range(plan.repeats):
        for b in plan.batches:
            order = list(sides) if (i + b) % 2 == 0 else list(sides)[::-1]
            for side in order:
                sw, images = raw_run(sides[side], settings, PROMPT, seeds, b)
                if len(images) != plan.images:
                    raise RuntimeError(f"{side} made {len(images)} of {plan.images} images")
                samples[side, b].add(sw.wall, sw.cpu)
        rates = {(s, b): plan.images / samples[s, b].wall[-1] for s in sides for b in plan.batches}
        log(f"[gpu gen] repeat {i + 1}/{plan.repeats}, images/s lab vs defaults: " + "  ".join(
            f"b{b} {rates['lab', b]:.3g} vs {rates['diffusers defaults', b]:.3g}" for b in plan.batches))
    rows, lines = [], []
    for b in plan.batches:
        lab_s, plain_s = samples["lab", b], samples["diffusers defaults", b]
        speedup = plain_s.median / lab_s.median
        rows.append(Row(
            benchmark=f"gen {plan.size}px {plan.steps} st, {plan.images} img at b{b}: lab vs diffusers defaults",
            lab_label="lab", other_label="defaults", lab=lab_s, other=plain_s, ratio=speedup,
            ratio_kind="defaults/lab time", target="info", ok=None,
            details={"batch": b, "lab_images_per_s": plan.images / lab_s.median,
                     "defaults_images_per_s": plan.images / plain_s.median, "lab_peak_bytes": peaks["lab", b],
                     "defaults_peak_bytes": peaks["diffusers defaults", b]}))
        lines.append([str(b), f"{plan.images / plain_s.median:.3g}", f"{plan.images / lab_s.median:.3g}",
                      f"{speedup:.2f}x", fmt_bytes(peaks["diffusers defaults", b]), fmt_bytes(peaks["lab", b])])
    section = Section(
        title=f"GPU generation: {plan.images} images, {plan.size} px, {plan.steps} steps, guidance {plan.guidance:g}",
        headers=["batch", "defaults img/s", "lab img/s", "lab speed-up", "defaults peak GPU mem", "lab peak GPU mem"],
        lines=lines)
    return rows, section


def bench_lab_path(lab, plan: Plan, device, tmp: Path, log) -> Row:
    """generate_missing at the lab's batch size vs the bare call at the same batch, same tuned pipeline."""
    from bench.overhead import lab_run, raw_run
    from core.config import auto_batch_size
    from core.generate import GenerationSettings, library_versions

    settings = GenerationSettings(
        model_id="bench/sd15-arch-random", revision="random-seed-0", pipeline_class="StableDiffusionPipeline",
        scheduler=dict(lab.scheduler.config), steps=plan.steps, guidance=plan.guidance, width=plan.size,
        height=plan.size, dtype=device.dtype_name, device_type=device.device, versions=library_versions())
    batch = auto_batch_size(device, plan.size, plan.size) if device.device == "cuda" else plan.batches[-1]
    seeds = list(range(plan.images))
    lab_s, raw_s = Samples(), Samples()
    outside = []
    for i in range(plan.repeats):
        for side in (("lab", "raw") if i % 2 == 0 else ("raw", "lab")):
            if side == "lab":
                sw, breakdown, _ = lab_run(lab, settings, PROMPT, seeds, batch, tmp)
                lab_s.add(sw.wall, sw.cpu)
                outside.append(breakdown["outside_pipe"])
            else:
                sw, _ = raw_run(lab, settings, PROMPT, seeds, batch)
                raw_s.add(sw.wall, sw.cpu)
    ratio = lab_s.median / raw_s.median
    share = sorted(outside)[len(outside) // 2] / raw_s.median
    log(f"[gpu lab path] batch {batch} (auto_batch_size): lab {fmt_s(lab_s.median)}, raw {fmt_s(raw_s.median)}, "
        f"lab/raw {ratio:.3f}; the lab's own work outside the pipeline call: {share:.1%} of raw")
    return Row(benchmark=f"gen overhead on GPU: generate_missing vs bare call ({plan.images} img, b{batch})",
               lab_label="lab", other_label="raw", lab=lab_s, other=raw_s, ratio=ratio, ratio_kind="lab/raw",
               target="<= 1.05", ok=ratio <= 1.05, noise_suspected=share <= 0.05,
               details={"batch": batch, "outside_pipe_share_of_raw": share},
               note=f"GPU generation: the lab's own work (PNG encoding, hashing, fsynced writes, SQLite) outside the "
                    f"pipeline call is {share:.1%} of the bare call's time at batch {batch}")


def synthetic_photos(n: int, folder: Path):
    """n 224 px JPEGs of smooth random colour fields, for machines without the shared Imagenette photos."""
    import numpy as np
    from PIL import Image

    from core.cache import sha256_bytes
    from core.diversity import ImageSet, _open_rgb

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        path = folder / f"photo-{i:04d}.jpg"
        Image.fromarray(small).resize((224, 224), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return ImageSet("natural", [p.name for p in paths], [sha256_bytes(p.read_bytes()) for p in paths],
                    [_open_rgb(p) for p in paths], paths)


def bench_embedding_gpu(plan: Plan, device, tmp: Path, log) -> Row:
    import shutil

    import torch

    from bench.embed import IMAGENETTE, build_clip, pick_photos
    from core.cache import Cache
    from core.config import decode_workers, embed_batch_size
    from core.diversity import embed_set
    from core.embed import _rgb

    clip = build_clip(plan.clip_arch)
    clip.model.to(device.device)
    clip.device = device.device
    n = plan.embed_images
    images = pick_photos(n) if IMAGENETTE.is_dir() and n <= 1000 else synthetic_photos(n, tmp / "photos")
    batch = embed_batch_size(device.device)
    on_device = torch.stack([clip.preprocess(_rgb(load())) for load in images.loaders]).to(device.device)

    def sync():
        if device.device == "cuda":
            torch.cuda.synchronize()

    def raw_once():
        sync()
        with Stopwatch() as sw, torch.inference_mode():
            out = [clip.model.encode_image(on_device[i : i + batch]).float().cpu() for i in range(0, n, batch)]
        return sw, out

    def lab_once():
        root = Path(tempfile.mkdtemp(prefix="emb-", dir=tmp))
        sync()
        with Stopwatch() as sw:
            vectors = embed_set(Cache(root), clip.key, images, lambda: clip)
        shutil.rmtree(root, ignore_errors=True)
        if len(vectors) != n:
            raise RuntimeError(f"the lab embedded {len(vectors)} of {n} images")
        return sw

    raw_once(), lab_once()
    lab_s, raw_s = Samples(), Samples()
    for i in range(max(3, plan.repeats)):
        for side in (("lab", "raw") if i % 2 == 0 else ("raw", "lab")):
            if side == "lab":
                sw = lab_once()
                lab_s.add(sw.wall, sw.cpu)
            else:
                sw, _ = raw_once()
                raw_s.add(sw.wall, sw.cpu)
    ratio = raw_s.median / lab_s.median
    log(f"[gpu embed] {plan.clip_arch} fp32, {n} images, batch {batch}, {decode_workers(device.device)} decode "
        f"workers: lab {n / lab_s.median:.4g} img/s, raw {n / raw_s.median:.4g} img/s (raw/lab {ratio:.3f})")
    return Row(benchmark=f"embed {plan.clip_arch} {n} img on {device.device}: lab path vs raw encode_image",
               lab_label="lab", other_label="raw", lab=lab_s, other=raw_s, ratio=ratio, ratio_kind="raw/lab time",
               target=">= 0.95", ok=ratio >= 0.95,
               details={"images_per_s_lab": n / lab_s.median, "images_per_s_raw": n / raw_s.median,
                        "batch": batch, "decode_workers": decode_workers(device.device)})


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    import warnings

    warnings.filterwarnings("ignore")
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    if args.compile:
        os.environ["DDL_COMPILE"] = "1"
    from core.config import DeviceSpec, apply_cpu_threads, select_device

    plan = DRY if args.dry_run else REAL
    if args.repeats:
        plan.repeats = args.repeats
    if args.dry_run:
        apply_cpu_threads()
        device = DeviceSpec("cpu", "float32")
    else:
        device = select_device()
    started = time.perf_counter()
    print(f"bench.gpu{' --dry-run (CPU, tiny sizes: checks the script, not a GPU)' if args.dry_run else ''}: "
          f"{device.describe()}; torch {torch.__version__}")
    rows, sections = [], []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        with Stopwatch() as sw:
            plain, lab, tuning = build_pipelines(plan, device, args.dry_run, tmp)
        log(f"[gpu] pipelines built in {fmt_s(sw.wall)}; lab settings: {device.dtype_name}, {tuning.describe()}")
        gen_rows, section = bench_generation(plain, lab, plan, log)
        rows += gen_rows
        sections.append(section)
        del plain
        if device.device == "cuda":
            torch.cuda.empty_cache()
        rows.append(bench_lab_path(lab, plan, device, tmp, log))
        del lab
        if device.device == "cuda":
            torch.cuda.empty_cache()
        rows.append(bench_embedding_gpu(plan, device, tmp, log))
    total = time.perf_counter() - started
    print()
    print(f"Results ({fmt_s(total)} in all; {device.describe()}; lab: {tuning.describe()})")
    print(format_table(rows))
    for r in rows:
        if r.note:
            print(f"  * {r.note}")
    for s in sections:
        print()
        print(s.format())
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device.describe(), "dry_run": args.dry_run,
                                               "total_s": total, "table": format_table(rows),
                                               "results": [r.to_json() for r in rows],
                                               "sections": [s.to_json() for s in sections]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
