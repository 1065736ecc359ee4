"""Where things live and what hardware runs them: the one place that decides paths, device and dtype.

Environment variables (all optional):
  DDL_CACHE_DIR   the disk cache (default: <repo>/cache)
  DDL_DEVICE      cuda | mps | cpu (default: the best available)
  DDL_DTYPE       float16 | bfloat16 | float32 (default: float16 on cuda/mps, float32 on cpu)
  DDL_NATURAL_ROOTS  extra folders (os.pathsep-separated) that the UI may read natural photos from
  HF_HOME / HF_HUB_CACHE  where hub weights are downloaded (huggingface_hub's own settings)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_DTYPE_NAMES = ("float16", "bfloat16", "float32")
_DEFAULT_DTYPE = {"cuda": "float16", "mps": "float16", "cpu": "float32"}


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


def select_device() -> DeviceSpec:
    """cuda fp16 > mps fp16 > cpu fp32, unless DDL_DEVICE / DDL_DTYPE say otherwise."""
    import torch

    requested = os.environ.get("DDL_DEVICE", "").strip().lower()
    if requested:
        if requested not in _DEFAULT_DTYPE:
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
    dtype_name = os.environ.get("DDL_DTYPE", "").strip().lower() or _DEFAULT_DTYPE[device]
    if dtype_name not in _DTYPE_NAMES:
        raise ValueError(f"DDL_DTYPE={dtype_name!r} is not one of {', '.join(_DTYPE_NAMES)}.")
    if device == "cpu" and dtype_name == "float16":
        # Half precision on CPU is slow and produces NaNs in the VAE: refuse rather than draw black images.
        raise ValueError("DDL_DTYPE=float16 is not supported on the CPU. Use float32 (the default) or bfloat16.")
    return DeviceSpec(device=device, dtype_name=dtype_name)
