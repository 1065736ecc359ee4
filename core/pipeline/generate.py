"""Prompt + seeds -> images, reproducibly, incrementally, cancellably.

1. `RunRequest`: what the user asked for (the URL holds exactly this).
2. `resolve_settings`: everything that changes pixels, read from the model folder without loading weights, so a
   cached run reopens without touching the model.
3. `generate_missing`: generates only the seeds not in the cache, batch by batch, committing each finished batch.
"""

from __future__ import annotations

import functools
import io
import math
import threading
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

from core.pipeline.cache import PNG_METADATA_KEY, Cache, CachedImage, canonical_json, key_of
from core.pipeline.config import PIXEL_LIBRARIES, DeviceSpec, library_versions
from core.pipeline.params import Param, finite_number, out_of_range, read_params, whole_number, write_params
from core.pipeline.registry import DEFAULT_CLIP, DEFAULT_GENERATOR, GENERATORS, GeneratorPreset

SETTINGS_SCHEMA = 1
MAX_IMAGES = 256
MIN_SIZE, MAX_SIZE = 64, 1024
MAX_PROMPT_CHARS = 1000


@dataclass(frozen=True)
class RunRequest:
    prompt: str
    n: int = 16
    generator: str = DEFAULT_GENERATOR
    steps: int | None = None  # None: the preset's default
    guidance: float | None = None
    size: int | None = None
    first_seed: int = 0
    negative_prompt: str = ""
    clip: str = DEFAULT_CLIP

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.n))

    def to_params(self) -> dict[str, str]:
        """The request as URL query parameters (unset values left out)."""
        return write_params(self, RUN_PARAMS)

    @classmethod
    def from_params(cls, params: dict[str, str]) -> tuple[RunRequest | None, list[str]]:
        """Parse URL query parameters. Returns (request or None, problems): a tampered URL gets a message, not a
        traceback. No prompt: (None, [])."""
        if not params.get("prompt"):
            return None, []
        values, problems = read_params(RUN_PARAMS, params)
        if values.get("n", 0) > MAX_IMAGES:
            problems.append(f"The link asks for {values['n']} images; the most one run makes is {MAX_IMAGES}, so "
                            f"it shows {MAX_IMAGES}. For more, run several first seeds.")
            values["n"] = MAX_IMAGES
        return cls(**values), problems

    def with_preset_defaults(self, preset: GeneratorPreset) -> RunRequest:
        """Fill unset settings from the preset; models that ignore guidance get guidance 0."""
        guidance = self.guidance if self.guidance is not None else preset.default_guidance
        return replace(
            self,
            prompt=self.prompt.strip(),
            steps=self.steps if self.steps is not None else preset.default_steps,
            guidance=float(guidance) if preset.supports_guidance else 0.0,
            size=self.size if self.size is not None else preset.default_size,
        )



def generator_key(key: str) -> str:
    """A registry key or a model folder on this machine ('local:<folder>', confined to the model roots)."""
    from core.pipeline.local import generator_preset  # late: local reads the registry and the model folders

    generator_preset(key)  # KeyError / ValueError saying why the key cannot be used
    return key


def clip_model_keys():
    from core.pipeline.local import all_clip_models

    return all_clip_models()


# One row per URL parameter of a run: the Diversity, Adherence and Ambiguity pages, the lessons and `./lab run`
# read links through it. Unknown models (not in the registry, not a model folder here) fall back to the default.
RUN_PARAMS = (
    Param("prompt", "prompt"),
    Param("n", "n", whole_number, low=1, high=MAX_IMAGES, label="N"),
    Param("generator", "generator", generator_key),
    Param("steps", "steps", whole_number, optional=True),
    Param("guidance", "guidance", finite_number, low=0, high=30, optional=True),
    Param("size", "size", whole_number, optional=True),
    Param("first_seed", "first_seed", whole_number, low=0, label="the first seed"),
    Param("negative_prompt", "negative_prompt", optional=True),
    Param("clip", "clip", known=clip_model_keys, label="CLIP model"),
)

def validate_request(req: RunRequest, preset: GeneratorPreset) -> list[str]:
    """Problems with a request, each a sentence saying what to change. Empty: the request can run."""
    problems = []
    if not req.prompt or not req.prompt.strip():
        problems.append("The prompt is empty: type what the images should show.")
    elif len(req.prompt) > MAX_PROMPT_CHARS:
        problems.append(f"The prompt is {len(req.prompt)} characters; the limit is {MAX_PROMPT_CHARS} (the text "
                        f"encoder reads about 75 words at most).")
    problems += out_of_range(req, RUN_PARAMS)  # N, guidance, the first seed, the CLIP model
    if req.steps is not None and not 1 <= req.steps <= preset.max_steps:
        problems.append(f"{preset.label} takes 1 to {preset.max_steps} steps (got {req.steps}).")
    if req.guidance is not None and not math.isfinite(req.guidance):
        problems.append(f"Guidance must be a number from 0 to 30 (got {req.guidance}).")
    if req.size is not None and (req.size % preset.size_multiple or not MIN_SIZE <= req.size <= MAX_SIZE):
        problems.append(f"Size must be a multiple of {preset.size_multiple} between {MIN_SIZE} and {MAX_SIZE} "
                        f"for {preset.label} (got {req.size}).")
    if req.first_seed + req.n > 2**63 - 1:
        problems.append(f"The last seed must be below 2**63 (got {req.first_seed} + {req.n}).")
    return problems


CLIP_CONTEXT_TOKENS = 77  # Stable Diffusion's text encoder reads 77 tokens, start and end markers included


@functools.lru_cache(maxsize=1)
def _clip_bpe():
    from open_clip.tokenizer import SimpleTokenizer  # the BPE SD's CLIP tokenizer uses, shipped with open_clip

    return SimpleTokenizer()


def prompt_as_read(prompt: str) -> tuple[str, int]:
    """(the part of the prompt the text encoder reads, the prompt's token count). Longer prompts are cut at
    CLIP_CONTEXT_TOKENS - 2 tokens by the pipeline's tokenizer, silently: the page says so and shows the part used."""
    bpe = _clip_bpe()
    total = len(bpe.encode(prompt))
    if total <= CLIP_CONTEXT_TOKENS - 2:
        return prompt, total
    # Show the user's own words (decoding the ids would lower-case and re-space them): the whole words that fit.
    kept, count = [], 0
    for word in prompt.split():
        count += len(bpe.encode(word))
        if count > CLIP_CONTEXT_TOKENS - 2:
            break
        kept.append(word)
    return " ".join(kept), total


def request_warnings(req: RunRequest) -> list[str]:
    """Things that let a request run but that the user should know (not errors)."""
    warnings = []
    used, count = prompt_as_read(req.prompt)
    if count > CLIP_CONTEXT_TOKENS - 2:
        warnings.append(f"The prompt is {count} tokens; the text encoder reads only the first "
                        f"{CLIP_CONTEXT_TOKENS - 2}, so the images follow: \"{used}\". Shorten it to control "
                        f"what is used.")
    return warnings


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that changes pixels, except prompt and seed. Its key() names a set of cache entries."""

    model_id: str
    revision: str
    pipeline_class: str
    scheduler: dict = field(hash=False)
    steps: int = 4
    guidance: float = 0.0
    width: int = 512
    height: int = 512
    negative_prompt: str = ""
    dtype: str = "float32"
    device_type: str = "cpu"
    versions: dict = field(default_factory=dict, hash=False)
    schema: int = SETTINGS_SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        return self._key

    @cached_property
    def _key(self) -> str:  # computed once: a 256-image reopen asks for it 256 times
        return key_of(self.to_dict())

    def image_key(self, prompt: str, seed: int) -> str:
        return key_of({"settings": self.key(), "prompt": prompt, "seed": int(seed)})


def resolve_settings(req: RunRequest, folder: Path, device: DeviceSpec) -> GenerationSettings:
    from core.pipeline.models import folder_revision, read_pipeline_class, read_scheduler_config

    preset = GENERATORS.get(req.generator)
    return GenerationSettings(
        model_id=preset.model_id if preset else str(folder),
        revision=folder_revision(folder),
        pipeline_class=read_pipeline_class(folder),
        scheduler=read_scheduler_config(folder),
        steps=int(req.steps),
        guidance=float(req.guidance),
        width=int(req.size),
        height=int(req.size),
        negative_prompt=req.negative_prompt.strip(),
        dtype=device.dtype_name,
        device_type=device.device,
        versions=library_versions(PIXEL_LIBRARIES, with_python=False),
    )


# What a request asks for, apart from where it runs. Settings with the same recipe differ only in device, dtype, model
# revision or library versions: the "same" images made on another machine (a demo pack from a GPU box, say).
RECIPE_FIELDS = ("model_id", "steps", "guidance", "width", "height", "negative_prompt")


def recipe_of(settings: dict) -> dict:
    return {name: settings.get(name) for name in RECIPE_FIELDS}


def request_recipe(req: RunRequest, preset: GeneratorPreset) -> dict:
    """The recipe of a request with preset defaults (as resolve_settings would fill it, without the model folder)."""
    return {"model_id": preset.model_id, "steps": int(req.steps), "guidance": float(req.guidance),
            "width": int(req.size), "height": int(req.size), "negative_prompt": req.negative_prompt.strip()}


def settings_from_dict(data: dict) -> GenerationSettings | None:
    """Stored settings back as GenerationSettings, or None if they come from another schema."""
    try:
        settings = GenerationSettings(**data)
    except TypeError:
        return None
    return settings if settings.schema == SETTINGS_SCHEMA else None


def cached_alternatives(req: RunRequest, preset: GeneratorPreset, stored: dict[str, dict]) -> list[GenerationSettings]:
    """Cached settings (`stored`: Cache.all_settings()) with the request's recipe, made on any device: they let a
    run reopen with no generator weights, e.g. after importing a demo pack. Only keys that round-trip are used."""
    want = request_recipe(req, preset)
    found = []
    for key, data in stored.items():
        if recipe_of(data) == want and (settings := settings_from_dict(data)) and settings.key() == key:
            found.append(settings)
    return found


def default_batch_size(device: DeviceSpec) -> int:
    return 8 if device.device == "cuda" else 4


class Cancelled(Exception):
    """Raised inside the pipeline's step callback to abandon the current batch."""


# (images finished, images asked for, steps done in this batch, steps per batch)
ProgressFn = Callable[[int, int, int, int], None]


@dataclass
class GenerationReport:
    requested: int
    reused: int  # already in the cache
    generated: int
    cancelled: bool


def encode_png(image, metadata: dict | None = None) -> bytes:
    """PNG bytes; `metadata` goes into a text chunk, so the cache index can be rebuilt from the files alone."""
    from PIL.PngImagePlugin import PngInfo

    info = None
    if metadata is not None:
        info = PngInfo()
        info.add_text(PNG_METADATA_KEY, canonical_json(metadata))
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=4, pnginfo=info)
    return buf.getvalue()


class BatchWriter:
    """Commits finished batches on worker threads while the caller's thread keeps the GPU busy with the next one.

    Per image (on `encode_threads` threads): pixels -> PNG with its own index row in a text chunk. Per batch (on one
    committer thread, in order): the cache's atomic writes and index rows, then `after_commit` (e.g. embedding the
    fresh images). At most `max_pending` batches wait: a slow disk holds the generator back instead of filling
    memory. The first error stops every later commit and is raised in the caller's thread by the next `submit` or by
    `close`; `close` also waits for the batches already submitted, so an exception or a cancel in the caller keeps
    every finished batch (the crash-safety guarantees are the cache's own, unchanged).
    """

    def __init__(self, cache: Cache, settings: GenerationSettings, prompt: str, report: GenerationReport, *,
                 encode_threads: int = 1, max_pending: int = 2,
                 after_commit: Callable[[list[CachedImage], list], None] | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.cache, self.settings, self.prompt, self.report = cache, settings, prompt, report
        self.after_commit = after_commit
        self.max_pending = max(1, max_pending)
        self._encoders = ThreadPoolExecutor(max(1, encode_threads), thread_name_prefix="ddl-png")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="ddl-commit")
        self._pending: list = []
        self._failed = threading.Event()

    def submit(self, seeds: list[int], pixels) -> None:
        """Queue one finished batch: `pixels` as the pipeline's output_type="np" array (N x H x W x 3 in [0, 1])."""
        self.wait(keep=self.max_pending - 1)
        encoded = [self._encoders.submit(self._encode, seed, pixels[i : i + 1]) for i, seed in enumerate(seeds)]
        self._pending.append(self._committer.submit(self._commit, encoded))

    def wait(self, keep: int = 0) -> None:
        """Wait until at most `keep` batches are still being committed; raise the first error, in this thread."""
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def _encode(self, seed: int, pixels) -> tuple[str, int, bytes, object]:
        from diffusers.image_processor import VaeImageProcessor

        # The pipeline's own float -> 8-bit conversion: the same pixels (and PNG bytes) as output_type="pil".
        image = VaeImageProcessor.numpy_to_pil(pixels)[0]
        key = self.settings.image_key(self.prompt, seed)
        meta = {"key": key, "settings_key": self.settings.key(), "prompt": self.prompt, "seed": seed,
                "settings": self.settings.to_dict()}
        return key, seed, encode_png(image, meta), image

    def _commit(self, encoded: list) -> None:
        if self._failed.is_set():
            return  # an earlier batch failed: write nothing after it
        try:
            rows = [f.result() for f in encoded]
            stored = self.cache.put_images(self.settings.key(), self.prompt, [(k, s, png) for k, s, png, _ in rows])
            self.report.generated += len(rows)  # only this thread counts
            if self.after_commit:
                self.after_commit(stored, [im for *_, im in rows])
        except BaseException:
            self._failed.set()
            raise

    def close(self) -> None:
        """Wait for every submitted batch; raise the first error. Always shuts the threads down."""
        try:
            error = None
            for f in self._pending:
                try:
                    f.result()
                except BaseException as exc:  # noqa: B036 - re-raised below, after the other batches finished
                    error = error or exc
            if error is not None:
                raise error
        finally:
            self._pending.clear()
            self._committer.shutdown(wait=True)
            self._encoders.shutdown(wait=True)


def generate_missing(
    pipe,
    settings: GenerationSettings,
    prompt: str,
    seeds: list[int],
    cache: Cache,
    *,
    batch_size: int = 4,
    lock: threading.Lock | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    encode_threads: int = 1,
    after_commit: Callable[[list[CachedImage], list], None] | None = None,
) -> GenerationReport:
    """Generate the images of `seeds` that are not cached yet, committing each finished batch at once.

    One CPU torch.Generator per image (seed_i), so an image depends only on its own seed, not on its batch-mates
    or on the device's RNG. A cancel takes effect at the next denoising step; the unfinished batch is dropped
    (its latents are only partly denoised), every finished batch is committed. PNG encoding, hashing and the cache
    writes of batch k run on worker threads (BatchWriter) while the pipeline computes batch k+1. `on_progress` and
    `should_cancel` are called in this thread only (a UI may draw from them); `after_commit(images, pil_images)` runs
    on the committer thread after each batch is in the cache.
    """
    import torch

    keys = {seed: settings.image_key(prompt, seed) for seed in seeds}
    cached = cache.lookup_images(list(keys.values()))
    missing = [s for s in seeds if keys[s] not in cached]
    report = GenerationReport(len(seeds), len(seeds) - len(missing), 0, False)
    if not missing:
        return report
    cache.put_settings(settings.key(), settings.to_dict())
    steps = settings.steps
    writer = BatchWriter(cache, settings, prompt, report, encode_threads=encode_threads, after_commit=after_commit)

    def progress(step: int) -> None:
        if on_progress:  # counts images in the cache: a report of n done means n are committed
            on_progress(report.reused + report.generated, report.requested, step, steps)

    def step_callback(pipeline, step, timestep, tensors):
        if should_cancel and should_cancel():
            pipeline._interrupt = True  # diffusers skips the remaining steps; we then drop the batch
            raise Cancelled()
        if step == 0 and steps > 1:
            # The previous batch was committed during this batch's text encoding and first step (about one step
            # of GPU time, which a commit fits in); waiting here keeps every progress report exact.
            writer.wait()
        progress(step + 1)
        return tensors

    try:
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            if should_cancel and should_cancel():
                report.cancelled = True
                break
            with lock or nullcontext():
                try:
                    out = pipe(
                        prompt=[prompt] * len(batch),
                        negative_prompt=[settings.negative_prompt] * len(batch) if settings.negative_prompt else None,
                        num_inference_steps=steps,
                        guidance_scale=settings.guidance,
                        height=settings.height,
                        width=settings.width,
                        generator=[torch.Generator("cpu").manual_seed(s) for s in batch],
                        output_type="np",
                        callback_on_step_end=step_callback,
                    )
                except Cancelled:
                    report.cancelled = True
                    break
                finally:
                    pipe._interrupt = False
            writer.submit(batch, out.images)
            if steps == 1:
                # One-step models (SD-Turbo) have one callback, before the VAE decode that dominates their time:
                # the previous batch's commit overlaps this whole batch instead, and is awaited here.
                writer.wait(keep=1)
            progress(steps)
    finally:
        writer.close()  # commits every finished batch, also when the caller's progress callback raised (Cancel)
    if not report.cancelled:
        progress(steps)
    return report


def cached_images(settings: GenerationSettings, prompt: str, seeds: list[int], cache: Cache) -> list[CachedImage]:
    """The cached images of `seeds`, in seed order (seeds not cached are left out)."""
    keys = [settings.image_key(prompt, s) for s in seeds]
    found = cache.lookup_images(keys)
    return [found[k] for k in keys if k in found]


# -- the runs in a cache ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CachedRun:
    """One cached run: the images of one (generation settings, prompt) pair."""

    settings_key: str
    prompt: str
    seeds: tuple[int, ...]
    shas: tuple[str, ...]
    settings: dict = field(hash=False, compare=False)

    @classmethod
    def from_manifest(cls, run: dict) -> CachedRun:
        """A run as a pack's manifest lists it (its images are in the cache once the pack is imported)."""
        return cls(run["settings_key"], run["prompt"], tuple(run["seeds"]), (), run["settings"])

    @property
    def generator(self) -> str | None:
        """The registry key of the model, or None for a local folder (its path means nothing elsewhere)."""
        return {p.model_id: p.key for p in GENERATORS.values()}.get(self.settings.get("model_id"))

    @property
    def contiguous(self) -> bool:
        return self.seeds == tuple(range(self.seeds[0], self.seeds[0] + len(self.seeds)))

    def describe(self) -> str:
        s = self.settings
        seeds = f"seeds {self.seeds[0]}-{self.seeds[-1]}" if self.contiguous else f"{len(self.seeds)} seeds"
        return (f"{self.prompt!r}: {len(self.seeds)} images, {self.generator or s.get('model_id')}, "
                f"{s.get('steps')} steps, guidance {s.get('guidance')}, {s.get('width')} px, {seeds}, "
                f"made on {s.get('device_type')} ({s.get('dtype')})")

    def link_params(self, clip: str | None = None) -> dict[str, str] | None:
        """The Diversity page's URL parameters that reopen this run (None if no link can name it)."""
        if not self.generator or not self.contiguous:
            return None
        s = self.settings
        params = {"prompt": self.prompt, "n": str(len(self.seeds)), "generator": self.generator,
                  "steps": str(s["steps"]), "guidance": str(s["guidance"]), "size": str(s["width"]),
                  "first_seed": str(self.seeds[0])}
        if s.get("negative_prompt"):
            params["negative_prompt"] = s["negative_prompt"]
        if clip:
            params["clip"] = clip
        return params


def cached_runs(cache: Cache) -> list[CachedRun]:
    """Every run in the cache, newest first."""
    settings = cache.all_settings()
    groups = sorted(cache.run_groups(), key=lambda g: g[4], reverse=True)
    return [CachedRun(key, prompt, tuple(seeds), tuple(shas), settings.get(key, {}))
            for key, prompt, seeds, shas, _ in groups]
