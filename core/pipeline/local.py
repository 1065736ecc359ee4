"""Models on this machine: diffusers pipeline folders and open_clip checkpoints under the configured model roots.

A path that comes from the UI or from a URL is resolved (symlinks and '..' included) and must lie inside one of the
roots: a shared link cannot make the app read an arbitrary file. Roots come from DDL_MODEL_ROOTS (paths separated
by ':'), default <cache>/local-models.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.pipeline.config import cache_dir
from core.pipeline.registry import (
    CLIP_MODELS,
    GENERATORS,
    ClipPreset,
    GeneratorPreset,
    local_clip_preset,
    local_generator_preset,
)

LOCAL_PREFIX = "local:"
PIPELINE_MARKER = "model_index.json"  # what save_pretrained() writes at the top of every diffusers pipeline folder


def model_roots() -> list[Path]:
    raw = os.environ.get("DDL_MODEL_ROOTS")
    roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()] if raw else []
    return [r.resolve() for r in roots] or [(cache_dir() / "local-models").resolve()]


def confine(path_text: str, roots: list[Path]) -> Path:
    """The resolved path, if it exists inside one of `roots`; else ValueError saying what to do."""
    if not path_text or not path_text.strip():
        raise ValueError("No path given: type the folder of a model inside one of the model folders.")
    try:
        path = Path(path_text.strip()).expanduser().resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"{path_text!r} does not exist on this machine ({exc.__class__.__name__}).") from exc
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise ValueError(f"{path} is outside the model folders this app may read ({', '.join(map(str, roots))}). "
                         f"Fix: move or link the model there, or add its folder to DDL_MODEL_ROOTS.")
    return path


def _pipeline_folders(root: Path) -> list[Path]:
    """Pipeline folders at the root or up to two levels below it (e.g. <root>/<org>/<model>)."""
    if not root.is_dir():
        return []
    candidates = [root, *root.glob("*"), *root.glob("*/*")]
    return sorted(p for p in candidates if (p / PIPELINE_MARKER).is_file())


def local_generators(roots: list[Path] | None = None) -> dict[str, GeneratorPreset]:
    found = {}
    for root in roots if roots is not None else model_roots():
        for folder in _pipeline_folders(root):
            preset = local_generator_preset(str(folder))
            found[preset.key] = preset
    return found


def all_generators() -> dict[str, GeneratorPreset]:
    """The registry's presets, then every pipeline folder found under the model roots."""
    return {**GENERATORS, **local_generators()}


def generator_preset(key: str, roots: list[Path] | None = None) -> GeneratorPreset:
    """The preset a key names: a registry key, or 'local:<folder>' confined to the model roots and checked to be
    a diffusers pipeline folder. KeyError/ValueError messages say what to do."""
    if key in GENERATORS:
        return GENERATORS[key]
    if not key.startswith(LOCAL_PREFIX):
        raise KeyError(f"Unknown generator '{key}'. Pick one of: {', '.join(GENERATORS)}, or a local folder.")
    folder = confine(key[len(LOCAL_PREFIX):], roots if roots is not None else model_roots())
    if not (folder / PIPELINE_MARKER).is_file():
        raise ValueError(f"{folder} is not a diffusers pipeline folder: it has no {PIPELINE_MARKER}. Fix: choose the "
                         f"folder that pipe.save_pretrained(...) wrote (it holds model_index.json, unet/, vae/, "
                         f"text_encoder/, tokenizer/, scheduler/).")
    return local_generator_preset(str(folder))


def local_clip_models(roots: list[Path] | None = None) -> dict[str, ClipPreset]:
    """open_clip checkpoints under the roots named '<architecture>.<anything>.safetensors', e.g.
    'ViT-B-32.my-finetune.safetensors' (the architecture must be one open_clip knows). Only safetensors: no pickle."""
    files = [f for root in (roots if roots is not None else model_roots()) if root.is_dir()
             for f in sorted([*root.glob("*.safetensors"), *root.glob("*/*.safetensors")])]
    if not files:
        return {}  # the common case: no need to import open_clip just to draw the sidebar
    import open_clip

    known = set(open_clip.list_models())
    found = {}
    for file in files:
        arch = file.name.split(".")[0]
        if arch in known:
            preset = local_clip_preset(arch, str(file))
            found[preset.key] = preset
    return found


def all_clip_models() -> dict[str, ClipPreset]:
    return {**CLIP_MODELS, **local_clip_models()}
