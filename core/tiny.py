"""Tiny random-weight models built in code from the real diffusers / transformers / open_clip classes.

They let every code path a user hits with real weights run offline, in tests and CI. Weights come from a fixed
seed, so two processes build identical models and the disk cache stays valid between them.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

TINY_SEED = 0
TINY_BUILD_VERSION = "1"  # bump when the configs below change: it is part of the model's revision


def _clip_bpe_path() -> Path:
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    # The byte -> printable-unicode table of GPT-2/CLIP BPE (same as open_clip.tokenizer.bytes_to_unicode).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """Write vocab.json + merges.txt of the CLIP BPE tokenizer from the file open_clip ships (no download)."""
    lines = gzip.open(_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def build_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_tokenizer_files(folder)
    # Positional paths on purpose: transformers 5 ignores vocab_file=/merges_file= keywords and yields garbage ids.
    return CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=77)


def build_tiny_sd_pipeline(work_dir: Path):
    """A ~3 M-parameter StableDiffusionPipeline with random weights (seed TINY_SEED)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(TINY_SEED)
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=32, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        projection_dim=32,
    ))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(work_dir / "tok"),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def ensure_tiny_sd_folder(models_dir: Path) -> Path:
    """Save the tiny pipeline once as a diffusers folder, so it loads through the same path as any local model.

    Built in a temp dir and renamed into place: a killed build never leaves a half-written folder.
    """
    folder = models_dir / f"tiny-random-sd-v{TINY_BUILD_VERSION}"
    if (folder / "model_index.json").exists():
        return folder
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=models_dir))
    try:
        build_tiny_sd_pipeline(tmp).save_pretrained(tmp / "pipe")
        try:
            os.replace(tmp / "pipe", folder)
        except OSError:
            if not (folder / "model_index.json").exists():  # lost a race with another process: theirs is identical
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_tiny_clip(arch: str = "ViT-S-32"):
    """open_clip model + preprocess + tokenizer with random weights (seed TINY_SEED), built offline."""
    import open_clip
    import torch

    torch.manual_seed(TINY_SEED)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(arch)
