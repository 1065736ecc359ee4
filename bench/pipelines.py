"""The pipelines the benchmarks run: the lab's tiny-random preset, and SD 1.5's and SD-Turbo's architectures with
random weights.

Random weights run at the speed of real ones (same shapes, same kernels), so the SD 1.5 model measures real-size
costs offline without a 4 GB download.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.pipeline.config import DeviceSpec

SD15_PIPELINE_CLASS = "StableDiffusionPipeline"
# What SD 1.5 and SD 2.1 (SD-Turbo) share: the UNet's block layout and the VAE.
SD_UNET_BLOCKS = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    norm_num_groups=32, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
)
SD_VAE = dict(
    sample_size=512, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, act_fn="silu",
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)


def load_tiny(device: DeviceSpec):
    """The tiny-random preset exactly as the Diversity page gets it: locate_generator + load_pipeline."""
    from core.pipeline.models import load_pipeline, locate_generator
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    folder = locate_generator(GENERATORS[TINY_RANDOM])
    return folder, load_pipeline(folder, device)


def build_sd15_random(device: DeviceSpec, work_dir: Path, scheduler: str = "ddim", tuned: bool = True):
    """A StableDiffusionPipeline with SD 1.5's published component configs and random weights (seed 0).

    Returns (config_folder, pipe). config_folder holds only model_index.json and scheduler/scheduler_config.json
    (no weights): enough for `core.pipeline.generate.resolve_settings`, so the lab side gets its settings the lab's way.
    `scheduler`: "ddim" (one UNet call per step) or "pndm" (SD 1.5's shipped scheduler; one extra UNet call).
    `tuned`: prepared as core.pipeline.models.load_pipeline prepares a loaded one (core.pipeline.models.apply_recipe
    with the device's default recipe); False: the diffusers defaults.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from core.pipeline.tiny import build_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD_UNET_BLOCKS, cross_attention_dim=768, attention_head_dim=8, norm_eps=1e-5,
                                downsample_padding=1)
    vae = AutoencoderKL(**SD_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768,
        vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False,
                  steps_offset=1, clip_sample=False, num_train_timesteps=1000)
    if scheduler == "pndm":
        sched = PNDMScheduler(skip_prk_steps=True, **common)
    elif scheduler == "ddim":
        sched = DDIMScheduler(**common)
    else:
        raise ValueError(f"scheduler must be 'ddim' or 'pndm', not {scheduler!r}")
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(work_dir / "tok"),
        scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if device.dtype != torch.float32:  # built in float32; a no-op cast only logs a warning
        pipe = pipe.to(dtype=device.dtype)
    pipe = pipe.to(device.device)
    pipe.set_progress_bar_config(disable=True)
    if tuned:
        from core.pipeline.config import generation_recipe
        from core.pipeline.models import apply_recipe

        apply_recipe(pipe, generation_recipe(device, 512, 512, 0))

    folder = work_dir / "sd15-arch-random"
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": SD15_PIPELINE_CLASS, "bench": "random"}))
    sched.save_config(folder / "scheduler")
    return folder, pipe


SD_TURBO_PIPELINE_CLASS = "StableDiffusionPipeline"


def build_sd_turbo_random(device: DeviceSpec, work_dir: Path):
    """SD-Turbo's architecture (SD 2.1-base: UNet with linear projections and 1024-wide cross-attention, the
    OpenCLIP ViT-H/14 text encoder of 23 layers, SD's VAE; Euler with trailing timesteps, 1 step, no guidance)
    with random weights (seed 0), built directly on `device` in its dtype. Returns (config_folder, pipe), as
    build_sd15_random."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from core.pipeline.tiny import build_clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device.device):
        unet = UNet2DConditionModel(**SD_UNET_BLOCKS, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                    use_linear_projection=True)
        vae = AutoencoderKL(**SD_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
            projection_dim=1024, vocab_size=49408, max_position_embeddings=77, hidden_act="gelu",
            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        ))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="trailing", steps_offset=1, num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(work_dir / "tok"),
        scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if device.dtype != torch.float32:
        pipe = pipe.to(dtype=device.dtype)
    pipe.set_progress_bar_config(disable=True)
    folder = work_dir / "sd-turbo-arch-random"
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": SD_TURBO_PIPELINE_CLASS, "bench": "random"}))
    sched.save_config(folder / "scheduler")
    return folder, pipe
