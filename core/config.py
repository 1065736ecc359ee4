"""Where things live and what hardware runs them: the one place that decides paths, device, dtype and how the
models use the hardware (threads, batch sizes, memory layout, compilation).

Environment variables (all optional):
  DDL_CACHE_DIR      the disk cache (default: <repo>/cache)
  DDL_DEVICE         cuda | mps | cpu (default: the best available)
  DDL_DTYPE          float16 | bfloat16 | float32 (default: bfloat16 on CUDA GPUs that run it natively (compute
                     capability >= 8.0), float16 on older CUDA GPUs and mps, float32 on cpu)
  DDL_CPU_THREADS    threads of torch's CPU kernels and numpy's BLAS (default: 1 on machines with <= 2 usable
                     cores, else the libraries' own defaults)
  DDL_COMPILE        1 (or a torch.compile mode, e.g. max-autotune): compile the UNet on CUDA (default: off)
  DDL_NATURAL_ROOTS  extra folders (os.pathsep-separated) that the UI may read natural photos from
  HF_HOME / HF_HUB_CACHE  where hub weights are downloaded (huggingface_hub's own settings)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_DTYPE_NAMES = ("float16", "bfloat16", "float32")
_DEFAULT_DTYPE = {"mps": "float16", "cpu": "float32"}  # cuda: chosen per GPU, see cuda_default_dtype()

# Batch sizes. A batch is the unit that is committed to the cache and the unit of the progress bar, so a bigger one
# delays the first finished images; it pays only where the device has parallelism left to fill.
MAX_BATCH_PIXELS = 8 * 512 * 512  # cap: 8 images at 512 px, 2 at 1024 px (a GPU is saturated well before that)
CUDA_BYTES_PER_MEGAPIXEL = 2 * 1024**3  # activation memory per image (with guidance's doubled batch), generous
CUDA_HEADROOM_BYTES = 1024**3  # left free for the allocator's fragmentation and for CLIP
# CPU and mps: 4. Measured on 2 CPU cores (SD 1.5 architecture, 128 px, 1 step, 4 images): batch 4 made 0.32
# images/s, batch 1 0.25 (the pipeline's fixed per-call costs are shared); more only delays the first images.
NON_CUDA_BATCH_SIZE = 4


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
def auto_batch_size(device: DeviceSpec, width: int, height: int) -> int:
    """Images per pipeline call for this device and image size.

    CUDA: as many as the free GPU memory holds (CUDA_BYTES_PER_MEGAPIXEL per image, CUDA_HEADROOM_BYTES kept free),
    capped at MAX_BATCH_PIXELS: 8 at 512 px. Call it with the pipeline already loaded, so its weights are not
    counted as free. Batches change pixels only within float tolerance (not part of the cache key).
    CPU and mps: NON_CUDA_BATCH_SIZE, within the same pixel cap.
    """
    pixels = max(1, int(width) * int(height))
    cap = max(1, MAX_BATCH_PIXELS // pixels)
    if device.device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        per_image = CUDA_BYTES_PER_MEGAPIXEL * pixels / 1e6
        return int(max(1, min(cap, math.floor((free - CUDA_HEADROOM_BYTES) / per_image))))
    return min(cap, NON_CUDA_BATCH_SIZE)


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


# -- how a loaded pipeline uses the device -----------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineTuning:
    """How core.models.load_pipeline prepares a pipeline for the device. None of it changes pixels beyond float
    tolerance (the same order as a different batch composition), so none of it is part of the cache key."""

    channels_last: bool  # UNet weights and activations in NHWC: the layout cuDNN's fp16/bf16 convolutions prefer
    vae_slicing: bool  # decode one image at a time: VAE memory stays one image's, whatever the batch size
    compile_mode: str | None  # torch.compile the UNet with this mode ("default", "max-autotune", ...); None: off

    def describe(self) -> str:
        parts = [name for name, on in (("channels_last UNet", self.channels_last), ("VAE slicing", self.vae_slicing))
                 if on]
        if self.compile_mode:
            parts.append(f"torch.compile UNet ({self.compile_mode})")
        return ", ".join(parts) or "diffusers defaults"


def compile_mode() -> str | None:
    """DDL_COMPILE: unset/0/off -> None; 1/on/true -> "default"; anything else is a torch.compile mode name."""
    raw = os.environ.get("DDL_COMPILE", "").strip().lower()
    if raw in ("", "0", "off", "false", "no"):
        return None
    if raw in ("1", "on", "true", "yes"):
        return "default"
    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if raw not in modes:
        raise ValueError(f"DDL_COMPILE={raw!r}: use 1 to compile, or one of {', '.join(modes)}.")
    return raw


def pipeline_tuning(device: DeviceSpec) -> PipelineTuning:
    """The lab's settings for a pipeline on `device`.

    CUDA: channels_last UNet, VAE slicing (the memory auto_batch_size counts on), torch.compile only when DDL_COMPILE
    asks (it costs a minute or more of compilation per new batch shape, worth it only for long sweeps).
    Attention needs no setting: diffusers uses PyTorch's scaled_dot_product_attention (AttnProcessor2_0) by
    default, and core.models.attention_processors() lets a test check nothing switched it off.
    CPU and mps: VAE slicing only: the decoder's activations are the largest, and on 2 CPU cores decoding 4 images
    of 256 px one by one took 33 s against 39 s batched (measured): less memory and no slower. channels_last and
    compile are left off there (unmeasured).
    """
    if device.device == "cuda":
        return PipelineTuning(channels_last=True, vae_slicing=True, compile_mode=compile_mode())
    return PipelineTuning(channels_last=False, vae_slicing=True, compile_mode=None)
