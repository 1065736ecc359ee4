import json
import time

import numpy as np
import pytest

from core.pipeline.models import (
    ModelUnavailableError,
    clip_key,
    clip_present,
    folder_revision,
    generator_present,
    load_clip,
    locate_generator,
    read_pipeline_class,
)
from core.pipeline.registry import (
    CLIP_MODELS,
    DEFAULT_CLIP,
    DEFAULT_GENERATOR,
    GENERATORS,
    TINY_RANDOM,
    local_clip_preset,
    local_generator_preset,
)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """Point huggingface_hub at an empty cache so 'not downloaded' is true whatever this machine holds."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_tiny_tokenizer_matches_open_clip(tmp_path):
    import open_clip

    from core.pipeline.tiny import build_clip_tokenizer

    hf = build_clip_tokenizer(tmp_path)
    for text in ["a photo of a crane", "Ünïcödé, émoji 🦩 and punctuation!?", "tench " * 10]:
        ours = hf(text).input_ids
        theirs = open_clip.get_tokenizer("ViT-B-32")(text)[0].tolist()
        assert ours == theirs[: len(ours)] and set(theirs[len(ours):]) <= {0}
    assert hf.model_max_length == 77


def test_registries_are_data_with_working_defaults():
    assert DEFAULT_GENERATOR in GENERATORS and DEFAULT_CLIP in CLIP_MODELS
    assert GENERATORS["sd-1.5"].model_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert GENERATORS["sd-turbo"].supports_guidance is False
    assert "images are noise" in GENERATORS[TINY_RANDOM].label
    assert (CLIP_MODELS["ViT-B-32/laion2b"].arch, CLIP_MODELS["ViT-B-32/laion2b"].pretrained) == \
        ("ViT-B-32", "laion2b_s34b_b79k")


@pytest.mark.parametrize("preset", [p for p in GENERATORS.values() if p.model_id != TINY_RANDOM])
def test_missing_hub_weights_offline_fail_fast_with_a_fix(preset, empty_hub_cache):
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as err:
        locate_generator(preset)
    assert time.monotonic() - start < 2.0
    message = str(err.value)
    assert preset.model_id in message and str(empty_hub_cache) in message and "Fix:" in message
    assert not generator_present(preset)


def test_unreachable_hub_fails_fast_even_without_offline_flag(empty_hub_cache, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="cannot be reached"):
        locate_generator(GENERATORS["sd-turbo"])
    assert time.monotonic() - start < 2.0


def test_missing_clip_weights_offline_fail_fast(empty_hub_cache, cpu):
    preset = CLIP_MODELS["ViT-B-32/laion2b"]
    assert not clip_present(preset)
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="ViT-B-32"):
        load_clip(preset, cpu)
    assert time.monotonic() - start < 2.0


def test_a_folder_that_is_not_a_pipeline_is_explained(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelUnavailableError, match="no model_index.json"):
        locate_generator(local_generator_preset(str(tmp_path)))


def test_tiny_folder_loads_like_any_local_pipeline(tiny_folder):
    assert locate_generator(local_generator_preset(str(tiny_folder))) == tiny_folder
    assert read_pipeline_class(tiny_folder) == "StableDiffusionPipeline"
    assert json.loads((tiny_folder / "model_index.json").read_text())["unet"][1] == "UNet2DConditionModel"


def test_folder_revision_tracks_configs(tmp_path, tiny_folder):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    assert folder_revision(copy) == folder_revision(tiny_folder)  # same content, same revision, any path
    cfg = copy / "scheduler" / "scheduler_config.json"
    cfg.write_text(cfg.read_text().replace('"leading"', '"trailing"'))
    assert folder_revision(copy) != folder_revision(tiny_folder)
    snap = tmp_path / "models--x--y" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    assert folder_revision(snap) == "0123abcd"  # a hub snapshot: its commit


def test_tiny_clip_is_the_same_in_every_build(cpu, tiny_clip):
    from PIL import Image

    from core.pipeline.embed import embed_pil, embed_texts

    again = load_clip(CLIP_MODELS[TINY_RANDOM], cpu)
    img = [Image.new("RGB", (50, 40), "orange")]
    a, b = embed_pil(tiny_clip, img), embed_pil(again, img)
    assert a.shape == (1, 384) and np.allclose(a, b, atol=1e-6)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    t = embed_texts(tiny_clip, ["a tench", "a crane"])
    assert t.shape == (2, 384) and not np.allclose(t[0], t[1])
    assert tiny_clip.key == clip_key(CLIP_MODELS[TINY_RANDOM])


def test_clip_keys_distinguish_architectures_and_weights(tmp_path):
    ckpt = tmp_path / "weights.safetensors"
    ckpt.write_bytes(b"x")
    keys = {clip_key(CLIP_MODELS[k]) for k in CLIP_MODELS} | {clip_key(local_clip_preset("ViT-B-32", str(ckpt)))}
    assert len(keys) == len(CLIP_MODELS) + 1
    ckpt.write_bytes(b"y")
    assert clip_key(local_clip_preset("ViT-B-32", str(ckpt))) not in keys  # new file content, new key


def test_a_clip_checkpoint_for_another_architecture_is_explained(tmp_path, cpu):
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    other, _, _ = open_clip.create_model_and_transforms("RN50", pretrained=None)
    ckpt = tmp_path / "rn50.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(ckpt))
    with pytest.raises(ModelUnavailableError, match="ViT-S-32.*architecture"):
        load_clip(local_clip_preset("ViT-S-32", str(ckpt)), cpu)


# -- how load_pipeline prepares a pipeline for the device -----------------------------------------------------------
def test_loaded_pipeline_uses_pytorch_sdpa_attention_and_vae_slicing(tiny_pipe):
    from core.pipeline.models import attention_processors

    assert attention_processors(tiny_pipe) == {"unet": {"AttnProcessor2_0"}, "vae": {"AttnProcessor2_0"}}
    assert tiny_pipe.vae.use_slicing  # VAE memory stays one image's whatever the batch


def test_load_pipeline_applies_the_thread_setting(tiny_folder, cpu, monkeypatch):
    import torch

    from core.pipeline.models import load_pipeline

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("DDL_CPU_THREADS", "1")
        torch.set_num_threads(2)
        load_pipeline(tiny_folder, cpu)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cuda_tuning_changes_pixels_only_within_float_tolerance(tiny_folder, cpu):
    """channels_last + VAE slicing (the CUDA settings) run on the CPU too: same images within rounding."""
    import torch

    from core.pipeline.config import GenerationRecipe
    from core.pipeline.models import apply_recipe, load_pipeline

    plain, tuned = load_pipeline(tiny_folder, cpu), load_pipeline(tiny_folder, cpu)
    plain.vae.disable_slicing()
    apply_recipe(tuned, GenerationRecipe(3, (64, 64), vae_slicing=True, channels_last=True, compile_mode=None))
    conv = tuned.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    def images(pipe):
        return pipe(prompt=["a tench"] * 3, num_inference_steps=2, height=64, width=64, output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(s) for s in range(3)]).images

    np.testing.assert_allclose(images(tuned), images(plain), atol=1e-4)


def test_compile_wraps_the_unet_and_keeps_sdpa(tiny_folder, cpu):
    """The compiled recipe's path, without compiling (that happens on the first call, on CUDA)."""
    from core.pipeline.config import GenerationRecipe
    from core.pipeline.models import apply_recipe, attention_processors, load_pipeline

    pipe = load_pipeline(tiny_folder, cpu)
    first = GenerationRecipe(2, (64, 64), False, False, "default")
    assert apply_recipe(pipe, first)  # a new shape: the first batch compiles
    unet = pipe.unet
    assert not apply_recipe(pipe, first) and pipe.unet is unet  # compiled once, the shape already seen
    assert apply_recipe(pipe, GenerationRecipe(4, (64, 64), False, False, "default"))  # another batch size
    assert type(pipe.unet).__name__ == "OptimizedModule" and hasattr(pipe.vae.decode, "_torchdynamo_orig_callable")
    assert attention_processors(pipe)["unet"] == {"AttnProcessor2_0"}
