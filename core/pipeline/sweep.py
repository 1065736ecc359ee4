"""Sweeps: a grid of runs on a Ray cluster (Ray Data), written as Parquet shards in the demo-pack table layout.

`./lab sweep PLAN.toml [--address RAY_ADDRESS] [--out DIR] [--yes]`. Without --address a local Ray cluster starts on
this machine. The job, step by step:

1. Read and check the plan (`Plan.load`, `Plan.problems`): unknown models, bad ranges and grids of over a million
   images without --yes are refused before any work starts.
2. Rows: one per (prompt, generator settings, seed), keyed exactly as the app keys the same image
   (core.pipeline.generate.GenerationSettings.image_key), minus the rows already in a finished shard: a rerun resumes.
3. `ray.data.from_items(rows)` -> `map_batches(Generate)`: an actor pool (0.75 of a GPU each where there are GPUs)
   that runs the engine's generation step (core.pipeline.engine.Engine.generate_seeds) into an actor-local cache.
4. -> `map_batches(Embed)`: an actor pool embedding each new image with every CLIP model of the plan.
5. -> `map_batches(WriteShards)`: each batch becomes one shard per table, written atomically (temp file, fsync,
   rename), embeddings and thumbnails first and the images shard last: a row counts as done only when its image
   shard exists, so a killed worker, a lost node or a Ctrl-C loses at most the batches in flight.
6. The manifest (versions, plan, seeds, shard hashes) and a summary line per stage.

Output folder: `settings.parquet`, `images/part-*.parquet` (key, settings_key, prompt, seed, sha256, png),
`embeddings/part-*.parquet` (key = image sha256, clip_key, vector), `thumbnails/part-*.parquet` (sha256, size,
jpeg), `manifest.json`. pandas.read_parquet / pyarrow.dataset read each folder as one table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.pipeline.cache import THUMB_SIZE, atomic_write_bytes, canonical_json, key_of, thumbnail_jpeg

MAX_ROWS_WITHOUT_YES = 1_000_000
SHARD_TABLES = ("embeddings", "thumbnails", "images")  # write order: images last (it marks the rows done)
WORK_DIR = ".work"  # inside the output folder: the generation actors' scratch caches, removed after each run


class PlanError(ValueError):
    """A plan that cannot run; the message lists every problem and how to fix it."""


@dataclass(frozen=True)
class GeneratorSpec:
    preset: str
    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    negative_prompt: str = ""


@dataclass(frozen=True)
class Plan:
    """A sweep's grid: (classes x templates, or prompts) x generators x seeds, embedded with every CLIP model."""

    title: str
    prompts: tuple[tuple[str, str], ...]  # (label, prompt): a class name and its templated prompt, or a prompt
    generators: tuple[GeneratorSpec, ...]
    first_seed: int
    seeds: int
    clip: tuple[str, ...]
    batch: int = 4  # images per map_batches call (and per shard)
    actors: int = 1  # actors per stage

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PlanError(f"The plan {path} cannot be read: {exc}. Fix: a TOML file as in README's "
                            f"'From one GPU to a cluster'.") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        problems = []
        known = {"title", "classes", "templates", "prompts", "generators", "seeds", "clip", "batch", "actors"}
        problems += [f"Unknown setting '{k}' (known: {', '.join(sorted(known))})." for k in data if k not in known]
        prompts: list[tuple[str, str]] = []
        for p in data.get("prompts", []):
            prompts.append((str(p), str(p)))
        templates = data.get("templates", ["a photo of a {}"])
        for c in data.get("classes", []):
            for t in templates:
                if "{}" not in str(t):
                    problems.append(f"The template {t!r} has no '{{}}' where the class name goes.")
                    break
                prompts.append((str(c), str(t).replace("{}", str(c).replace("_", " "))))
        if not prompts:
            problems.append("The plan has no 'classes' and no 'prompts': give at least one.")
        generators = []
        for g in data.get("generators", []):
            if not isinstance(g, dict) or "preset" not in g:
                problems.append(f"Each [[generators]] entry needs a 'preset' (got {g!r}).")
                continue
            unknown = set(g) - {"preset", "steps", "guidance", "size", "negative_prompt"}
            if unknown:
                problems.append(f"Unknown generator setting(s) {sorted(unknown)} in {g!r}.")
            generators.append(GeneratorSpec(str(g["preset"]), g.get("steps"), g.get("guidance"), g.get("size"),
                                            str(g.get("negative_prompt", ""))))
        if not generators:
            problems.append("The plan has no [[generators]]: give at least one, e.g. preset = \"sd-turbo\".")
        seeds = data.get("seeds", {})
        first, count = seeds.get("first", 0), seeds.get("count", 0)
        if not (isinstance(first, int) and isinstance(count, int)) or first < 0 or count < 1:
            problems.append(f"seeds must be {{ first = a whole number >= 0, count = a whole number >= 1 }} "
                            f"(got {seeds!r}).")
        clip = tuple(data.get("clip", []))
        if not clip:
            problems.append("The plan has no 'clip' models: give at least one, e.g. clip = [\"ViT-B-32\"].")
        batch, actors = data.get("batch", 4), data.get("actors", 1)
        for name, value in (("batch", batch), ("actors", actors)):
            if not isinstance(value, int) or not 1 <= value <= 1024:
                problems.append(f"'{name}' must be a whole number from 1 to 1024 (got {value!r}).")
        if problems:
            raise PlanError("The plan cannot run:\n- " + "\n- ".join(problems))
        return cls(str(data.get("title", "sweep")), tuple(prompts), tuple(generators), int(first), int(count), clip,
                   int(batch), int(actors))

    @property
    def rows(self) -> int:
        return len(self.prompts) * len(self.generators) * self.seeds

    def problems(self, yes: bool = False) -> list[str]:
        """What stops this plan on this machine: unknown models, values out of a model's range, a huge grid."""
        from core.pipeline.generate import validate_request
        from core.pipeline.local import all_clip_models, generator_preset

        out = []
        clips = all_clip_models()
        out += [f"Unknown CLIP model '{c}'; choose from: {', '.join(clips)}." for c in self.clip if c not in clips]
        for g in self.generators:
            try:
                preset = generator_preset(g.preset)
            except (KeyError, ValueError) as exc:
                out.append(f"Generator '{g.preset}': {exc}")
                continue
            for _, prompt in self.prompts:
                # One image's settings (a page's cap of 256 images per run is not a sweep's), at the last seed.
                req = replace(self.request(prompt, g), n=1, first_seed=self.first_seed + self.seeds - 1)
                out += [f"Generator '{g.preset}': {p}" for p in validate_request(req.with_preset_defaults(preset),
                                                                                   preset)]
        if self.rows > MAX_ROWS_WITHOUT_YES and not yes:
            out.append(f"The grid makes {self.rows:,} images (over {MAX_ROWS_WITHOUT_YES:,}); at ~8 images/s per "
                       f"GPU that is {self.rows / 8 / 3600:,.0f} GPU-hours. Add --yes to run it anyway.")
        return sorted(set(out), key=out.index)

    def request(self, prompt: str, g: GeneratorSpec):
        from core.pipeline.generate import RunRequest

        return RunRequest(prompt, n=self.seeds, generator=g.preset, steps=g.steps, guidance=g.guidance, size=g.size,
                          first_seed=self.first_seed, negative_prompt=g.negative_prompt)


# -- 2. rows ---------------------------------------------------------------------------------------------------------
def plan_rows(plan: Plan, device) -> tuple[list[dict], dict[str, dict]]:
    """(rows, settings by key): every image of the grid, keyed as the app keys it on `device`."""
    from core.pipeline.generate import resolve_settings
    from core.pipeline.local import generator_preset
    from core.pipeline.models import locate_generator

    rows, settings = [], {}
    for g in plan.generators:
        preset = generator_preset(g.preset)
        folder = locate_generator(preset)
        for label, prompt in plan.prompts:
            req = plan.request(prompt, g).with_preset_defaults(preset)
            s = resolve_settings(req, folder, device)
            settings[s.key()] = s.to_dict()
            rows += [{"key": s.image_key(req.prompt, seed), "settings_key": s.key(), "prompt": req.prompt,
                      "label": label, "seed": seed, "folder": str(folder)} for seed in req.seeds]
    return rows, settings


def done_keys(out: Path) -> set[str]:
    """Image keys already in a finished images shard."""
    import pyarrow.dataset as pads

    folder = out / "images"
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return set()
    return set(pads.dataset(folder, format="parquet").to_table(columns=["key"]).column("key").to_pylist())


# -- 3-5. the stages (Ray actors: each loads its model once) ----------------------------------------------------------
def _pick_device(settings: dict):
    """The device a row's settings were keyed for: an actor refuses to make pixels for another device's keys."""
    from core.pipeline import config

    device = config.select_device()
    if (device.device, device.dtype_name) != (settings["device_type"], settings["dtype"]):
        raise RuntimeError(f"This worker runs {device.device} ({device.dtype_name}) but the sweep's keys are for "
                           f"{settings['device_type']} ({settings['dtype']}). Fix: run the driver on the same kind "
                           f"of device as the workers (it keys the images for its own device).")
    return device


def use_assigned_cpus() -> int:
    """Give torch as many threads as the CPUs Ray reserved for this actor (at least one). By default each process
    spreads over every core, so two actors on a 2-core machine fought over both cores and ran no faster than one;
    with a core each they run side by side. Returns the thread count."""
    import ray
    import torch

    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0)))
    torch.set_num_threads(threads)
    return threads


class Generate:
    """Generates a batch of rows through the engine into an actor-local cache; adds png and sha256 columns."""

    def __init__(self, settings: dict[str, dict], work: str, run_images: int):
        import tempfile

        from core.pipeline.cache import Cache

        use_assigned_cpus()

        self.settings = settings
        self.run_images = run_images  # the whole sweep's: compilation pays for itself over it, not over one batch
        Path(work).mkdir(parents=True, exist_ok=True)
        self.cache = Cache(Path(tempfile.mkdtemp(prefix="generate-", dir=work)))
        self.engines: dict[str, object] = {}

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from core.pipeline.engine import Engine
        from core.pipeline.generate import cached_images, settings_from_dict
        from core.pipeline.models import load_pipeline

        start = time.perf_counter()
        pngs, shas = [None] * len(batch["key"]), [None] * len(batch["key"])
        groups: dict[tuple[str, str, str], list[int]] = {}
        for i, (skey, prompt, folder) in enumerate(zip(batch["settings_key"], batch["prompt"], batch["folder"])):
            groups.setdefault((skey, prompt, folder), []).append(i)
        for (skey, prompt, folder), idx in groups.items():
            settings = settings_from_dict(self.settings[skey])
            if folder not in self.engines:
                device = _pick_device(self.settings[skey])
                pipe = load_pipeline(Path(folder), device)
                self.engines[folder] = Engine(self.cache, device, lambda f, pipe=pipe: pipe)
            engine = self.engines[folder]
            seeds = [int(batch["seed"][i]) for i in idx]
            pipe, recipe, _ = engine.prepare(Path(folder), settings, self.run_images)
            engine.generate_seeds(pipe, recipe, settings, prompt, seeds)
            for i, image in zip(idx, cached_images(settings, prompt, seeds, self.cache)):
                pngs[i], shas[i] = image.path.read_bytes(), image.sha256
        if any(p is None for p in pngs):
            raise RuntimeError("the engine did not make every image of the batch")
        return {**batch, "png": np.array(pngs, dtype=object), "sha256": np.array(shas, dtype=object),
                "generate_s": np.full(len(pngs), (time.perf_counter() - start) / len(pngs))}


class Embed:
    """Embeds each image with every CLIP model of the plan (decoded from the PNG: lossless, the app's pixels)."""

    def __init__(self, clip_presets: tuple[str, ...]):
        from core.pipeline import config
        from core.pipeline.local import all_clip_models
        from core.pipeline.models import load_clip

        use_assigned_cpus()
        device = config.select_device()
        models = all_clip_models()
        self.clips = [load_clip(models[c], device) for c in clip_presets]

    def __call__(self, batch: dict) -> dict:
        import io

        import numpy as np
        from PIL import Image

        from core.pipeline.embed import embed_pil

        start = time.perf_counter()
        images = [Image.open(io.BytesIO(png)).convert("RGB") for png in batch["png"]]
        per_model = [embed_pil(clip, images) for clip in self.clips]  # each: images x dim
        keys = json.dumps([clip.key for clip in self.clips])
        return {**batch, "clip_keys": np.array([keys] * len(images), dtype=object),
                "vectors": np.array([np.concatenate([m[i] for m in per_model]).astype(np.float32).tobytes()
                                     for i in range(len(images))], dtype=object),
                "embed_s": np.full(len(images), (time.perf_counter() - start) / len(images))}


class WriteShards:
    """Writes a batch as one shard per table into the output folder, images last; returns one status row."""

    def __init__(self, out: str):
        self.out = Path(out)

    def __call__(self, batch: dict) -> dict:
        import io

        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
        from PIL import Image


        start = time.perf_counter()
        n = len(batch["key"])
        name = f"part-{key_of(sorted(batch['key']))[:24]}.parquet"
        embedding_rows = []
        for sha, keys, blob in zip(batch["sha256"], batch["clip_keys"], batch["vectors"]):
            keys = json.loads(keys)
            for clip_key, vector in zip(keys, np.frombuffer(blob, dtype=np.float32).reshape(len(keys), -1)):
                embedding_rows.append({"key": sha, "clip_key": clip_key, "vector": vector})
        tables = {
            "embeddings": pa.Table.from_pylist(embedding_rows, schema=pa.schema([
                ("key", pa.string()), ("clip_key", pa.string()), ("vector", pa.list_(pa.float32()))])),
            "thumbnails": pa.table({"sha256": list(batch["sha256"]), "size": [THUMB_SIZE] * n, "jpeg": [
                thumbnail_jpeg(Image.open(io.BytesIO(png)), THUMB_SIZE) for png in batch["png"]]}),
            "images": pa.table({
                "key": list(batch["key"]), "settings_key": list(batch["settings_key"]),
                "prompt": list(batch["prompt"]), "seed": pa.array([int(s) for s in batch["seed"]], pa.int64()),
                "sha256": list(batch["sha256"]), "png": pa.array(list(batch["png"]), pa.binary())}),
        }
        for table in SHARD_TABLES:  # images last: its shard marks the rows done
            buf = io.BytesIO()
            pq.write_table(tables[table], buf)
            atomic_write_bytes(self.out / table / name, buf.getvalue())
        write_s = time.perf_counter() - start
        return {"rows": np.array([n]), "generate_s": np.array([float(np.sum(batch["generate_s"]))]),
                "embed_s": np.array([float(np.sum(batch["embed_s"]))]), "write_s": np.array([write_s]),
                "shard": np.array([name], dtype=object)}


# -- 6. the job ------------------------------------------------------------------------------------------------------
@dataclass
class Summary:
    planned: int
    already_done: int
    generated: int = 0
    shards: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def lines(self) -> list[str]:
        out = [f"plan: {self.planned} images, {self.already_done} already in finished shards, "
               f"{self.planned - self.already_done} to make"]
        for stage, key in (("generate", "generate_s"), ("embed", "embed_s"), ("write", "write_s")):
            out.append(f"{stage}: {self.generated} images, {self.stage_seconds.get(key, 0.0):.1f} s of actor time")
        out.append(f"done: {self.shards} new shards in {self.wall_s:.1f} s")
        return out


def run_sweep(plan: Plan, out: Path, *, address: str | None = None, num_cpus: int | None = None,
              log=print) -> Summary:
    """Run `plan` into `out` on Ray (a local cluster unless `address`); resumes from the finished shards there."""
    import ray

    from core.pipeline import config

    started = time.perf_counter()
    device = config.select_device()
    rows, settings = plan_rows(plan, device)
    out.mkdir(parents=True, exist_ok=True)
    _write_settings(out, settings)
    done = done_keys(out)
    todo = [r for r in rows if r["key"] not in done]
    summary = Summary(len(rows), len(rows) - len(todo))
    log(summary.lines()[0])
    if todo:
        owned = not ray.is_initialized()
        if owned:
            ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                     object_store_memory=None if address else 200 * 2**20, log_to_driver=False)
        try:
            # Each generation actor with an embedding actor beside it fits one GPU (0.75 + 0.25), so a one-GPU
            # machine runs both stages at once; without GPUs generation takes a core per actor and embedding
            # (a few percent of the work) none, so the stages cannot wait on each other for a slot.
            on_gpus = ray.cluster_resources().get("GPU", 0) > 0
            ds = ray.data.from_items(todo)
            ds = ds.map_batches(Generate, fn_constructor_kwargs={"settings": settings, "work": str(out / WORK_DIR),
                                                                 "run_images": len(todo)},
                                batch_size=plan.batch, concurrency=plan.actors,
                                **({"num_gpus": 0.75} if on_gpus else {"num_cpus": 1}))
            ds = ds.map_batches(Embed, fn_constructor_kwargs={"clip_presets": plan.clip}, batch_size=plan.batch,
                                concurrency=plan.actors, **({"num_gpus": 0.25} if on_gpus else {"num_cpus": 0}))
            # Writing is light I/O: no CPU reserved, so it never waits behind the model actors for a slot.
            ds = ds.map_batches(WriteShards, fn_constructor_kwargs={"out": str(out)}, batch_size=plan.batch,
                                concurrency=1, num_cpus=0)
            for status in ds.iter_rows():
                summary.generated += int(status["rows"])
                summary.shards += 1
                for key in ("generate_s", "embed_s", "write_s"):
                    summary.stage_seconds[key] = summary.stage_seconds.get(key, 0.0) + float(status[key])
        finally:
            if owned:
                ray.shutdown()
            shutil.rmtree(out / WORK_DIR, ignore_errors=True)  # the actors' scratch caches (a kill may leave one)
    summary.wall_s = time.perf_counter() - started
    _write_manifest(out, plan, settings, summary)
    for line in summary.lines()[1:]:
        log(line)
    return summary


def _write_settings(out: Path, settings: dict[str, dict]) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(settings)
    table = pa.table({"settings_key": keys, "json": [canonical_json(settings[k]) for k in keys]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(out / "settings.parquet", buf.getvalue())


def _write_manifest(out: Path, plan: Plan, settings: dict[str, dict], summary: Summary) -> None:
    from core.pipeline.cache import sha256_bytes
    from core.pipeline.config import library_versions

    shards = {t: {p.name: sha256_bytes(p.read_bytes()) for p in sorted((out / t).glob("*.parquet"))}
              for t in SHARD_TABLES if (out / t).is_dir()}
    manifest = {"format": "diffusion-diversity-lab sweep", "version": 1, "title": plan.title,
                "plan": asdict(plan), "settings_keys": sorted(settings), "images": summary.planned,
                "seeds": {"first": plan.first_seed, "count": plan.seeds}, "versions": library_versions(),
                "shards": shards}
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="./lab sweep", description="Run a sweep plan on Ray into Parquet shards.")
    p.add_argument("plan", type=Path)
    p.add_argument("--address", help="a Ray cluster (ray://host:10001 or auto); default: a local cluster here")
    p.add_argument("--out", type=Path, help="the output folder (default: <cache>/sweeps/<plan file name>)")
    p.add_argument("--yes", action="store_true", help=f"run grids of over {MAX_ROWS_WITHOUT_YES:,} images")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all)")
    args = p.parse_args(argv)
    try:
        plan = Plan.load(args.plan)
        problems = plan.problems(yes=args.yes)
        if problems:
            raise PlanError("The plan cannot run:\n- " + "\n- ".join(problems))
    except PlanError as exc:
        print(f"./lab sweep: {exc}", file=sys.stderr)
        return 2
    from core.pipeline import config

    out = args.out or config.cache_dir() / "sweeps" / args.plan.stem
    run_sweep(plan, out, address=args.address, num_cpus=args.num_cpus)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
