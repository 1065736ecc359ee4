"""Finding and loading model weights: hub id, else local path, else the built-in tiny-random models.

Every failure to get weights raises ModelUnavailableError whose message names the model, where the lab looked and
how to fix it. Offline (HF_HUB_OFFLINE=1, or no route to the hub) it fails within about two seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from core.pipeline.config import (
    DeviceSpec,
    GenerationRecipe,
    apply_cpu_threads,
    cache_dir,
    clip_precision,
    generation_recipe,
)
from core.pipeline.registry import TINY_RANDOM, ClipPreset, GeneratorPreset

# What a text-to-image run needs from a hub repo: configs, tokenizer files and safetensors weights. This skips the
# multi-GB single-file checkpoints, .bin duplicates and the safety checker at the root of SD repos.
_PIPELINE_FILES = ["model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                   "*/model.safetensors"]
_PIPELINE_SKIP = ["safety_checker/*", "feature_extractor/*"]


class ModelUnavailableError(RuntimeError):
    """The weights for a model cannot be had. The message says what, where and how to fix it."""


ProgressFn = Callable[[float, str], None]  # (fraction 0..1, message)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_reachable(timeout_s: float = 1.5) -> bool:
    """A TCP connect to the hub: fails in <= timeout_s where huggingface_hub's own retries take 20-40 s."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _require_hub(model: str, looked_in: Path) -> None:
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif not _hub_reachable():
        from huggingface_hub import constants

        reason = f"the hub ({constants.ENDPOINT}) cannot be reached from this machine"
    else:
        return
    raise ModelUnavailableError(
        f"The weights of '{model}' are not on this machine and {reason}. Looked in {looked_in}. "
        f"Fix: connect to the internet once (and unset HF_HUB_OFFLINE) so the lab can download them, or copy a "
        f"downloaded copy into that folder (HF_HUB_CACHE chooses it), or pick a local folder / the 'tiny-random' "
        f"offline model."
    )


def _tqdm_reporting(progress: ProgressFn | None, label: str):
    """A tqdm class for huggingface_hub that forwards download progress to `progress` (None: silent)."""
    from tqdm.auto import tqdm

    class _Reporting(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            super().update(n)
            if progress and self.total:
                progress(min(1.0, self.n / self.total), f"Downloading {label}")

    return _Reporting


# -- generators ----------------------------------------------------------------------------------------------------
def locate_generator(preset: GeneratorPreset, progress: ProgressFn | None = None, download: bool = True) -> Path:
    """The diffusers folder holding `preset`'s pipeline, downloading it from the hub if needed and allowed."""
    if preset.model_id == TINY_RANDOM:
        from core.pipeline.tiny import ensure_tiny_sd_folder

        return ensure_tiny_sd_folder(cache_dir() / "models")
    local = Path(preset.model_id).expanduser()
    if local.is_absolute() or preset.model_id.startswith((".", "~")) or local.exists():
        if not (local / "model_index.json").is_file():
            raise ModelUnavailableError(
                f"'{preset.model_id}' is not a diffusers pipeline folder: it has no model_index.json. "
                f"Fix: point to the folder written by `pipeline.save_pretrained(...)`, or use a hub id."
            )
        return local.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(preset.model_id, allow_patterns=_PIPELINE_FILES,
                                      ignore_patterns=_PIPELINE_SKIP, local_files_only=True))
    except Exception:
        pass
    if not download:
        raise ModelUnavailableError(f"'{preset.model_id}' is not downloaded yet (looked in {hub_cache_dir()}).")
    _require_hub(preset.model_id, hub_cache_dir())
    try:
        return Path(snapshot_download(preset.model_id, allow_patterns=_PIPELINE_FILES, ignore_patterns=_PIPELINE_SKIP,
                                      tqdm_class=_tqdm_reporting(progress, preset.model_id)))
    except Exception as exc:
        raise ModelUnavailableError(
            f"Downloading '{preset.model_id}' from the hub failed: {exc}. Check the id on huggingface.co and your "
            f"connection; gated models need `hf auth login` first."
        ) from exc


def generator_present(preset: GeneratorPreset) -> bool:
    """Whether the weights are on this machine already (no network, no model load)."""
    if preset.model_id == TINY_RANDOM:
        return True
    try:
        locate_generator(preset, download=False)
        return True
    except ModelUnavailableError:
        return False


def folder_revision(folder: Path) -> str:
    """A revision for a pipeline folder: the hub commit for a hub snapshot, else a hash of its configs and sizes."""
    if folder.parent.name == "snapshots":
        return folder.name
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rel = p.relative_to(folder).as_posix()
            h.update(rel.encode())
            # Configs by content, weights by size: hashing gigabytes of weights on every start is too slow.
            h.update(p.read_bytes() if p.suffix in (".json", ".txt") else str(p.stat().st_size).encode())
    return "local-" + h.hexdigest()[:16]


def read_scheduler_config(folder: Path) -> dict:
    cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return {k: v for k, v in cfg.items() if k != "_diffusers_version"}


def read_pipeline_class(folder: Path) -> str:
    return json.loads((folder / "model_index.json").read_text())["_class_name"]


def load_pipeline(folder: Path, device: DeviceSpec):
    """Load a text-to-image pipeline from a local folder onto the lab's device, ready to generate."""
    from diffusers import DiffusionPipeline

    apply_cpu_threads()
    try:
        pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=device.dtype, local_files_only=True,
                                                 safety_checker=None, requires_safety_checker=False)
    except TypeError:  # pipelines without a safety checker reject those arguments
        pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=device.dtype, local_files_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"Loading the pipeline in {folder} failed: {exc}. Fix: check that the folder is a complete "
            f"diffusers text-to-image pipeline (model_index.json plus its component folders)."
        ) from exc
    pipe = pipe.to(device.device)
    pipe.set_progress_bar_config(disable=True)
    apply_recipe(pipe, generation_recipe(device, 512, 512, 0))  # the device's defaults until a run chooses
    return pipe


def apply_recipe(pipe, recipe: GenerationRecipe) -> bool:
    """Prepare a loaded pipeline for a run as `recipe` says (core.pipeline.config.generation_recipe), in place. Returns
    True when the run's first batch will compile (a compiled pipeline meets this batch shape for the first time).

    Used by the engine before every run, and by the benchmarks on pipelines built in memory, so both run the same
    settings. Compilation is lazy (on the first call for each input shape) and kept for the process: the shared
    pipeline stays compiled for later runs. Not part of the cache key: kernel fusion reorders float operations,
    which moves pixels by float rounding only, as a different batch composition does (see README, "Settings")."""
    import torch

    unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing() if recipe.vae_slicing else vae.disable_slicing()
    if unet is not None and recipe.channels_last:
        unet.to(memory_format=torch.channels_last)
    if not recipe.compile_mode or unet is None:
        return False
    if not hasattr(unet, "_orig_mod"):  # compile once per process; the compiled modules replace the eager ones
        pipe.unet = torch.compile(unet, mode=recipe.compile_mode, fullgraph=True)
        if vae is not None:
            vae.decode = torch.compile(vae.decode, mode=recipe.compile_mode)
    shapes = pipe.__dict__.setdefault("_ddl_compiled_shapes", set())
    shape = (recipe.batch_size, recipe.size)
    first = shape not in shapes
    shapes.add(shape)
    return first


def attention_processors(pipe) -> dict[str, set[str]]:
    """The attention processor classes each component of `pipe` uses, e.g. {"unet": {"AttnProcessor2_0"}}.

    AttnProcessor2_0 is PyTorch's fused scaled_dot_product_attention (flash / memory-efficient kernels on CUDA):
    diffusers' default, and what the lab relies on for speed and memory. Anything else means a setting turned it
    off (an old config, xformers, `set_default_attn_processor()`)."""
    out = {}
    for name in ("unet", "vae", "transformer"):
        module = getattr(pipe, name, None)
        module = getattr(module, "_orig_mod", module)  # a torch.compile'd module wraps the original
        procs = getattr(module, "attn_processors", None)
        if procs:
            out[name] = {type(p).__name__ for p in procs.values()}
    return out


# -- CLIP --------------------------------------------------------------------------------------------------------
@dataclass
class ClipModel:
    preset: ClipPreset
    key: str  # cache key of (architecture, weights): embeddings are stored under it
    model: object
    preprocess: object
    tokenizer: object
    device: str
    precision: str = "float32"  # "bfloat16": encoded under torch.autocast (core.pipeline.config.clip_precision)

    def autocast(self):
        """The context every CLIP forward pass runs in: bf16 autocast, or nothing, as `precision` says."""
        import torch

        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")


def _clip_hub_repo(preset: ClipPreset) -> str | None:
    """The hub repo open_clip downloads `preset`'s weights from ('org/name/' in its pretrained table)."""
    import open_clip

    hub = (open_clip.get_pretrained_cfg(preset.arch, preset.pretrained) or {}).get("hf_hub")
    return "/".join(hub.split("/")[:2]) if hub else None


def clip_present(preset: ClipPreset) -> bool:
    if preset.pretrained is None:
        return True
    if Path(preset.pretrained).expanduser().is_file():
        return True
    repo = _clip_hub_repo(preset)
    if repo is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, f), str)
               for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                         "open_clip_pytorch_model.safetensors", "pytorch_model.bin"))


def clip_key(preset: ClipPreset, precision: str | None = None) -> str:
    """The cache key of `preset`'s embeddings at `precision` (default: this machine's,
    core.pipeline.config.clip_precision). Float32 keys are the model's base key; reduced precision appends
    ":<precision>", so a vector made elsewhere at another precision is still found (Cache.get_embeddings)."""
    import open_clip
    import torch

    from core.pipeline.cache import PRECISION_SEPARATOR, key_of

    weights: object = preset.pretrained
    if preset.pretrained is None:
        from core.pipeline.tiny import TINY_SEED

        weights = {"random_seed": TINY_SEED, "torch": torch.__version__}
    elif Path(preset.pretrained).expanduser().is_file():
        p = Path(preset.pretrained).expanduser()
        weights = {"file_sha256": _file_sha256(p)}
    base = key_of({"arch": preset.arch, "weights": weights, "open_clip": open_clip.__version__, "schema": 1})
    precision = precision or clip_precision()
    return base if precision == "float32" else f"{base}{PRECISION_SEPARATOR}{precision}-autocast"


_FILE_SHA_MEMO: dict[tuple[str, int, float], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime)
    if memo_key not in _FILE_SHA_MEMO:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_SHA_MEMO[memo_key] = h.hexdigest()
    return _FILE_SHA_MEMO[memo_key]


def load_clip(preset: ClipPreset, device: DeviceSpec, progress: ProgressFn | None = None) -> ClipModel:
    """An open_clip model in eval mode: float32 weights; on CUDA GPUs with native bf16 its forward passes run under
    bf16 autocast (core.pipeline.config.clip_precision), and its key says so."""
    import open_clip

    apply_cpu_threads()
    if preset.pretrained is None:
        from core.pipeline.tiny import build_tiny_clip

        model, preprocess, tokenizer = build_tiny_clip(preset.arch)
    else:
        local = Path(preset.pretrained).expanduser()
        if not local.is_file() and not clip_present(preset):
            _require_hub(f"{preset.arch} / {preset.pretrained}", hub_cache_dir())
        if progress:
            progress(0.0, f"Loading CLIP {preset.label}")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                preset.arch, pretrained=str(local) if local.is_file() else preset.pretrained)
        except Exception as exc:
            raise ModelUnavailableError(
                f"Loading CLIP '{preset.arch}' with weights '{preset.pretrained}' failed: {exc}. Fix: check that "
                f"the checkpoint is an open_clip checkpoint for the {preset.arch} architecture (safetensors "
                f"preferred) or a pretrained tag listed by open_clip.list_pretrained()."
            ) from exc
        tokenizer = open_clip.get_tokenizer(preset.arch)
    model = model.to(device.device).eval()
    precision = clip_precision(device)
    return ClipModel(preset, clip_key(preset, precision), model, preprocess, tokenizer, device.device, precision)


def unavailable_models(generator: GeneratorPreset | None = None, clip: ClipPreset | None = None) -> list[str]:
    """What a run needs that is neither on this machine nor downloadable now: one message per model, so the user
    fixes both at once rather than meeting the second after the first one's run. Models already here cost a look
    at the disk; a missing one costs the offline check (HF_HUB_OFFLINE, else a TCP connect of at most ~1.5 s)."""
    problems = []
    if generator is not None and not generator_present(generator):
        try:
            _require_hub(generator.model_id, hub_cache_dir())
        except ModelUnavailableError as exc:
            problems.append(f"Generator: {exc}")
    if clip is not None and not clip_present(clip):
        try:
            _require_hub(f"{clip.arch} ({clip.pretrained})", hub_cache_dir())
        except ModelUnavailableError as exc:
            problems.append(f"CLIP: {exc}")
    return problems
