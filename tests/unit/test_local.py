"""Local models: found under the model roots, and confined to them (a link cannot make the app read any path)."""

from pathlib import Path

import pytest

from core.pipeline.local import confine, generator_preset, local_clip_models, local_generators
from core.pipeline.registry import GENERATORS


@pytest.fixture
def roots(tmp_path, tiny_folder) -> list[Path]:
    root = tmp_path / "models"
    (root / "org").mkdir(parents=True)
    (root / "org" / "tiny").symlink_to(tiny_folder, target_is_directory=True)  # <root>/<org>/<model>
    (root / "not-a-pipeline").mkdir()
    (root / "not-a-pipeline" / "unet.bin").write_bytes(b"")
    return [root.resolve()]


def test_pipeline_folders_under_the_roots_become_presets(roots, tiny_folder):
    found = local_generators(roots)
    assert list(found) == [f"local:{roots[0] / 'org' / 'tiny'}"]
    preset = next(iter(found.values()))
    assert preset.supports_guidance and preset.model_id == str(roots[0] / "org" / "tiny")


def test_registry_keys_pass_through():
    assert generator_preset("tiny-random", []) is GENERATORS["tiny-random"]


@pytest.mark.parametrize("path_of", [
    lambda tmp: "/etc",  # anywhere else on the machine
    lambda tmp: str(tmp / "models" / ".." / "outside"),  # climbing out with '..'
    lambda tmp: str(tmp / "models" / "escape"),  # a symlink inside that points outside
])
def test_paths_outside_the_roots_are_refused_with_a_fix(roots, tmp_path, path_of):
    (tmp_path / "outside").mkdir()
    (tmp_path / "models" / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(ValueError, match="outside the model folders.*DDL_MODEL_ROOTS"):
        generator_preset("local:" + path_of(tmp_path), roots)


def test_a_folder_that_is_not_a_pipeline_is_explained(roots):
    with pytest.raises(ValueError, match="is not a diffusers pipeline folder: it has no model_index.json"):
        generator_preset(f"local:{roots[0] / 'not-a-pipeline'}", roots)
    with pytest.raises(ValueError, match="does not exist"):
        generator_preset(f"local:{roots[0] / 'missing'}", roots)
    with pytest.raises(KeyError, match="Unknown generator 'sd-9'"):
        generator_preset("sd-9", roots)
    with pytest.raises(ValueError, match="No path given"):
        confine("  ", roots)


def test_clip_checkpoints_are_safetensors_named_by_architecture(tmp_path):
    (tmp_path / "ViT-S-32.finetune.safetensors").write_bytes(b"")
    (tmp_path / "NotAnArch.x.safetensors").write_bytes(b"")
    (tmp_path / "ViT-S-32.pickle.bin").write_bytes(b"")  # never: only safetensors are offered
    found = local_clip_models([tmp_path])
    names = [(p.arch, Path(p.pretrained).name) for p in found.values()]
    assert names == [("ViT-S-32", "ViT-S-32.finetune.safetensors")]
