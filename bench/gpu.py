"""GPU check: `python -m bench.gpu [--dry-run] [--repeats N] [--json PATH]` (bench/README.md, "GPU check").

On one CUDA GPU, with random weights (no download; random weights run at the speed of real ones), every row of the
engine issue's table, in one run:

1. SD 1.5's architecture, 512 x 512, 25 steps, guidance 7.5, 32 images:
   a. diffusers defaults: the pipeline in float16 on the GPU, nothing else, batch 8: the baseline;
   b. the lab's pipeline call, eager, prepared as the engine prepares it for a page's run
      (core.pipeline.config.generation_recipe, core.pipeline.models.apply_recipe), at batch 8 and at the recipe's batch;
   c. the lab compiled (UNet and VAE decoder: the recipe of a long run) at its batch: the first call's compilation
      time, then images/s;
   d. the engine end to end (core.pipeline.engine.Engine.generate into a fresh cache: PNG encoding, hashing, fsynced
   writes
      and SQLite on worker threads beside the GPU) vs the bare pipeline call, same pipeline and batch;
   e. UNet model-FLOPs utilisation: FLOPs of one forward (torch.utils.flop_counter) per second, eager at the
      page batch and compiled at the long-run batch, against the peak a bf16 8192^3 matmul reaches here.
2. SD-Turbo's architecture (SD 2.1: 512 px, 1 step, no guidance): the engine end to end, and where its time goes
   (text encoder, UNet, VAE decoder, the lab's own work).
3. Embedding, CLIP ViT-B-32 and ViT-L-14 on 500 x 375 JPEG files: the lab's path (core.pipeline.embed.embeddings_for:
the
   lab's CLIP precision, decoding in worker processes) vs bare `encode_image` on tensors already on the GPU, in
   float32 and under bf16 autocast.
4. Imports: the generation and embedding path loaded no chart or UI library (streamlit, altair).

No CUDA device: it stops at once with "no CUDA device" (exit status 2). `--dry-run` runs every code path that can run
on a CPU, at tiny size (the tiny SD architecture at 64 px, CLIP ViT-S-32, a few images; torch.compile is skipped),
and prints the same tables: it checks the script, not the GPU (tests/test_bench_gpu.py runs it). About 6 minutes on
an H200, most of it the compilation (once per shape).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench import offline_and_quiet

offline_and_quiet()  # before anything imports huggingface_hub / transformers / diffusers

from bench.stats import Row, Samples, Section, Stopwatch, fmt_s, format_table  # noqa: E402

PROMPT = "a photo of a golden retriever on a beach"
NO_CUDA = ("bench.gpu: no CUDA device (torch.cuda.is_available() is False). This benchmark measures the GPU path: "
           "run it on a machine with an NVIDIA GPU, or add --dry-run to exercise its code on the CPU at tiny size.")
PEAK_NOTE = "peak: a bf16 8192^3 matmul on this GPU (790 TFLOP/s measured on an H200)"


@dataclass
class Plan:
    size: int
    steps: int
    guidance: float
    images: int  # per timed generation run; a multiple of every batch size below
    default_batch: int  # the diffusers-defaults baseline's batch
    repeats: int
    clip_archs: tuple[str, ...]
    embed_images: int
    photo_size: tuple[int, int]
    matmul: int  # side of the square bf16 matmul that measures the peak


REAL = Plan(size=512, steps=25, guidance=7.5, images=32, default_batch=8, repeats=3,
            clip_archs=("ViT-B-32", "ViT-L-14"), embed_images=2048, photo_size=(500, 375), matmul=8192)
DRY = Plan(size=64, steps=2, guidance=7.5, images=4, default_batch=2, repeats=1, clip_archs=("ViT-S-32",),
           embed_images=8, photo_size=(100, 75), matmul=256)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="on the CPU, at tiny size: checks the script, not a GPU")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats of each generation side (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, flush=True)


def sync(device) -> None:
    import torch

    if device.device == "cuda":
        torch.cuda.synchronize()


class _Settings:
    """What bench.overhead.raw_run reads from a GenerationSettings."""

    def __init__(self, plan: Plan, steps: int | None = None, guidance: float | None = None):
        self.steps = plan.steps if steps is None else steps
        self.guidance = plan.guidance if guidance is None else guidance
        self.width = self.height = plan.size


def timed_runs(pipe, plan: Plan, batch: int, repeats: int, settings=None) -> Samples:
    """`repeats` timed bare pipeline calls over plan.images images at `batch` (after one warm-up run)."""
    from bench.overhead import raw_run

    settings = settings or _Settings(plan)
    seeds = list(range(plan.images))
    raw_run(pipe, settings, PROMPT, seeds[:batch], batch)  # warm-up: first-call costs (and compilation)
    samples = Samples()
    for _ in range(repeats):
        sw, images = raw_run(pipe, settings, PROMPT, seeds, batch)
        if len(images) != plan.images:
            raise RuntimeError(f"made {len(images)} of {plan.images} images")
        samples.add(sw.wall, sw.cpu)
    return samples


def rate(plan: Plan, samples: Samples) -> float:
    return plan.images / samples.median


# -- 1. SD 1.5 ---------------------------------------------------------------------------------------------------
def build_sd15(plan: Plan, device, dry: bool, work: Path):
    """(diffusers defaults, the lab's pipeline, settings folder): the same random weights in both."""
    import copy

    import torch

    from core.pipeline.config import DeviceSpec

    if dry:
        from core.pipeline.tiny import build_tiny_sd_pipeline

        torch.manual_seed(0)
        base = build_tiny_sd_pipeline(work)
        plain_dtype = torch.float32
        folder = None
    else:
        from bench.pipelines import build_sd15_random

        folder, base = build_sd15_random(DeviceSpec("cpu", "float32"), work, tuned=False)
        plain_dtype = torch.float16
    plain = copy.deepcopy(base).to(device.device, plain_dtype)
    lab = base.to(device.device, device.dtype)
    for pipe in (plain, lab):
        pipe.set_progress_bar_config(disable=True)
    return plain, lab, folder


def page_and_long_recipes(device, plan: Plan, dry: bool):
    """The recipes the engine would pick for a page's run (a few images) and for a long run (a sweep)."""
    from core.pipeline.config import COMPILE_MIN_IMAGES, generation_recipe

    page = generation_recipe(device, plan.size, plan.size, plan.images)
    long = generation_recipe(device, plan.size, plan.size, COMPILE_MIN_IMAGES * 10)
    if dry:  # torch.compile on a CPU runs a C++ toolchain for minutes: the dry run checks the rest of the path
        long = replace(long, compile_mode=None, batch_size=plan.images)
    return page, long


def bench_sd15_eager(plain, lab, plan: Plan, device, dry: bool, log) -> tuple[list[Row], list, Samples, tuple]:
    """The baseline and the lab's eager pipeline calls. Returns (rows, section lines, baseline, recipes)."""
    from core.pipeline.models import apply_recipe

    page, long = page_and_long_recipes(device, plan, dry)
    rows, lines = [], []
    baseline = timed_runs(plain, plan, plan.default_batch, plan.repeats)
    base_rate = rate(plan, baseline)
    lines.append([f"diffusers defaults ({str(plain.dtype).removeprefix('torch.')}), b{plan.default_batch}",
                  f"{base_rate:.3g}", "1.00x", "-"])
    log(f"[sd15] diffusers defaults b{plan.default_batch}: {base_rate:.3g} images/s")
    apply_recipe(lab, page)
    sides = [(f"lab eager b{plan.default_batch} ({page.describe(batch=False)})", plan.default_batch)]
    if page.batch_size != plan.default_batch:
        sides.append((f"lab eager b{page.batch_size}, the page recipe ({page.describe(batch=False)})",
                      page.batch_size))
    for label, batch in sides:
        samples = timed_runs(lab, plan, batch, plan.repeats)
        lines.append([label, f"{rate(plan, samples):.3g}", f"{rate(plan, samples) / base_rate:.2f}x", "-"])
        log(f"[sd15] {label}: {rate(plan, samples):.3g} images/s")
        rows.append(speedup_row(f"gen SD1.5 {plan.size}px {plan.steps} st: {label}", plan, samples, baseline,
                                {"batch": batch}))
    return rows, lines, baseline, (page, long)


def speedup_row(label: str, plan: Plan, samples: Samples, baseline: Samples, details: dict) -> Row:
    speedup = baseline.median / samples.median
    return Row(benchmark=f"{label} vs defaults b{plan.default_batch}", lab_label="lab", other_label="defaults",
               lab=samples, other=baseline, ratio=speedup, ratio_kind="speed-up", target=">= 1.5", ok=speedup >= 1.5,
               details={**details, "images_per_s": rate(plan, samples)})


def bench_sd15_compiled(lab, plan: Plan, long, baseline: Samples, lines: list, log) -> Row:
    """The long-run recipe (torch.compile of the UNet and VAE decoder on CUDA): first call, then images/s."""
    from core.pipeline.models import apply_recipe

    apply_recipe(lab, long)
    with Stopwatch() as first_call:
        timed_runs(lab, plan, long.batch_size, 0)  # the warm-up alone: the first call compiles
    samples = timed_runs(lab, plan, long.batch_size, plan.repeats)
    kind = "compiled" if long.compile_mode else "long-run recipe"
    label = f"lab {kind} b{long.batch_size} ({long.describe(batch=False)})"
    lines.append([label, f"{rate(plan, samples):.3g}", f"{baseline.median / samples.median:.2f}x",
                  fmt_s(first_call.wall)])
    log(f"[sd15] {label}: first call {fmt_s(first_call.wall)}, then {rate(plan, samples):.3g} images/s")
    return speedup_row(f"gen SD1.5: {label}", plan, samples, baseline,
                       {"batch": long.batch_size, "first_call_s": first_call.wall})


def bench_engine(pipe, settings, plan: Plan, device, work: Path, log, label: str) -> Row:
    """Engine.generate into a fresh cache vs the bare call on the same pipeline at the engine's batch."""
    import shutil

    from bench.overhead import raw_run
    from core.pipeline.cache import Cache
    from core.pipeline.config import generation_recipe
    from core.pipeline.engine import Engine
    from core.pipeline.engine import Plan as RunPlan
    from core.pipeline.generate import RunRequest

    recipe = generation_recipe(device, settings.width, settings.height, plan.images)
    req = RunRequest(PROMPT, n=plan.images, steps=settings.steps, guidance=settings.guidance, size=settings.width)
    bare, lab = Samples(), Samples()
    for i in range(plan.repeats + 1):  # the first round warms both sides up
        for side in (("engine", "bare") if i % 2 == 0 else ("bare", "engine")):
            if side == "engine":
                root = Path(tempfile.mkdtemp(prefix="engine-", dir=work))
                engine = Engine(Cache(root), device, lambda folder: pipe)
                with Stopwatch() as sw:
                    totals = engine.generate(RunPlan([(req, settings)], [(req, root, settings)]))
                shutil.rmtree(root, ignore_errors=True)
                if totals.generated != plan.images:
                    raise RuntimeError(f"the engine generated {totals.generated} of {plan.images} images")
                if i:
                    lab.add(sw.wall, sw.cpu)
            else:
                sw, _ = raw_run(pipe, settings, PROMPT, req.seeds, recipe.batch_size)
                if i:
                    bare.add(sw.wall, sw.cpu)
    ratio = lab.median / bare.median
    log(f"[{label}] engine end to end at b{recipe.batch_size}: {rate(plan, lab):.3g} images/s, bare call "
        f"{rate(plan, bare):.3g}: engine/bare {ratio:.3f}")
    return Row(benchmark=f"{label}: engine end to end vs bare call ({plan.images} img, b{recipe.batch_size})",
               lab_label="engine", other_label="bare", lab=lab, other=bare, ratio=ratio, ratio_kind="lab/raw",
               target="<= 1.05", ok=ratio <= 1.05,
               details={"batch": recipe.batch_size, "engine_images_per_s": rate(plan, lab)})


def measured_peak(plan: Plan, device) -> float:
    """FLOP/s of a square bf16 matmul (float32 on a CPU), best of a few: the denominator of MFU."""
    import torch

    dtype = torch.bfloat16 if device.device == "cuda" else torch.float32
    a = torch.randn(plan.matmul, plan.matmul, device=device.device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        for _ in range(10):
            a @ a
        sync(device)
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * plan.matmul**3 / best


def unet_flops_per_sample(pipe, plan: Plan, device) -> float:
    """FLOPs of one UNet forward per sample at plan.size (torch.utils.flop_counter, on the eager module)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    latent = plan.size // 8
    x = torch.randn(2, unet.config.in_channels, latent, latent, device=device.device, dtype=device.dtype)
    h = torch.randn(2, 77, unet.config.cross_attention_dim, device=device.device, dtype=device.dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(500, device=device.device), encoder_hidden_states=h)
    return counter.get_total_flops() / 2


def mfu_row(pipe, plan: Plan, device, recipe, label: str, flops_per_sample: float, peak: float, lines: list,
            log) -> Row:
    """The UNet's achieved FLOP/s inside real pipeline calls (synchronised timers around each UNet call, so the
    compiled graph is the one the pipeline uses) over the measured peak."""
    from bench.overhead import raw_run

    seeds = list(range(plan.images))
    samples = Samples()
    for _ in range(max(1, plan.repeats)):
        with component_timers(pipe, device) as spent:
            raw_run(pipe, _Settings(plan), PROMPT, seeds, recipe.batch_size)
        samples.add(spent["UNet"], spent["UNet"])
    calls = plan.steps * plan.images * (2 if plan.guidance > 1 else 1)  # samples through the UNet
    achieved = flops_per_sample * calls / samples.median
    mfu = achieved / peak
    lines.append([label, str(recipe.batch_size), f"{flops_per_sample / 1e9:.1f}",
                  f"{samples.median / (plan.steps * plan.images / recipe.batch_size) * 1e3:.1f}",
                  f"{achieved / 1e12:.1f}", f"{mfu:.1%}"])
    log(f"[mfu] UNet {label} b{recipe.batch_size}: {achieved / 1e12:.1f} TFLOP/s = {mfu:.1%} of {peak / 1e12:.0f}")
    compiled = bool(recipe.compile_mode)
    return Row(benchmark=f"UNet MFU, {label}, b{recipe.batch_size} (x2 for guidance)", lab_label="UNet time",
               other_label="", lab=samples, other=None, ratio=mfu, ratio_kind="MFU",
               target=">= 0.45" if compiled else "info", ok=(mfu >= 0.45) if compiled else None,
               details={"tflops": achieved / 1e12, "peak_tflops": peak / 1e12,
                        "gflop_per_sample_forward": flops_per_sample / 1e9})


# -- 2. SD-Turbo ---------------------------------------------------------------------------------------------------
@contextmanager
def component_timers(pipe, device):
    """Seconds spent in the text encoder, the UNet and the VAE decoder (synchronised around each call)."""
    spent = {"text encoder": 0.0, "UNet": 0.0, "VAE decoder": 0.0}
    originals = []

    def wrap(owner, attr, name):
        original = getattr(owner, attr)
        originals.append((owner, attr, original, attr in owner.__dict__))

        def timed(*args, **kwargs):
            sync(device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            sync(device)
            spent[name] += time.perf_counter() - start
            return out

        setattr(owner, attr, timed)

    wrap(pipe.text_encoder, "forward", "text encoder")
    wrap(pipe.unet, "forward", "UNet")
    wrap(pipe.vae, "decode", "VAE decoder")
    try:
        yield spent
    finally:
        for owner, attr, original, was_own in originals:  # a compiled module's forward is its own attribute
            if was_own:
                setattr(owner, attr, original)
            else:
                owner.__dict__.pop(attr, None)


def bench_turbo(plan: Plan, device, dry: bool, work: Path, log) -> tuple[list[Row], Section]:
    import torch

    from core.pipeline.cache import Cache
    from core.pipeline.config import generation_recipe
    from core.pipeline.engine import Engine
    from core.pipeline.engine import Plan as RunPlan
    from core.pipeline.generate import RunRequest, resolve_settings

    if dry:
        from core.pipeline.tiny import build_tiny_sd_pipeline

        torch.manual_seed(0)
        pipe = build_tiny_sd_pipeline(work).to(device.device, device.dtype)
        pipe.set_progress_bar_config(disable=True)
        folder = work / "turbo-dry"
        pipe.save_config(folder)
        (folder / "scheduler").mkdir(parents=True, exist_ok=True)
        pipe.scheduler.save_config(folder / "scheduler")
    else:
        from bench.pipelines import build_sd_turbo_random

        folder, pipe = build_sd_turbo_random(device, work)
    req = RunRequest(PROMPT, n=plan.images, steps=1, guidance=0.0, size=plan.size)
    settings = resolve_settings(req, folder, device)
    row = bench_engine(pipe, settings, plan, device, work, log, "SD-Turbo arch 1 st")
    # Where one engine run's time goes.
    root = Path(tempfile.mkdtemp(prefix="turbo-", dir=work))
    engine = Engine(Cache(root), device, lambda f: pipe)
    with component_timers(pipe, device) as spent, Stopwatch() as sw:
        engine.generate(RunPlan([(req, settings)], [(req, root, settings)]))
    recipe = generation_recipe(device, plan.size, plan.size, plan.images)
    lines = [[name, fmt_s(s), f"{s / sw.wall:.0%}"] for name, s in spent.items()]
    inside = sum(spent.values())
    lines.append(["everything else (scheduler, the lab's work not hidden behind the GPU)",
                  fmt_s(sw.wall - inside), f"{(sw.wall - inside) / sw.wall:.0%}"])
    log(f"[turbo] one engine run of {plan.images} images at b{recipe.batch_size}: {fmt_s(sw.wall)}; "
        + ", ".join(f"{k} {v / sw.wall:.0%}" for k, v in spent.items()))
    section = Section(title=f"SD-Turbo architecture: where {plan.images} images at {plan.size} px, 1 step, batch "
                            f"{recipe.batch_size} spend their {fmt_s(sw.wall)} (synchronised timers)",
                      headers=["part", "time", "share"], lines=lines)
    return [row], section


# -- 3. embedding --------------------------------------------------------------------------------------------------
def write_photos(plan: Plan, folder: Path) -> list[Path]:
    """plan.embed_images JPEGs of plan.photo_size (ImageNet's typical 500 x 375), smooth random colour fields."""
    from concurrent.futures import ThreadPoolExecutor

    from core.pipeline.tiny import tiny_photo

    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        path = folder / f"photo-{i:05d}.jpg"
        tiny_photo(i, i / 97, plan.photo_size, "RGB").save(path, quality=90)
        return path

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(plan.embed_images)))


def bench_embedding(arch: str, photos: list[Path], plan: Plan, device, dry: bool, work: Path, log) -> list[Row]:
    import shutil

    import torch

    from bench.embed import build_clip
    from core.pipeline.cache import Cache, sha256_bytes
    from core.pipeline.config import clip_precision, decode_processes, embed_batch_size
    from core.pipeline.embed import embeddings_for
    from core.pipeline.natural import open_rgb

    clip = build_clip(arch)
    clip.model.to(device.device)
    clip.device, clip.precision = device.device, clip_precision(device)
    n, batch = len(photos), embed_batch_size(device.device)
    items = [(sha256_bytes(p.read_bytes()), (lambda p=p: open_rgb(p))) for p in photos]
    processes = decode_processes(device.device, n) or (2 if dry else 0)
    on_device = torch.stack([clip.preprocess(open_rgb(p)) for p in photos]).to(device.device)

    def bare(autocast: bool) -> Samples:
        samples = Samples()
        for i in range(max(3, plan.repeats) + 1):
            sync(device)
            with Stopwatch() as sw, torch.inference_mode(), \
                    torch.autocast(device.device, dtype=torch.bfloat16, enabled=autocast):
                out = [clip.model.encode_image(on_device[j : j + batch]).float() for j in range(0, n, batch)]
                sync(device)
            del out
            if i:
                samples.add(sw.wall, sw.cpu)
        return samples

    def lab() -> Samples:
        samples = Samples()
        for i in range(max(3, plan.repeats) + 1):  # the first run starts the decoding processes
            root = Path(tempfile.mkdtemp(prefix="emb-", dir=work))
            sync(device)
            with Stopwatch() as sw:
                vectors = embeddings_for(Cache(root), clip.key, items, lambda: clip, files=photos,
                                         processes=processes)
            shutil.rmtree(root, ignore_errors=True)
            if len(vectors) != n:
                raise RuntimeError(f"the lab embedded {len(vectors)} of {n} images")
            if i:
                samples.add(sw.wall, sw.cpu)
        return samples

    fp32, bf16, ours = bare(False), bare(True), lab()
    rates = {k: n / s.median for k, s in (("fp32", fp32), ("bf16", bf16), ("lab", ours))}
    log(f"[embed] {arch}, {n} JPEGs of {plan.photo_size[0]} x {plan.photo_size[1]}, batch {batch}: lab "
        f"({clip.precision}, {processes} decoding processes) {rates['lab']:.4g} images/s; bare encode_image "
        f"{rates['fp32']:.4g} float32, {rates['bf16']:.4g} bf16 autocast")
    details = {"images_per_s": rates, "precision": clip.precision, "decode_processes": processes, "batch": batch}
    big = arch == "ViT-B-32"
    return [Row(benchmark=f"embed {arch} from JPEG files: lab ({clip.precision}) vs bare bf16 encode_image",
                lab_label="lab", other_label="bare bf16", lab=ours, other=bf16,
                ratio=(rates["lab"] if big else bf16.median / ours.median),
                ratio_kind="lab img/s" if big else "lab/bare speed",
                target=">= 5000 img/s" if big else ">= 0.9", ok=(rates["lab"] >= 5000) if big else
                (bf16.median / ours.median >= 0.9), details=details,
                note=f"{arch}: bare encode_image {rates['fp32']:.4g} images/s in float32, {rates['bf16']:.4g} under "
                     f"bf16 autocast (tensors already on the device); the lab {rates['lab']:.4g} from files")]


# -- 4. imports ------------------------------------------------------------------------------------------------------
def import_row() -> Row:
    loaded = sorted(m for m in ("streamlit", "altair", "vl_convert") if m in sys.modules)
    samples = Samples()
    samples.add(0.0, 0.0)
    return Row(benchmark="generation and embedding imported no UI or chart library", lab_label="loaded",
               other_label="", lab=samples, other=None, ratio=float(len(loaded)), ratio_kind="libraries",
               target="0", ok=not loaded, note=f"UI/chart libraries loaded by this run: {loaded or 'none'}")


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
    from core.pipeline.config import DeviceSpec, apply_cpu_threads, select_device
    from core.pipeline.generate import resolve_settings

    plan = replace(DRY if args.dry_run else REAL)
    if args.repeats:
        plan.repeats = args.repeats
    if args.dry_run:
        apply_cpu_threads()
        device = DeviceSpec("cpu", "float32")
    else:
        device = select_device()
    started = time.perf_counter()
    print(f"bench.gpu{' --dry-run (CPU, tiny sizes: checks the script, not a GPU)' if args.dry_run else ''}: "
          f"{device.describe()}; torch {torch.__version__}", flush=True)
    rows, sections = [], []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_name:
        work = Path(tmp_name)
        with Stopwatch() as sw:
            plain, lab, folder = build_sd15(plan, device, args.dry_run, work)
        log(f"[sd15] pipelines built in {fmt_s(sw.wall)}")
        gen_rows, lines, baseline, (page, long) = bench_sd15_eager(plain, lab, plan, device, args.dry_run, log)
        rows += gen_rows
        del plain
        if args.dry_run:
            from core.pipeline.tiny import ensure_tiny_sd_folder

            folder = ensure_tiny_sd_folder(work / "models")
        from core.pipeline.generate import RunRequest

        req = RunRequest(PROMPT, n=plan.images, steps=plan.steps, guidance=plan.guidance, size=plan.size)
        rows.append(bench_engine(lab, resolve_settings(req, folder, device), plan, device, work, log,
                                 f"SD1.5 arch {plan.steps} st"))
        peak, flops = measured_peak(plan, device), unet_flops_per_sample(lab, plan, device)
        mfu_lines: list = []
        rows.append(mfu_row(lab, plan, device, page, "eager", flops, peak, mfu_lines, log))
        rows.append(bench_sd15_compiled(lab, plan, long, baseline, lines, log))
        rows.append(mfu_row(lab, plan, device, long, "compiled" if long.compile_mode else "long-run recipe "
                            "(dry run: not compiled)", flops, peak, mfu_lines, log))
        sections.append(Section(
            title=f"SD 1.5 architecture: {plan.images} images, {plan.size} px, {plan.steps} steps, guidance "
                  f"{plan.guidance:g}", headers=["pipeline", "images/s", "vs defaults", "first call (compile)"],
            lines=lines))
        sections.append(Section(
            title=f"UNet model-FLOPs utilisation inside the pipeline ({PEAK_NOTE}; here {peak / 1e12:.0f} TFLOP/s)",
            headers=["UNet", "batch", "GFLOP/sample", "ms/call", "TFLOP/s", "MFU"], lines=mfu_lines))
        del lab
        if device.device == "cuda":
            torch.cuda.empty_cache()
        turbo_rows, turbo_section = bench_turbo(plan, device, args.dry_run, work, log)
        rows += turbo_rows
        sections.append(turbo_section)
        if device.device == "cuda":
            torch.cuda.empty_cache()
        photos = write_photos(plan, work / "photos")
        for arch in plan.clip_archs:
            rows += bench_embedding(arch, photos, plan, device, args.dry_run, work, log)
        rows.append(import_row())
    total = time.perf_counter() - started
    print()
    print(f"Results ({fmt_s(total)} in all; {device.describe()})")
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
