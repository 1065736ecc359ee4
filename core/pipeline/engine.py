"""The engine: requests -> cached images (and their embeddings). The one path from what a user asked for to images
on disk, used by every page and lesson (through ui.runs), the benchmarks, the command line and a scale-out job.

1. `Engine.plan`: for each request, the settings whose images to show. From the cache when it can answer (with the
   settings this machine would use, read from the model folder without loading weights, or with cached settings
   of the same recipe made on another device: a demo pack, a shared cache); the model folder is located (and
   downloaded, with progress) only when images must be made or nothing is cached at all.
2. `Engine.generate`: the missing images of every planned request, under the generation lock (or, on a shared
   server, in turns of the fair queue, core.pipeline.queue: one batch per turn, round-robin over people), batch by
   batch, at the batch size and with the compilation the device's recipe chooses (core.pipeline.config); each
   finished batch is committed on worker threads while the next one is computed
   (core.pipeline.generate.generate_missing), and embedded from memory when a CLIP model is given (no PNG decode
   round trip).
3. `Engine.runs`: the cached images of each request, in seed order.

Progress and cancellation are callbacks: the engine draws nothing and never imports a UI or chart library.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.pipeline import config
from core.pipeline.cache import Cache, CachedImage
from core.pipeline.config import DeviceSpec
from core.pipeline.generate import (
    GenerationSettings,
    RunRequest,
    cached_alternatives,
    cached_images,
    generate_missing,
    resolve_settings,
)
from core.pipeline.local import generator_preset
from core.pipeline.models import ClipModel, ModelUnavailableError, generator_present, locate_generator
from core.pipeline.queue import FairQueue, QueueCancelled, WaitStatus

DownloadFn = Callable[[float, str], None]  # (fraction 0..1, message)


def work_per_image(settings: GenerationSettings) -> float:
    """An image's relative cost, for the queue's wait estimates: denoising steps x pixels (in 512 x 512 units),
    doubled by classifier-free guidance (two UNet passes per step)."""
    return settings.steps * settings.width * settings.height / 512**2 * (2 if settings.guidance > 1 else 1)


@dataclass(frozen=True)
class Run:
    """One request's images as the cache holds them (possibly fewer than asked for: see `missing`)."""

    request: RunRequest
    settings: GenerationSettings
    images: list[CachedImage]

    @property
    def missing(self) -> int:
        return self.request.n - len(self.images)


@dataclass(frozen=True)
class Progress:
    """Where a generation stands, across all the requests of one `Engine.generate` call."""

    done: int  # images of all requests in the cache (reused or committed)
    total: int
    step: int  # denoising step of the current batch, 1..steps
    steps: int
    run: int  # 1-based index of the request being generated
    runs: int
    compiling: bool = False  # the first batch of a new shape after torch.compile: this batch includes compilation
    sharing: int = 0  # other people with runs in the fair queue (their batches alternate with this run's)

    @property
    def fraction(self) -> float:
        return min(1.0, (self.done + (self.step / self.steps if self.done < self.total else 0)) / max(self.total, 1))

    def describe(self) -> str:
        where = f" (run {self.run} of {self.runs})" if self.runs > 1 else ""
        text = f"{self.done} of {self.total} images done, step {self.step}/{self.steps} of the current batch{where}"
        if self.compiling:
            text += "; compiling the model for this batch shape (about a minute, once per shape and process)"
        if self.sharing:
            text += (f"; sharing the GPU with {self.sharing} other {'person' if self.sharing == 1 else 'people'}, "
                     f"batch by batch")
        return text


@dataclass
class Plan:
    """What `Engine.plan` decided: the settings shown for each request, and what must be generated."""

    chosen: list[tuple[RunRequest, GenerationSettings]]
    to_generate: list[tuple[RunRequest, Path, GenerationSettings]] = field(default_factory=list)

    def made_elsewhere(self, device: DeviceSpec) -> list[str]:
        """'cuda (bfloat16)'-style names of the devices other than this one that made the chosen images."""
        return sorted({f"{s.device_type} ({s.dtype})" for _, s in self.chosen
                       if (s.device_type, s.dtype) != (device.device, device.dtype_name)})


@dataclass
class Totals:
    generated: int = 0
    reused: int = 0
    cancelled: bool = False


class Engine:
    """Requests -> cached images for one cache and device.

    `load_pipeline(folder)` returns a loaded pipeline (a UI passes its shared, cached one); `load_clip(key)` returns
    the CLIP model of a request's `clip` preset, or is None to leave embedding to the caller; `lock` serialises
    pipeline calls across threads (diffusers pipelines are not thread-safe). `queue` (core.pipeline.queue.FairQueue),
    on a shared server, takes the lock's place: each run enters it with what it must make, is refused there when a
    limit is hit (LimitError), and uses the pipeline only in its turns, one batch at a time."""

    def __init__(self, cache: Cache, device: DeviceSpec, load_pipeline: Callable[[Path], object], *,
                 load_clip: Callable[[str], ClipModel] | None = None, lock: threading.Lock | None = None,
                 queue: FairQueue | None = None):
        self.cache, self.device = cache, device
        self.load_pipeline, self.load_clip, self.lock, self.queue = load_pipeline, load_clip, lock, queue

    # 1. plan -------------------------------------------------------------------------------------------------------
    def plan(self, requests: list[RunRequest], *, generate: bool, on_download: DownloadFn | None = None) -> Plan:
        """Requests must be validated (core.pipeline.generate.validate_request) and have preset defaults. Raises
        ModelUnavailableError (with its fix) when a model must be located and cannot be."""
        stored = self.cache.all_settings()
        plan = Plan([])
        problems: list[str] = []
        needs_clip: set[str] = set()
        for req in requests:
            try:
                settings, target = self._settings_for(req, stored, generate, on_download)
            except ModelUnavailableError as exc:
                problems.append(f"Generator: {exc}")
                needs_clip.add(req.clip)
                continue
            plan.chosen.append((req, settings))
            if target:
                plan.to_generate.append((req, *target))
                if generate and len(cached_images(target[1], req.prompt, req.seeds, self.cache)) < req.n:
                    needs_clip.add(req.clip)  # images will be made (and embedded): its CLIP model must be had
        if generate and self.load_clip is not None:
            # Every model a generating run needs, checked before any work: a missing CLIP model named now, with
            # the generator, not after a generation it would then fail to embed.
            from core.pipeline.local import all_clip_models
            from core.pipeline.models import unavailable_models

            presets = all_clip_models()
            for key in sorted(needs_clip):
                problems += unavailable_models(clip=presets[key]) if key in presets else [
                    f"CLIP: unknown model '{key}'; choose one of {', '.join(presets)}."]
        if problems:
            raise ModelUnavailableError("\n\n".join(dict.fromkeys(problems)))
        return plan

    def _settings_for(self, req: RunRequest, stored: dict[str, dict], generate: bool, on_download: DownloadFn | None
                      ) -> tuple[GenerationSettings, tuple[Path, GenerationSettings] | None]:
        """(the settings whose images to show, (model folder, settings) to generate with, or None)."""
        preset = generator_preset(req.generator)

        def local() -> tuple[Path, GenerationSettings]:
            folder = locate_generator(preset, progress=on_download)
            return folder, resolve_settings(req, folder, self.device)

        counts: dict[str, int] = {}  # by settings key: each candidate's cache lookup once, not once per comparison

        def count(settings: GenerationSettings) -> int:
            if (key := settings.key()) not in counts:
                counts[key] = len(cached_images(settings, req.prompt, req.seeds, self.cache))
            return counts[key]

        alternatives = cached_alternatives(req, preset, stored)
        here = local() if generator_present(preset) or not alternatives else None
        if here and (not alternatives or count(here[1]) == req.n):
            return here[1], here
        best = max(alternatives, key=count)
        if count(best) == req.n:
            return best, None  # complete elsewhere: nothing to generate, no model needed
        if generate:
            here = here or local()
            return here[1], here
        if here and count(here[1]) >= count(best):
            return here[1], here
        return best, None

    # 2. generate ---------------------------------------------------------------------------------------------------
    def generate(self, plan: Plan, *, on_progress: Callable[[Progress], None] | None = None,
                 should_cancel: Callable[[], bool] | None = None, person: str = "local",
                 on_wait: Callable[[WaitStatus], None] | None = None, label: str = "") -> Totals:
        """Generate what `plan` lacks. A progress report of n done means n images are in the cache; a cancel (or
        an exception raised by `on_progress`, as a UI's stop) keeps every finished batch.

        With a queue: the run enters it as `person`'s (LimitError, raised before any work, when a limit is hit),
        `on_wait(status)` is called while it waits for a turn (a UI's place-in-line line; an exception there leaves
        the queue), and it always leaves the queue when this returns or raises. Only images the cache lacks are
        queued: a run that is complete in the cache never enters it."""
        totals = Totals()
        total = sum(req.n for req, _, _ in plan.to_generate)
        cached = [len(cached_images(s, req.prompt, req.seeds, self.cache)) for req, _, s in plan.to_generate]
        remaining = sum(req.n - c for (req, _, _), c in zip(plan.to_generate, cached))
        ticket = None
        if self.queue is not None and remaining:
            todo = [(req.n - c, s) for (req, _, s), c in zip(plan.to_generate, cached) if c < req.n]
            first = todo[0][1]
            ticket = self.queue.submit(
                person, remaining, label=label, cost=sum(k * work_per_image(s) for k, s in todo) / remaining,
                batch=config.generation_recipe(self.device, first.width, first.height, remaining).batch_size)
            ticket.on_wait = on_wait
        cancel = should_cancel
        if ticket is not None:
            def cancel() -> bool:
                return ticket.cancelled or bool(should_cancel and should_cancel())
        offset = 0
        try:
            for i, ((req, folder, settings), reused) in enumerate(zip(plan.to_generate, cached)):
                if reused == req.n:
                    totals.reused += req.n
                    offset += req.n
                    continue
                pipe, recipe, compiling = self.prepare(folder, settings, remaining,
                                                       lock=ticket.turn(0) if ticket else None)
                if ticket is not None:
                    ticket.batch, ticket.cost = recipe.batch_size, work_per_image(settings)

                def report(done: int, n: int, step: int, steps: int, offset=offset, run=i + 1, reused=reused,
                           compiling=compiling) -> None:
                    if on_progress:
                        sharing = self.queue.people_other_than(person) if ticket is not None else 0
                        on_progress(Progress(offset + done, total, step, steps, run, len(plan.to_generate),
                                             compiling and done == reused, sharing))

                result = self.generate_seeds(pipe, recipe, settings, req.prompt, req.seeds, req.clip,
                                             on_progress=report, should_cancel=cancel, lock=ticket)
                totals.generated += result.generated
                totals.reused += result.reused
                remaining -= req.n - reused
                offset += req.n
                if result.cancelled:
                    totals.cancelled = True
                    break
        except QueueCancelled:
            totals.cancelled = True
        finally:
            if ticket is not None:
                ticket.close()
        return totals

    def prepare(self, folder: Path, settings: GenerationSettings, run_images: int, *, lock=None):
        """(pipeline, recipe, compiling): the loaded pipeline prepared with the device's recipe for a run of
        `run_images` images: batch size from free memory, VAE slicing only when memory needs it, compilation only
        when the run is long enough to pay for it (core.pipeline.config). `compiling`: its first batch will compile."""
        from core.pipeline.models import apply_recipe

        pipe = self.load_pipeline(folder)
        recipe = config.generation_recipe(self.device, settings.width, settings.height, run_images)
        with lock or self.lock or nullcontext():  # the pipeline is shared: never change it under another run
            compiling = apply_recipe(pipe, recipe)
        return pipe, recipe, compiling

    def generate_seeds(self, pipe, recipe: config.GenerationRecipe, settings: GenerationSettings, prompt: str,
                       seeds: list[int], clip_preset: str | None = None, *, on_progress=None,
                       should_cancel: Callable[[], bool] | None = None, lock=None):
        """The missing images of any `seeds` of one prompt and settings (a sweep's batch need not be a range),
        with a pipeline from `prepare`; embedded as they are committed when `clip_preset` is given and the engine
        has a CLIP loader. Returns core.pipeline.generate.GenerationReport."""
        return generate_missing(
            pipe, settings, prompt, seeds, self.cache, batch_size=recipe.batch_size, lock=lock or self.lock,
            on_progress=on_progress, should_cancel=should_cancel, encode_threads=config.encode_threads(self.device),
            after_commit=self._embedder(clip_preset) if clip_preset else None)

    def _embedder(self, clip_preset: str) -> Callable[[list[CachedImage], list], None] | None:
        """Embeds freshly committed images from their pixels in memory (no PNG decode round trip), under the
        (image sha256, CLIP key) the pages look up. The model is loaded here, in the caller's thread, before any
        image is made (a missing CLIP fails the run at once, not after it); the embedding runs on the committer
        thread beside the next batch. CLIP's forward pass changes no state, so it needs no lock (the pages embed
        from several sessions at once too)."""
        if self.load_clip is None:
            return None
        from core.pipeline.embed import embed_pil

        clip = self.load_clip(clip_preset)

        def embed(images: list[CachedImage], pixels: list) -> None:
            known = self.cache.get_embeddings(clip.key, [im.sha256 for im in images])
            todo = [j for j, im in enumerate(images) if im.sha256 not in known]
            if todo:
                vectors = embed_pil(clip, [pixels[j] for j in todo])
                self.cache.put_embeddings(clip.key, {images[j].sha256: v for j, v in zip(todo, vectors)})

        return embed

    # 3. runs -------------------------------------------------------------------------------------------------------
    def runs(self, plan: Plan) -> list[Run]:
        return [Run(req, settings, cached_images(settings, req.prompt, req.seeds, self.cache))
                for req, settings in plan.chosen]

    def run(self, requests: list[RunRequest], *, generate: bool = True,
            on_progress: Callable[[Progress], None] | None = None, should_cancel: Callable[[], bool] | None = None,
            on_download: DownloadFn | None = None) -> tuple[list[Run], Totals]:
        """plan -> generate (when asked) -> runs, in one call: the command line's and a job's entry point."""
        plan = self.plan(requests, generate=generate, on_download=on_download)
        totals = self.generate(plan, on_progress=on_progress, should_cancel=should_cancel) if generate else Totals()
        return self.runs(plan), totals


# -- command line: ./lab run PROMPT [options] ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Generate (and embed) one run into the cache from a shell: what a page's Generate button does."""
    import argparse
    import sys

    from core.pipeline.generate import validate_request
    from core.pipeline.local import all_clip_models
    from core.pipeline.models import ModelUnavailableError, load_clip, load_pipeline
    from core.pipeline.registry import DEFAULT_CLIP, DEFAULT_GENERATOR

    p = argparse.ArgumentParser(prog="./lab run", description="Generate a run into the lab's cache (DDL_CACHE_DIR), "
                                "embed it with CLIP, and print where it is. Cached images are reused.")
    p.add_argument("prompt")
    p.add_argument("--n", type=int, default=16, help="images (default 16)")
    p.add_argument("--generator", default=DEFAULT_GENERATOR, help=f"a preset (default {DEFAULT_GENERATOR})")
    p.add_argument("--clip", default=DEFAULT_CLIP, help=f"a CLIP preset (default {DEFAULT_CLIP})")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--size", type=int)
    p.add_argument("--first-seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        preset = generator_preset(args.generator)
    except (KeyError, ValueError) as exc:
        print(f"./lab run: {exc}", file=sys.stderr)
        return 2
    clips = all_clip_models()
    if args.clip not in clips:
        print(f"./lab run: unknown CLIP preset {args.clip!r}; choose one of {', '.join(clips)}.", file=sys.stderr)
        return 2
    req = RunRequest(args.prompt, n=args.n, generator=args.generator, steps=args.steps, guidance=args.guidance,
                     size=args.size, first_seed=args.first_seed, clip=args.clip).with_preset_defaults(preset)
    problems = validate_request(req, preset)
    if problems:
        print("./lab run: " + " ".join(problems), file=sys.stderr)
        return 2
    device = config.select_device()
    engine = Engine(Cache(config.cache_dir()), device, lambda folder: load_pipeline(folder, device),
                    load_clip=lambda key: load_clip(clips[key], device))
    last = [""]

    def show(progress: Progress) -> None:
        text = progress.describe()
        if text != last[0]:
            print(f"  {text}", file=sys.stderr, flush=True)
            last[0] = text

    try:
        (run,), totals = engine.run([req], on_progress=show)
    except ModelUnavailableError as exc:
        print(f"./lab run: {exc}", file=sys.stderr)
        return 1
    print(f"{totals.generated} images generated, {totals.reused} reused; {len(run.images)} of {req.n} in "
          f"{engine.cache.root} (settings {run.settings.key()[:12]})")
    return 0 if not run.missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
