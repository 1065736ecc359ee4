"""Where things live and what hardware runs them: the one place that decides paths, device, dtype and how the
models use the hardware (threads, batch sizes, memory layout, compilation).

Environment variables (all optional):
  DDL_CACHE_DIR      the disk cache (default: <repo>/cache)
  DDL_DEVICE         cuda | mps | cpu (default: the best available)
  DDL_DTYPE          float16 | bfloat16 | float32 (default: bfloat16 on CUDA GPUs that run it natively (compute
                     capability >= 8.0), float16 on older CUDA GPUs and mps, float32 on cpu)
  DDL_CLIP_PRECISION float32 | bfloat16: CLIP's precision (default: bfloat16 autocast on CUDA GPUs with native bf16,
                     float32 elsewhere; part of an embedding's cache key)
  DDL_CPU_THREADS    threads of torch's CPU kernels and numpy's BLAS (default: 1 on machines with <= 2 usable
                     cores, else the libraries' own defaults)
  DDL_COMPILE        auto (default): torch.compile the UNet and VAE decoder on CUDA when a run is long enough to
                     pay for the compilation; 1 (or a mode, e.g. max-autotune): always on CUDA; 0: never
  DDL_NATURAL_ROOTS  extra folders (os.pathsep-separated) that the UI may read natural photos from
  HF_HOME / HF_HUB_CACHE  where hub weights are downloaded (huggingface_hub's own settings)
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # core/pipeline/config.py -> the repository

_DTYPE_NAMES = ("float16", "bfloat16", "float32")
_DEFAULT_DTYPE = {"mps": "float16", "cpu": "float32"}  # cuda: chosen per GPU, see cuda_default_dtype()

# Batch sizes. A batch is the unit that is committed to the cache and the unit of the progress bar, so a bigger one
# delays the first finished images; it pays only where the device has parallelism left to fill.
# CUDA caps, from the H200 figures in bench/README.md (SD 1.5 architecture, 512 px, 25 steps, guidance 7.5): eager
# bf16 made 5.2 images/s at batch 8 and 5.25 at 16 (saturated: 16 is the cap), compiled 8.3 at 16 and 8.7 at 32.
MAX_BATCH_PIXELS = 8 * 512 * 512  # CPU and mps: 8 images at 512 px, 2 at 1024 px
CUDA_MAX_BATCH_PIXELS = 16 * 512 * 512  # CUDA, eager
CUDA_COMPILED_MAX_BATCH_PIXELS = 32 * 512 * 512  # CUDA, compiled UNet and VAE decoder
CUDA_BYTES_PER_MEGAPIXEL = 2 * 1024**3  # UNet activation memory per image (guidance's doubled batch), generous
CUDA_VAE_BYTES_PER_MEGAPIXEL = 3 * 1024**3  # VAE decoder activations per image decoded at once (no slicing)
CUDA_HEADROOM_BYTES = 1024**3  # left free for the allocator's fragmentation and for CLIP
# CPU and mps: 4. Measured on 2 CPU cores (SD 1.5 architecture, 128 px, 1 step, 4 images): batch 4 made 0.32
# images/s, batch 1 0.25 (the pipeline's fixed per-call costs are shared); more only delays the first images.
NON_CUDA_BATCH_SIZE = 4
# DDL_COMPILE=auto compiles when a run generates at least this many images (per 512 x 512 of image size). From the
# same H200 figures: compiling costs about 60 s per batch shape and saves 1/5.25 - 1/8.3 = 0.07 s per image, so it
# pays for itself after about 850 images: a sweep or a scale-out job, not a page's run of 16.
COMPILE_MIN_IMAGES = 1000


# -- library versions ------------------------------------------------------------------------------------------------
# The libraries that change pixels (their numerics can change between releases): part of a run's cache key.
PIXEL_LIBRARIES = ("diffusers", "torch", "transformers")
# What a run's export, a demo pack and a sweep record.
RUN_LIBRARIES = ("diffusers", "torch", "transformers", "open_clip_torch", "scikit-learn", "numpy", "pillow",
                 "streamlit", "altair")


def library_versions(names: tuple[str, ...] = RUN_LIBRARIES, *, with_python: bool = True) -> dict[str, str]:
    """The one reader of library versions: Python's (unless `with_python` is False), then the installed versions of
    `names`, in order, those not installed left out. Read from the installed metadata, so it never imports them
    (reopening a cached run needs no torch)."""
    out = {"python": platform.python_version()} if with_python else {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def cache_dir() -> Path:
    """The cache root, created on first use. Read at call time so tests can point it at a temp dir."""
    root = Path(os.environ.get("DDL_CACHE_DIR") or REPO_ROOT / "cache").expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def natural_roots() -> list[Path]:
    """Extra folders of natural photos (DDL_NATURAL_ROOTS), each laid out <class>/<image>. The UI reads only
    these and the cache's own natural/ folder."""
    roots = []
    for part in os.environ.get("DDL_NATURAL_ROOTS", "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part).expanduser().resolve())
    return roots


@dataclass(frozen=True)
class DeviceSpec:
    """The device and dtype every model in this process uses."""

    device: str  # "cuda" | "mps" | "cpu"
    dtype_name: str  # "float16" | "bfloat16" | "float32"

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    def describe(self) -> str:
        name = self.device
        if self.device == "cuda":
            import torch

            name = f"cuda ({torch.cuda.get_device_name(0)})"
        return f"{name}, {self.dtype_name}"


def cuda_default_dtype() -> str:
    """bfloat16 on GPUs that run it natively (compute capability >= 8.0: A100, RTX 30xx and newer), else float16.

    Why bf16 there: tensor cores run it exactly as fast as fp16, and its fp32-sized exponent cannot overflow, so no
    NaN (black) images and no fp32 fallback: SDXL's VAE overflows in fp16, which diffusers works around by decoding
    in fp32 (`force_upcast`), slower and heavier. Older GPUs (T4, V100) only emulate bf16, slowly: fp16 there.
    """
    import torch

    major, _ = torch.cuda.get_device_capability()
    return "bfloat16" if major >= 8 else "float16"


def select_device() -> DeviceSpec:
    """cuda (bf16 or fp16) > mps fp16 > cpu fp32, unless DDL_DEVICE / DDL_DTYPE say otherwise. Also sets the CPU
    thread counts (apply_cpu_threads): the statistics need them even when no model is loaded."""
    import torch

    apply_cpu_threads()
    requested = os.environ.get("DDL_DEVICE", "").strip().lower()
    if requested:
        if requested not in ("cuda", "mps", "cpu"):
            raise ValueError(f"DDL_DEVICE={requested!r} is not one of cuda, mps, cpu.")
        if requested == "cuda" and not torch.cuda.is_available():
            raise ValueError("DDL_DEVICE=cuda but torch sees no CUDA device. Unset DDL_DEVICE to use the CPU.")
        device = requested
    elif torch.cuda.is_available():
        device = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    dtype_name = os.environ.get("DDL_DTYPE", "").strip().lower()
    if not dtype_name:
        dtype_name = cuda_default_dtype() if device == "cuda" else _DEFAULT_DTYPE[device]
    if dtype_name not in _DTYPE_NAMES:
        raise ValueError(f"DDL_DTYPE={dtype_name!r} is not one of {', '.join(_DTYPE_NAMES)}.")
    if device == "cpu" and dtype_name == "float16":
        # Half precision on CPU is slow and produces NaNs in the VAE: refuse rather than draw black images.
        raise ValueError("DDL_DTYPE=float16 is not supported on the CPU. Use float32 (the default) or bfloat16.")
    return DeviceSpec(device=device, dtype_name=dtype_name)


def clip_precision(device: DeviceSpec | None = None) -> str:
    """"bfloat16" (CLIP under bf16 autocast) on CUDA GPUs that run bf16 natively, else "float32"; DDL_CLIP_PRECISION
    overrides. Without `device`, this machine's default device (as select_device picks it, without its checks).

    Why bf16 there: ViT-B-32 embedded 21,142 images/s under bf16 autocast on an H200 against 4,611 in float32
    (ViT-L-14: 1,928 vs 281), and the vectors agree with float32 ones within cosine 0.999 (tests/test_embed.py).
    """
    raw = os.environ.get("DDL_CLIP_PRECISION", "").strip().lower()
    if raw:
        if raw not in ("float32", "bfloat16"):
            raise ValueError(f"DDL_CLIP_PRECISION={raw!r} is not float32 or bfloat16.")
        return raw
    if device is None:
        import torch

        wanted = os.environ.get("DDL_DEVICE", "").strip().lower()
        on_cuda = wanted in ("", "cuda") and torch.cuda.is_available()
    else:
        on_cuda = device.device == "cuda"
    return "bfloat16" if on_cuda and cuda_default_dtype() == "bfloat16" else "float32"


# -- CPU threads ---------------------------------------------------------------------------------------------------
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's limit, not the host's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_threads() -> int | None:
    """Threads for torch's CPU kernels and numpy's BLAS: DDL_CPU_THREADS, else 1 on machines with <= 2 usable
    cores, else None (the libraries' own defaults, one per core).

    Why 1 on small machines, measured on a shared 2-vCPU VM: the SD 1.5-architecture pipeline call (128 px, 2
    steps, batch 2) took a median 9.8 s with 1 torch thread and 20.8 s with 2 (7.8 s in the one quiet minute); the
    page's statistics of 1,000 embeddings (20 bootstrap resamples) took 1.2 s with 1 BLAS thread and 8.6-12 s with
    2, and the Vendi score of 10,000 took 75 ms against 0.74-1.0 s. Both libraries' worker threads spin-wait for
    each other, so whenever another process takes one of the two cores, every parallel step waits for it.
    """
    raw = os.environ.get("DDL_CPU_THREADS", "").strip()
    if raw:
        try:
            threads = int(raw)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"DDL_CPU_THREADS={raw!r} is not a positive whole number of threads.")
        return threads
    return 1 if usable_cores() <= 2 else None


def apply_cpu_threads() -> int:
    """Apply cpu_threads() to torch and to the BLAS / OpenMP pools loaded in this process (numpy's OpenBLAS or
    MKL, scikit-learn's OpenMP). Cheap and idempotent: called by select_device and the model loaders.
    Returns torch's thread count."""
    import torch

    threads = cpu_threads()
    if threads is not None:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        try:
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency
        except ImportError:
            pass
        else:
            threadpool_limits(limits=threads)  # a plain call (not `with`): the limit stays for the process
    return torch.get_num_threads()


# -- batch sizes ---------------------------------------------------------------------------------------------------
def auto_batch_size(device: DeviceSpec, width: int, height: int, compiled: bool = False) -> int:
    """Images per pipeline call for this device and image size.

    CUDA: as many as the free GPU memory holds (CUDA_BYTES_PER_MEGAPIXEL per image, CUDA_HEADROOM_BYTES kept free),
    capped where throughput stops growing (CUDA_MAX_BATCH_PIXELS: 16 at 512 px; 32 when `compiled`). Call it with
    the pipeline already loaded, so its weights are not counted as free. Batches change pixels only within float
    tolerance (not part of the cache key). CPU and mps: NON_CUDA_BATCH_SIZE, within MAX_BATCH_PIXELS.
    """
    pixels = max(1, int(width) * int(height))
    if device.device == "cuda":
        import torch

        cap = max(1, (CUDA_COMPILED_MAX_BATCH_PIXELS if compiled else CUDA_MAX_BATCH_PIXELS) // pixels)
        free, _total = torch.cuda.mem_get_info()
        per_image = CUDA_BYTES_PER_MEGAPIXEL * pixels / 1e6
        return int(max(1, min(cap, math.floor((free - CUDA_HEADROOM_BYTES) / per_image))))
    return min(max(1, MAX_BATCH_PIXELS // pixels), NON_CUDA_BATCH_SIZE)


def encode_threads(device: DeviceSpec) -> int:
    """Threads that turn finished images into PNG files (encoding, hashing, fsync) while the pipeline computes
    the next batch. PNG compression and hashing release the GIL. CPU: one (the pipeline keeps the other core busy
    on a 2-core machine); GPU: up to 4, so 32 images of 512 px encode within one denoising step."""
    return 1 if device.device != "cuda" else max(1, min(4, usable_cores() - 1))


def embed_batch_size(device_type: str) -> int:
    """Images per CLIP forward pass on "cuda" | "mps" | "cpu". Larger batches fill a GPU; on a CPU 32 is already
    past the point of gains."""
    return 128 if device_type == "cuda" else 32


def decode_workers(device_type: str) -> int:
    """Threads that decode and preprocess the next batch of images for CLIP while it encodes this one (0: none,
    decode in the encoding thread).

    CPU: none. The encoder is ~98% of the time there (ViT-B-32, 224 px photos, 2 cores: decode 0.6 ms, preprocess
    0.9 ms, encode 69 ms per image), so a worker thread can save at most ~2%, and measured it cost more than that:
    median 4.82 s with one worker, 4.35 s without, 3.99 s for the bare encoder (64 photos, bench "embed").
    GPU: enough threads to keep up with an encoder that takes ~1 ms per image where decoding + preprocessing take
    ~1.5 ms on one core (bench.gpu measures it).
    """
    if device_type == "cpu":
        return 0
    return max(1, min(8, usable_cores() - 1))


# Spawning worker processes costs about a second before the first photo is decoded: worth it for large sets only.
DECODE_PROCESSES_MIN_IMAGES = 256


def decode_processes(device_type: str, images: int) -> int:
    """Worker processes that decode photos for CLIP (core.pipeline.embed.PixelRecipe), 0 for none (threads then).

    CUDA, from DECODE_PROCESSES_MIN_IMAGES photos on: one per core but one. There the encoder outruns threads:
    the lab's threaded path embedded 593 ViT-B-32 images/s from JPEG files on an H200 against 4,207/s for the bare
    encoder (float32) and 21,142/s under bf16 autocast: decoding, serialised on the GIL, was the bottleneck. CPU:
    none (the encoder is ~98% of the time there, see decode_workers)."""
    if device_type != "cuda" or images < DECODE_PROCESSES_MIN_IMAGES:
        return 0
    return max(1, min(16, usable_cores() - 1))


# -- how a pipeline runs on the device: chosen per run ------------------------------------------------------------
@dataclass(frozen=True)
class GenerationRecipe:
    """How core.pipeline.models.apply_recipe prepares a pipeline for one run. None of it changes pixels beyond float
    tolerance (the same order as a different batch composition), so none of it is part of the cache key."""

    batch_size: int
    size: tuple[int, int]  # (width, height): with the batch size, the input shape a compiled model is built for
    vae_slicing: bool  # decode one image at a time: VAE memory stays one image's, whatever the batch size
    channels_last: bool  # UNet in NHWC, the layout compiled convolutions prefer (diffusers' torch.compile recipe)
    compile_mode: str | None  # torch.compile the UNet and the VAE decoder with this mode; None: eager

    def describe(self, batch: bool = True) -> str:
        parts = [f"batch {self.batch_size}"] if batch else []
        parts += [name for name, on in (("channels_last UNet", self.channels_last), ("VAE slicing", self.vae_slicing))
                  if on]
        if self.compile_mode:
            parts.append(f"torch.compile UNet + VAE decoder ({self.compile_mode})")
        return ", ".join(parts) or "eager, no slicing"


def compile_setting() -> str | None:
    """DDL_COMPILE: unset/auto -> "auto"; 0/off -> None; 1/on/true -> "default"; else a torch.compile mode name."""
    raw = os.environ.get("DDL_COMPILE", "").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in ("0", "off", "false", "no"):
        return None
    if raw in ("1", "on", "true", "yes"):
        return "default"
    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if raw not in modes:
        raise ValueError(f"DDL_COMPILE={raw!r}: use auto, 0, 1, or one of {', '.join(modes)}.")
    return raw


def generation_recipe(device: DeviceSpec, width: int, height: int, images: int) -> GenerationRecipe:
    """The lab's recipe for generating `images` images of width x height on `device`.

    CUDA: torch.compile (UNet and VAE decoder) when DDL_COMPILE asks, or, by default, when the run is long enough
    to pay for it (COMPILE_MIN_IMAGES); channels_last with it. Batch size from free memory (auto_batch_size). VAE
    slicing only when decoding the whole batch at once would not fit in the memory left (on a large GPU it only
    serialises the decoder). Attention needs no setting: diffusers uses PyTorch's scaled_dot_product_attention
    (AttnProcessor2_0) by default, and core.pipeline.models.attention_processors() lets a test check nothing switched
    it off. CPU and mps: VAE slicing (on 2 CPU cores decoding 4 images of 256 px one by one took 33 s against 39 s
    batched, measured: less memory and no slower); no compilation, no channels_last (unmeasured there).
    """
    if device.device != "cuda":
        return GenerationRecipe(auto_batch_size(device, width, height), (int(width), int(height)), True, False, None)
    import torch

    setting = compile_setting()
    megapixels = int(width) * int(height) / 1e6
    long_run = images * megapixels >= COMPILE_MIN_IMAGES * 512 * 512 / 1e6
    mode = ("default" if long_run else None) if setting == "auto" else setting
    batch = auto_batch_size(device, width, height, compiled=mode is not None)
    free, _total = torch.cuda.mem_get_info()
    unet_bytes = batch * CUDA_BYTES_PER_MEGAPIXEL * megapixels
    vae_bytes = batch * CUDA_VAE_BYTES_PER_MEGAPIXEL * megapixels
    slicing = unet_bytes + vae_bytes > free - CUDA_HEADROOM_BYTES
    return GenerationRecipe(batch, (int(width), int(height)), slicing, mode is not None, mode)
