import dataclasses
import io
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.pipeline.cache import Cache
from core.pipeline.generate import (
    GenerationSettings,
    RunRequest,
    cached_images,
    generate_missing,
    resolve_settings,
    validate_request,
)
from core.pipeline.registry import GENERATORS, TINY_RANDOM

TINY = GENERATORS[TINY_RANDOM]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def request_(tmp_path):
    return RunRequest("a photo of a tench", n=4, generator=TINY_RANDOM, clip=TINY_RANDOM).with_preset_defaults(TINY)


@pytest.fixture
def settings(request_, tiny_folder, cpu):
    return resolve_settings(request_, tiny_folder, cpu)


def pixels(entry) -> np.ndarray:
    return np.asarray(Image.open(entry.path).convert("RGB"), dtype=np.int16)


# -- keys ------------------------------------------------------------------------------------------------------
def test_settings_key_is_stable_across_processes(settings, tiny_folder, request_):
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from pathlib import Path; from core.pipeline.config import DeviceSpec; from core.pipeline.generate import *;"
        f"r = RunRequest({request_.prompt!r}, n=4, generator='tiny-random', steps={request_.steps},"
        f" guidance={request_.guidance}, size={request_.size});"
        f"print(resolve_settings(r, Path({str(tiny_folder)!r}), DeviceSpec('cpu', 'float32')).key())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip().splitlines()[-1] == settings.key()


PIXEL_CHANGES = {
    "model_id": "other/model", "revision": "abc", "pipeline_class": "StableDiffusionXLPipeline", "steps": 5,
    "guidance": 7.0, "width": 128, "height": 128, "negative_prompt": "blurry", "dtype": "bfloat16",
    "device_type": "cuda", "schema": 99,
}


@pytest.mark.parametrize("field,value", PIXEL_CHANGES.items())
def test_every_pixel_changing_setting_changes_the_key(settings, field, value):
    assert getattr(settings, field) != value
    assert dataclasses.replace(settings, **{field: value}).key() != settings.key()


def test_scheduler_config_and_library_versions_change_the_key(settings):
    other_sched = {**settings.scheduler, "timestep_spacing": "trailing"}
    assert dataclasses.replace(settings, scheduler=other_sched).key() != settings.key()
    other_versions = {**settings.versions, "diffusers": "0.0.1"}
    assert dataclasses.replace(settings, versions=other_versions).key() != settings.key()


def test_guidance_int_and_float_name_the_same_run(request_, tiny_folder, cpu):
    a = resolve_settings(dataclasses.replace(request_, guidance=7), tiny_folder, cpu)
    b = resolve_settings(dataclasses.replace(request_, guidance=7.0), tiny_folder, cpu)
    assert a.key() == b.key()


def test_image_key_depends_on_prompt_and_seed(settings):
    keys = {settings.image_key(p, s) for p in ("a", "b") for s in (0, 1)}
    assert len(keys) == 4
    assert settings.image_key("a", 0) == settings.image_key("a", 0)


# -- generation ------------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_pixels(tiny_pipe, settings, tmp_path):
    assert cached_images(settings, "a tench", [3, 4], Cache(tmp_path / "a")) == []
    runs = []
    for name in ("a", "b"):
        cache = Cache(tmp_path / name)
        generate_missing(tiny_pipe, settings, "a tench", [3, 4], cache, batch_size=2)
        runs.append(cached_images(settings, "a tench", [3, 4], cache))
    assert [e.sha256 for e in runs[0]] == [e.sha256 for e in runs[1]]  # byte-identical PNGs
    assert runs[0][0].sha256 != runs[0][1].sha256  # different seeds, different images


def test_an_image_depends_on_its_seed_not_its_batch(tiny_pipe, settings, tmp_path):
    alone, batched = Cache(tmp_path / "alone"), Cache(tmp_path / "batched")
    generate_missing(tiny_pipe, settings, "a tench", [5], alone, batch_size=1)
    generate_missing(tiny_pipe, settings, "a tench", [4, 5, 6], batched, batch_size=3)
    a = pixels(cached_images(settings, "a tench", [5], alone)[0])
    b = pixels(cached_images(settings, "a tench", [5], batched)[0])
    assert np.abs(a - b).max() <= 2  # batched maths differs by ~1e-6 before 8-bit rounding


def test_more_images_generate_only_the_new_seeds(tiny_pipe, settings, tmp_path):
    cache = Cache(tmp_path)
    first = generate_missing(tiny_pipe, settings, "p", list(range(4)), cache, batch_size=4)
    second = generate_missing(tiny_pipe, settings, "p", list(range(8)), cache, batch_size=4)
    assert (first.generated, first.reused) == (4, 0)
    assert (second.generated, second.reused) == (4, 4)
    assert [e.seed for e in cached_images(settings, "p", list(range(8)), cache)] == list(range(8))


def test_progress_reports_every_step(tiny_pipe, settings, tmp_path):
    seen = []
    generate_missing(tiny_pipe, settings, "p", [0, 1], Cache(tmp_path), batch_size=2,
                     on_progress=lambda *a: seen.append(a))
    steps = settings.steps
    assert [s for _, _, s, _ in seen[:steps]] == list(range(1, steps + 1))
    assert seen[-1] == (2, 2, steps, steps)


def test_cancel_keeps_finished_batches_and_releases_the_lock(tiny_pipe, settings, tmp_path):
    cache, lock = Cache(tmp_path), threading.Lock()
    finished = []

    def on_progress(done, total, step, steps):
        finished.append(done)

    # Cancel once the first batch (2 images) is committed, in the middle of the second batch's steps.
    report = generate_missing(tiny_pipe, settings, "p", [0, 1, 2, 3], cache, batch_size=2, lock=lock,
                              on_progress=on_progress, should_cancel=lambda: max(finished, default=0) >= 2)
    assert report.cancelled and report.generated == 2
    assert not lock.locked()
    assert [e.seed for e in cached_images(settings, "p", [0, 1, 2, 3], cache)] == [0, 1]
    again = generate_missing(tiny_pipe, settings, "p", [0, 1, 2, 3], cache, batch_size=2, lock=lock)
    assert (again.generated, again.reused, again.cancelled) == (2, 2, False)


def test_negative_prompt_changes_the_pixels(tiny_pipe, settings, tmp_path):
    neg = dataclasses.replace(settings, negative_prompt="blurry")
    cache = Cache(tmp_path)
    generate_missing(tiny_pipe, settings, "p", [0], cache)
    generate_missing(tiny_pipe, neg, "p", [0], cache)
    a, b = cached_images(settings, "p", [0], cache)[0], cached_images(neg, "p", [0], cache)[0]
    assert a.sha256 != b.sha256


def test_generated_images_have_the_requested_size(tiny_pipe, settings, tmp_path):
    cache = Cache(tmp_path)
    generate_missing(tiny_pipe, settings, "p", [0], cache)
    img = Image.open(io.BytesIO(cached_images(settings, "p", [0], cache)[0].path.read_bytes()))
    assert img.size == (settings.width, settings.height) and img.format == "PNG"


# -- requests --------------------------------------------------------------------------------------------------
def test_turbo_models_get_guidance_zero():
    req = RunRequest("x", generator="sd-turbo", guidance=7.5).with_preset_defaults(GENERATORS["sd-turbo"])
    assert req.guidance == 0.0 and req.steps == GENERATORS["sd-turbo"].default_steps


@pytest.mark.parametrize("change,needle", [
    ({"prompt": "   "}, "prompt is empty"), ({"n": 0}, "between 1 and 256"), ({"n": 257}, "between 1 and 256"),
    ({"steps": 0}, "steps"), ({"steps": 1000}, "steps"), ({"guidance": -1.0}, "Guidance"),
    ({"guidance": float("nan")}, "Guidance"), ({"size": 100}, "multiple of 16"), ({"first_seed": -1}, "seed"),
])
def test_bad_requests_are_explained(change, needle):
    req = dataclasses.replace(RunRequest("a tench", generator=TINY_RANDOM).with_preset_defaults(TINY), **change)
    problems = validate_request(req, TINY)
    assert len(problems) == 1 and needle in problems[0]


def test_requests_round_trip_through_url_params():
    req = RunRequest("a crane, the bird", n=32, generator="sd-1.5", steps=30, guidance=5.5, size=512,
                     first_seed=100, negative_prompt="text", clip="ViT-L-14/openai")
    parsed, problems = RunRequest.from_params(req.to_params())
    assert parsed == req and problems == []


def test_tampered_url_params_are_reported_not_raised():
    parsed, problems = RunRequest.from_params({"prompt": "x", "n": "lots", "guidance": "1e400x", "steps": "4"})
    assert parsed.prompt == "x" and parsed.steps == 4 and parsed.n == RunRequest("x").n
    assert len(problems) == 2 and "'n'" in problems[0]
    assert RunRequest.from_params({}) == (None, [])


def test_settings_are_frozen(settings):
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.steps = 99
    assert isinstance(settings, GenerationSettings)


def test_long_prompts_warn_and_show_the_words_the_text_encoder_reads(tiny_pipe):
    from core.pipeline.generate import CLIP_CONTEXT_TOKENS, _clip_bpe, prompt_as_read, request_warnings

    long_prompt = " ".join(f"Tench{i}, in murky water" for i in range(30))
    used, count = prompt_as_read(long_prompt)
    read_by_pipeline = tiny_pipe.tokenizer(long_prompt, truncation=True, max_length=CLIP_CONTEXT_TOKENS).input_ids
    assert count > CLIP_CONTEXT_TOKENS and len(read_by_pipeline) == CLIP_CONTEXT_TOKENS
    used_ids = _clip_bpe().encode(used)
    assert read_by_pipeline[1:-1][: len(used_ids)] == used_ids  # the words shown are exactly what the model reads
    assert CLIP_CONTEXT_TOKENS - 2 - len(used_ids) < 8  # ... and nearly all of it (whole words only)
    assert long_prompt.startswith(used)
    (warning,) = request_warnings(RunRequest(long_prompt))
    assert f"is {count} tokens" in warning and used in warning
    assert request_warnings(RunRequest("a photo of a tench")) == []


@pytest.mark.parametrize("prompt", ["🐟🐟 a tench 🎣", "صورة سمكة التنش", "a tench, 丁鱥, линь, תמונה של דג"])
def test_emoji_right_to_left_and_mixed_scripts_round_trip(prompt, tiny_pipe, settings, tmp_path):
    req = RunRequest(prompt, n=1, generator=TINY_RANDOM)
    back, problems = RunRequest.from_params(req.to_params())
    assert back == req and not problems
    cache = Cache(tmp_path)
    generate_missing(tiny_pipe, settings, prompt, [0], cache)
    (entry,) = cached_images(settings, prompt, [0], cache)
    assert Image.open(entry.path).text["diffusion-diversity-lab"].count(prompt) == 1  # stored verbatim in the PNG
    assert cache.verify().ok


def test_huge_n_from_a_link_is_capped_with_a_message():
    req, problems = RunRequest.from_params({"prompt": "p", "n": "100000"})
    assert req.n == 256 and problems == ["The link asks for 100000 images; the most one run makes is 256, so it "
                                         "shows 256. For more, run several first seeds."]
