"""Model and prompt registries, as data. Adding a model is adding an entry, never a branch in code."""

from __future__ import annotations

from dataclasses import dataclass

TINY_RANDOM = "tiny-random"


@dataclass(frozen=True)
class GeneratorPreset:
    key: str
    label: str
    model_id: str  # a hub repo id, or TINY_RANDOM (built in code); local folders get a preset made on the fly
    default_steps: int
    max_steps: int
    default_guidance: float
    supports_guidance: bool  # turbo (adversarially distilled) models ignore classifier-free guidance
    default_size: int
    size_multiple: int  # latent factor x UNet down-sampling: sizes must be a multiple of this
    note: str = ""


GENERATORS: dict[str, GeneratorPreset] = {
    p.key: p
    for p in (
        GeneratorPreset(
            "sd-turbo", "SD-Turbo (fast, 1-4 steps)", "stabilityai/sd-turbo",
            default_steps=2, max_steps=4, default_guidance=0.0, supports_guidance=False,
            default_size=512, size_multiple=8,
            note="Distilled SD 2.1: one to four steps, ignores guidance.",
        ),
        GeneratorPreset(
            "sd-1.5", "Stable Diffusion 1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5",
            default_steps=25, max_steps=150, default_guidance=7.5, supports_guidance=True,
            default_size=512, size_multiple=8,
            note="The model most TTI-as-training-data papers used; CLIP ViT-L/14 text encoder.",
        ),
        GeneratorPreset(
            "sd-2.1-base", "Stable Diffusion 2.1 base", "stabilityai/stable-diffusion-2-1-base",
            default_steps=25, max_steps=150, default_guidance=7.5, supports_guidance=True,
            default_size=512, size_multiple=8,
            note="OpenCLIP ViT-H/14 text encoder.",
        ),
        GeneratorPreset(
            "sdxl-turbo", "SDXL-Turbo", "stabilityai/sdxl-turbo",
            default_steps=1, max_steps=4, default_guidance=0.0, supports_guidance=False,
            default_size=512, size_multiple=8,
            note="Distilled SDXL: one to four steps, ignores guidance.",
        ),
        GeneratorPreset(
            TINY_RANDOM, "tiny-random (offline test model: images are noise)", TINY_RANDOM,
            default_steps=4, max_steps=50, default_guidance=7.5, supports_guidance=True,
            default_size=64, size_multiple=16,
            note="Built in code with random weights so every code path runs offline. Its images are noise.",
        ),
    )
}
DEFAULT_GENERATOR = "sd-turbo"


def local_generator_preset(folder: str) -> GeneratorPreset:
    """A preset for a diffusers folder on disk (SD 1.x/2.x-style defaults; the folder's own scheduler)."""
    return GeneratorPreset(
        f"local:{folder}", f"local folder {folder}", folder,
        default_steps=25, max_steps=150, default_guidance=7.5, supports_guidance=True,
        default_size=512, size_multiple=8, note="A diffusers pipeline folder on this machine.",
    )


@dataclass(frozen=True)
class ClipPreset:
    key: str
    label: str
    arch: str  # an open_clip model name
    pretrained: str | None  # an open_clip pretrained tag, a local checkpoint path, or None for random weights
    note: str = ""


CLIP_MODELS: dict[str, ClipPreset] = {
    p.key: p
    for p in (
        ClipPreset("ViT-B-32/laion2b", "ViT-B/32, LAION-2B", "ViT-B-32", "laion2b_s34b_b79k",
                   note="open_clip's strong general-purpose ViT-B/32."),
        ClipPreset("ViT-L-14/openai", "ViT-L/14, OpenAI", "ViT-L-14", "openai",
                   note="The text encoder SD 1.x is conditioned on: images are judged in the generator's own space."),
        ClipPreset(TINY_RANDOM, "tiny-random (offline test model: random embeddings)", "ViT-S-32", None,
                   note="open_clip ViT-S-32 with random weights (seed 0): zero-shot results are chance."),
    )
}
DEFAULT_CLIP = "ViT-B-32/laion2b"


def local_clip_preset(arch: str, checkpoint: str) -> ClipPreset:
    """A preset for a local open_clip checkpoint file (safetensors preferred)."""
    return ClipPreset(f"local:{arch}:{checkpoint}", f"{arch} from {checkpoint}", arch, checkpoint,
                      note="A local open_clip checkpoint.")


# Class name -> prompt. The lab's default is the first; the others are common alternatives.
PROMPT_TEMPLATES: dict[str, str] = {
    "a photo of a {class}": "a photo of a {class}",
    "{class}": "{class}",
    "a picture of a {class}": "a picture of a {class}",
}
DEFAULT_TEMPLATE = "a photo of a {class}"


def prompt_for_class(class_name: str, template: str = DEFAULT_TEMPLATE) -> str:
    if "{class}" not in template:
        raise ValueError(f"The prompt template {template!r} has no '{{class}}' placeholder to put the class name in.")
    return template.replace("{class}", class_name.replace("_", " "))
