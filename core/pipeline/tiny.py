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


# -- tiny photo folders: class folders of generated photos, for tests and benchmarks without real photos ---------
# Real photos (ImageNet subsets) may not be redistributed, so a bare clone has none. These folders have the same
# layouts the lab reads (<folder>/<class>/<image> with a labels.csv, and flat ImageNet-style <wnid>_<name> files),
# and the formats real folders hold: JPEG and PNG, several sizes, RGB, grayscale, palette and transparent images.
# Each class has its own hue and each photo its own smooth pattern: sets that differ, as statistics need.
TINY_PHOTO_FORMATS = (  # (size, mode, suffix) cycled over a class's photos
    ((224, 224), "RGB", ".JPEG"), ((160, 120), "RGB", ".png"), ((200, 300), "L", ".JPEG"),
    ((96, 96), "RGBA", ".png"), ((320, 240), "RGB", ".jpg"), ((128, 128), "P", ".png"),
)


def tiny_photo(seed: int, hue: float, size: tuple[int, int], mode: str):
    """A smooth colour field around `hue` (a blurred 6 x 6 random grid plus a gradient), as a PIL image."""
    import colorsys

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.array(colorsys.hsv_to_rgb(hue % 1.0, 0.6, 0.8)) * 255
    grid = np.clip(base + rng.normal(0, 45, (6, 6, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(grid, "RGB").resize(size, Image.BICUBIC)
    ramp = np.linspace(0, rng.uniform(-40, 40), size[0])[None, :, None]
    im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float64) + ramp, 0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        alpha = Image.fromarray(np.linspace(64, 255, size[0] * size[1]).reshape(size[1], size[0]).astype(np.uint8))
        im = im.convert("RGBA")
        im.putalpha(alpha)
        return im
    if mode == "P":
        return im.quantize(colors=32)
    return im.convert(mode)


def write_tiny_photo_folder(root: Path, classes: dict[str, str], per_class: int = 24, seed: int = 0) -> Path:
    """`root`/<class>/<photo> for each {wnid: class name} in `classes`, plus labels.csv (path, wnid, class_name,
    source_path) as the Imagenette folders have it. Deterministic in `seed`; returns `root`."""
    rows = ["path,wnid,class_name,source_path"]
    for c, (wnid, name) in enumerate(sorted(classes.items(), key=lambda kv: kv[1])):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size, mode, suffix = TINY_PHOTO_FORMATS[i % len(TINY_PHOTO_FORMATS)]
            rel = f"{name}/{wnid}_{i:04d}{suffix}"
            tiny_photo(seed * 100_003 + c * 1_009 + i, c / len(classes), size, mode).save(root / rel)
            rows.append(f"{rel},{wnid},{name},generated")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def write_tiny_flat_photos(root: Path, stems: list[str], seed: int = 0) -> Path:
    """One photo per stem, named `<stem>.JPEG` (flat ImageNet-style files such as n02012849_crane)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        size, mode, _ = TINY_PHOTO_FORMATS[i % len(TINY_PHOTO_FORMATS)]
        tiny_photo(seed * 100_003 + i, i / max(len(stems), 1), size, "L" if mode == "L" else "RGB").save(
            root / f"{stem}.JPEG")
    return root
