"""Demo packs: cached runs as one file, to present them on a machine with no GPU and no generator weights.

Prepare on a GPU box, present on a laptop: `export_pack` writes the chosen runs (generated PNGs, thumbnails, CLIP
embeddings of images and texts, the natural photos they were compared with, per-run statistics, settings with
model revisions and library versions) into one zip; `import_pack` loads it into another machine's cache. Every page
then reopens those runs from the cache: generation settings are matched by recipe
(core.pipeline.generate.cached_alternatives), natural photos come from the pack's copy of their source
(core.pipeline.natural.pack_sources), embeddings are cached, so no generator is loaded and CLIP only when new photos
must be embedded.

Format (FORMAT_VERSION 1), a zip of open formats, readable without the lab (e.g. pandas.read_parquet):
- manifest.json: format, version, title, created, library versions, runs (settings, prompt, seeds, statistics),
  CLIP keys, natural sources and classes, counts.
- images.parquet: key, settings_key, prompt, seed, sha256, png (the cached PNG bytes; sha256 of png = sha256).
- settings.parquet: settings_key, json (canonical JSON of core.pipeline.generate.GenerationSettings; its sha256 = key).
- natural.parquet: source_id, source_label, class_name, file_name, sha256, data (the photo's original bytes).
- embeddings.parquet: key (an image's sha256 or a text key), clip_key, vector (list<float32>, L2-normalised); and
  the lengths CLIP geometry measured before normalisation, keyed 'norm:<sha256>' / 'textnorm:<hash>', each a
  1-element vector holding a finite positive length (core.analysis.geometry.NORM_PREFIXES).
- thumbnails.parquet: sha256, size, jpeg.
- statistics.parquet: one row per run x CLIP model x statistic (value, 95% interval, n): for reading the pack
  elsewhere; the lab recomputes its numbers from the embeddings.

Importing checks everything before writing anything (hashes, keys, decodable images, finite unit vectors), then
writes through the cache's atomic writes: a failed or killed import leaves complete entries or none.
`python -m core.present.pack export|import|show` does the same from the command line.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.analysis.geometry import NORM_PREFIX, is_norm_key
from core.pipeline.cache import Cache, atomic_write_bytes, canonical_json, key_of, sha256_bytes
from core.pipeline.generate import CachedRun, cached_runs
from core.pipeline.natural import IMAGE_SUFFIXES, PACK_SOURCE_FILE, PACK_SOURCES_DIR, NaturalFolder, open_rgb

FORMAT_NAME = "diffusion-diversity-lab demo pack"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TABLES = ("images", "settings", "natural", "embeddings", "thumbnails", "statistics")
MAX_PACK_BYTES = 8 * 1024**3  # uncompressed: a pack is read into memory to be checked before anything is written
UPLOADS_SOURCE = "uploads"  # uploaded photos are content-named: merged into this machine's uploads folder
IMPORTED_DIR = "packs"  # <cache>/packs/<sha>.json: the manifests of imported packs, for listing them


class PackError(ValueError):
    """A pack that cannot be written or read; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class NaturalClass:
    source_id: str
    source_label: str
    class_name: str
    photos: int
    embedded: int  # photos with a cached embedding: the ones some analysis has used


WHOLE_FOLDER = ""  # the class name of a folder's top-level photos (flat ImageNet-style files, e.g. calibration sets)


def _source_photos(folder: NaturalFolder) -> dict[str, list[tuple[Path, str]]]:
    """{class name: [(file, sha256)]} of a source on this machine: each class sub-folder's usable photos, and the
    photos at the folder's top level (a flat, labelled-by-file-name folder) under WHOLE_FOLDER."""
    if not folder.root.is_dir():
        return {}
    out: dict[str, list[tuple[Path, str]]] = {}
    try:
        for name in folder.classes():
            out[name] = [(p.path, p.sha256) for p in folder.images(name)]
    except (OSError, ValueError):
        pass  # no class sub-folders
    flat = sorted(p for p in folder.root.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if flat:
        out[WHOLE_FOLDER] = [(p, sha256_bytes(p.read_bytes())) for p in flat]
    return out


def natural_classes(cache: Cache, sources: dict[str, tuple[str, NaturalFolder]]) -> list[NaturalClass]:
    """Every class of every natural source on this machine, with how many of its photos the cache has embedded.
    Reads (and hashes) every photo: seconds for a few thousand."""
    embedded = {key for key, _ in cache.embedding_keys()}
    return [NaturalClass(source_id, label, name, len(photos), sum(sha in embedded for _, sha in photos))
            for source_id, (label, folder) in sources.items()
            for name, photos in _source_photos(folder).items()]


# -- export ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackSummary:
    title: str
    runs: int
    images: int
    natural_photos: int
    natural_classes: int
    embeddings: int
    thumbnails: int
    clip_keys: tuple[str, ...]
    size_bytes: int = 0
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"{self.runs} runs ({self.images} images), {self.natural_photos} natural photos in "
                f"{self.natural_classes} classes, {self.embeddings} embeddings ({len(self.clip_keys)} CLIP models), "
                f"{self.thumbnails} thumbnails" + (f", {self.size_bytes / 2**20:.1f} MB" if self.size_bytes else ""))


def export_pack(out: Path | BinaryIO, cache: Cache, runs: list[CachedRun],
                natural: list[tuple[str, str]], sources: dict[str, tuple[str, NaturalFolder]],
                title: str = "") -> PackSummary:
    """Write `runs` and the natural photos of the (source id, class) pairs in `natural` as one pack.

    A path is written atomically (temp file + rename). Embeddings: every CLIP model's embeddings of the exported
    images and photos, plus the cached texts (prompts, class and sense texts), so the pages reopen without CLIP."""
    import pyarrow as pa

    from core.analysis.stats import diversity_statistics
    from core.pipeline.config import library_versions

    if not runs and not natural:
        raise PackError("Nothing to export: choose at least one run or one class of natural photos.")
    image_rows = []
    for run in runs:
        for key, seed, sha in cache.image_rows(run.settings_key, run.prompt):
            path = cache.image_path(sha)
            try:
                png = path.read_bytes()
            except OSError:
                continue  # gone since it was listed: `./lab cache repair` tidies the index
            if sha256_bytes(png) == sha:
                image_rows.append({"key": key, "settings_key": run.settings_key, "prompt": run.prompt,
                                   "seed": int(seed), "sha256": sha, "png": png})
    used_settings = {run.settings_key: run.settings for run in runs}

    natural_rows, natural_manifest = [], []
    left_out_photos: set[str] = set()
    wanted = set(natural)
    for source_id, (label, folder) in sources.items():
        for name, photos in _source_photos(folder).items():
            if (source_id, name) not in wanted:
                left_out_photos.update(sha for _, sha in photos)
                continue
            for path, sha in photos:
                natural_rows.append({"source_id": source_id, "source_label": label, "class_name": name,
                                     "file_name": path.name, "sha256": sha, "data": path.read_bytes()})
            natural_manifest.append({"source_id": source_id, "label": label, "class": name, "photos": len(photos)})
    missing = wanted - {(m["source_id"], m["class"]) for m in natural_manifest}
    if missing:
        raise PackError(f"These natural classes are not on this machine: "
                        f"{', '.join(f'{s}: {c}' for s, c in sorted(missing))}. Fix: choose classes that are listed.")

    # Embeddings: of the exported images and photos, and of every cached text. A key is an image of a run left out,
    # a photo of a class left out, or else a text (text keys are hashes too, so texts are what remains).
    exported = {r["sha256"] for r in image_rows} | {r["sha256"] for r in natural_rows}
    generated_elsewhere = {sha for _, _, _, shas, _ in cache.run_groups() for sha in shas} - exported
    # A measured norm ('norm:<sha>') goes with its image or photo, and stays behind with it.
    keys = sorted(key for key in {key for key, _ in cache.embedding_keys()} - generated_elsewhere
                  - (left_out_photos - exported)
                  if not key.startswith(NORM_PREFIX) or key[len(NORM_PREFIX):] in exported)
    embedding_rows = [{"key": k, "clip_key": c, "vector": np.frombuffer(v, dtype=np.float32)}
                      for k, c, v in cache.embedding_rows(keys)]
    thumbnail_rows = [{"sha256": s, "size": int(z), "jpeg": j} for s, z, j in cache.thumbnail_rows(sorted(exported))]

    # Statistics per run and CLIP model, for anyone reading the pack without the lab.
    vectors = {(r["key"], r["clip_key"]): r["vector"] for r in embedding_rows}
    clip_keys = sorted({r["clip_key"] for r in embedding_rows})
    stat_rows, manifest_runs = [], []
    for run in runs:
        shas = [r["sha256"] for r in image_rows if r["settings_key"] == run.settings_key and r["prompt"] == run.prompt]
        run_stats = {}
        for ck in clip_keys:
            if shas and all((s, ck) in vectors for s in shas):
                ests = diversity_statistics(np.stack([vectors[(s, ck)] for s in shas]))
                run_stats[ck] = {e.name: [_json_number(x) for x in (e.value, e.low, e.high)] for e in ests}
                stat_rows += [{"settings_key": run.settings_key, "prompt": run.prompt, "clip_key": ck,
                               "statistic": e.name, "value": e.value, "low": e.low, "high": e.high, "n": e.n}
                              for e in ests]
        manifest_runs.append({"settings_key": run.settings_key, "prompt": run.prompt, "seeds": list(run.seeds),
                              "generator": run.generator, "settings": run.settings, "description": run.describe(),
                              "statistics": run_stats})

    summary = PackSummary(title or f"Demo pack of {len(runs)} runs", len(runs), len(image_rows), len(natural_rows),
                          len(natural_manifest), len(embedding_rows), len(thumbnail_rows), tuple(clip_keys))
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "title": summary.title,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "library_versions": library_versions(),
                "runs": manifest_runs, "clip_keys": clip_keys, "natural": natural_manifest,
                "counts": {"runs": summary.runs, "images": summary.images, "natural_photos": summary.natural_photos,
                           "embeddings": summary.embeddings, "thumbnails": summary.thumbnails}}
    tables = {
        "images": pa.Table.from_pylist(image_rows, schema=pa.schema([
            ("key", pa.string()), ("settings_key", pa.string()), ("prompt", pa.string()), ("seed", pa.int64()),
            ("sha256", pa.string()), ("png", pa.binary())])),
        "settings": pa.Table.from_pylist(
            [{"settings_key": k, "json": canonical_json(v)} for k, v in sorted(used_settings.items())],
            schema=pa.schema([("settings_key", pa.string()), ("json", pa.string())])),
        "natural": pa.Table.from_pylist(natural_rows, schema=pa.schema([
            ("source_id", pa.string()), ("source_label", pa.string()), ("class_name", pa.string()),
            ("file_name", pa.string()), ("sha256", pa.string()), ("data", pa.binary())])),
        "embeddings": pa.Table.from_pylist(embedding_rows, schema=pa.schema([
            ("key", pa.string()), ("clip_key", pa.string()), ("vector", pa.list_(pa.float32()))])),
        "thumbnails": pa.Table.from_pylist(thumbnail_rows, schema=pa.schema([
            ("sha256", pa.string()), ("size", pa.int64()), ("jpeg", pa.binary())])),
        "statistics": pa.Table.from_pylist(stat_rows, schema=pa.schema([
            ("settings_key", pa.string()), ("prompt", pa.string()), ("clip_key", pa.string()),
            ("statistic", pa.string()), ("value", pa.float64()), ("low", pa.float64()), ("high", pa.float64()),
            ("n", pa.int64())])),
    }
    data = _zip(manifest, tables)
    if isinstance(out, (str, Path)):
        atomic_write_bytes(Path(out), data)
    else:
        out.write(data)
    return replace(summary, size_bytes=len(data))


def _json_number(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None  # JSON has no NaN: a statistic that needs more images is null


def _zip(manifest: dict, tables: dict) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    # Stored, not deflated: PNG, JPEG and (zstd-compressed) Parquet gain nothing from a second compression.
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False, allow_nan=False))
        for name, table in tables.items():
            part = io.BytesIO()
            pq.write_table(table, part, compression="zstd")
            z.writestr(f"{name}.parquet", part.getvalue())
    return buf.getvalue()


# -- import ------------------------------------------------------------------------------------------------------------

def read_pack(source: Path | bytes | BinaryIO) -> tuple[dict, dict]:
    """(manifest, {table name: list of row dicts}) of a pack, checked for shape. PackError says what is wrong."""
    import pyarrow.parquet as pq

    what = source.name if isinstance(source, Path) else "the file"
    if isinstance(source, Path) and not source.is_file():
        raise PackError(f"{source} does not exist or is not a file. Fix: give the path of a pack (.zip).")
    try:
        z = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackError(f"{what} is not a demo pack: it is not a zip file ({exc}). Fix: choose the .zip written by "
                        f"'Export a demo pack' or `./lab pack export`.") from exc
    with z:
        names = set(z.namelist())
        if MANIFEST not in names:
            raise PackError(f"{what} is a zip but not a demo pack: it has no {MANIFEST}. Fix: choose the .zip "
                            f"written by 'Export a demo pack' (a run's 'Download this run' zip is not a pack).")
        total = sum(info.file_size for info in z.infolist())
        if total > MAX_PACK_BYTES:
            raise PackError(f"{what} unpacks to {total / 2**30:.1f} GB; the limit is {MAX_PACK_BYTES / 2**30:.0f} GB. "
                            f"Fix: export fewer runs or fewer natural classes per pack.")
        try:
            manifest = json.loads(z.read(MANIFEST))
        except (ValueError, zipfile.BadZipFile) as exc:
            raise PackError(f"The pack's {MANIFEST} is damaged ({exc}). Fix: export the pack again.") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise PackError(f"{what} is not a demo pack of this lab ({MANIFEST} does not say '{FORMAT_NAME}').")
        if manifest.get("version") != FORMAT_VERSION:
            raise PackError(f"The pack has format version {manifest.get('version')}; this lab reads version "
                            f"{FORMAT_VERSION}. Fix: update the lab on this machine (or export with the same version).")
        tables = {}
        for name in TABLES:
            member = f"{name}.parquet"
            if member not in names:
                raise PackError(f"The pack has no {member}: it is incomplete. Fix: export it again.")
            try:
                tables[name] = pq.read_table(io.BytesIO(z.read(member))).to_pylist()
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise PackError(f"The pack's {member} is damaged ({exc}). Fix: export or copy the pack again.") from exc
    return manifest, tables


@dataclass(frozen=True)
class ImportReport:
    summary: PackSummary
    manifest: dict = field(hash=False)
    replaced_photos: int = 0


def import_pack(source: Path | bytes | BinaryIO, cache: Cache) -> ImportReport:
    """Check a pack completely, then load it into `cache`. Importing the same pack twice changes nothing."""
    from PIL import Image

    manifest, t = read_pack(source)
    problems: list[str] = []

    def bad(msg: str) -> None:
        if len(problems) < 10:
            problems.append(msg)

    from core.pipeline.generate import settings_from_dict

    settings = {}
    for row in t["settings"]:
        data = json.loads(row["json"])
        if key_of(data) != row["settings_key"] or settings_from_dict(data) is None:
            bad(f"settings {row['settings_key'][:12]}... do not match their key or come from another lab version")
        settings[row["settings_key"]] = data
    for row in t["images"]:
        if sha256_bytes(row["png"]) != row["sha256"]:
            bad(f"image seed {row['seed']} of {row['prompt']!r} is damaged (checksum)")
        elif row["settings_key"] not in settings:
            bad(f"image seed {row['seed']} of {row['prompt']!r} has no settings in the pack")
        elif row["key"] != key_of({"settings": row["settings_key"], "prompt": row["prompt"], "seed": int(row["seed"])}):
            bad(f"image seed {row['seed']} of {row['prompt']!r} has a key that does not match its settings")
        else:
            try:
                with Image.open(io.BytesIO(row["png"])) as im:
                    im.verify()
            except Exception as exc:
                bad(f"image seed {row['seed']} of {row['prompt']!r} does not decode ({exc})")
    for row in t["natural"]:
        name, cls = row["file_name"], row["class_name"]
        if (Path(name).name != name or name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES
                or not (cls == WHOLE_FOLDER or _safe_name(cls))):
            bad(f"natural photo {cls!r}/{name!r} has an unsafe or unknown file name")
        elif sha256_bytes(row["data"]) != row["sha256"]:
            bad(f"natural photo {cls}/{name} is damaged (checksum)")
        else:
            try:
                open_rgb(row["data"], f"{cls}/{name}")
            except ValueError as exc:
                bad(str(exc))
    dims: dict[str, int] = {}
    for row in t["embeddings"]:
        if (problem := _embedding_problem(row, dims)) is not None:
            bad(problem)
    for row in t["thumbnails"]:
        try:
            with Image.open(io.BytesIO(row["jpeg"])) as im:
                im.verify()
        except Exception:
            bad(f"a thumbnail of {row['sha256'][:12]}... does not decode")
    if problems:
        raise PackError("The pack was not imported, nothing was changed: " + "; ".join(problems) +
                        ". Fix: export the pack again from the machine that made it, and copy it in full.")

    # Everything checked: write. Files first (atomic), then index rows (core.pipeline.cache's order of writes).
    for key, data in settings.items():
        cache.put_settings(key, data)
    groups: dict[tuple[str, str], list] = {}
    for row in t["images"]:
        groups.setdefault((row["settings_key"], row["prompt"]), []).append((row["key"], int(row["seed"]), row["png"]))
    for (settings_key, prompt), entries in groups.items():
        cache.put_images(settings_key, prompt, entries)
    replaced = _write_natural(cache.root, t["natural"])
    by_clip: dict[str, dict[str, np.ndarray]] = {}
    for row in t["embeddings"]:
        by_clip.setdefault(row["clip_key"], {})[row["key"]] = np.asarray(row["vector"], dtype=np.float32)
    for clip_key, vectors in by_clip.items():
        cache.put_embeddings(clip_key, vectors)
    cache.put_thumbnails([(r["sha256"], int(r["size"]), r["jpeg"]) for r in t["thumbnails"]])
    record = canonical_json(manifest).encode("utf-8")
    atomic_write_bytes(cache.root / IMPORTED_DIR / f"{sha256_bytes(record)[:16]}.json", record)

    summary = PackSummary(str(manifest.get("title", "")), len(groups), len(t["images"]), len(t["natural"]),
                          len({(r["source_id"], r["class_name"]) for r in t["natural"]}), len(t["embeddings"]),
                          len(t["thumbnails"]), tuple(sorted(by_clip)))
    return ImportReport(summary, manifest, replaced)


def _embedding_problem(row: dict, dims: dict[str, int]) -> str | None:
    """Why an embeddings row cannot be imported, or None. Two kinds of rows share the table: unit vectors (images,
    photos, texts), all of one size per CLIP model, and lengths measured before normalisation (one positive number,
    core.analysis.geometry.NORM_PREFIXES)."""
    v = np.asarray(row["vector"], dtype=np.float32)
    key = str(row["key"])
    if not np.all(np.isfinite(v)):
        return f"an embedding for {key[:20]}... holds a value that is not a finite number"
    if is_norm_key(key):
        if len(v) != 1 or not v[0] > 0:
            return f"the measured norm {key[:20]}... is not one positive number"
        return None
    if dims.setdefault(row["clip_key"], len(v)) != len(v) or abs(float(np.linalg.norm(v)) - 1.0) > 1e-3:
        return f"an embedding for {key[:20]}... is not a unit vector of the model's size"
    return None


def _safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_ ." for c in name) and not name.startswith(".")


def _write_natural(cache_root: Path, rows: list[dict]) -> int:
    """Photos go to <cache>/natural/packs/<source>/<class>/<file> with a source.json naming the source id, so
    core.pipeline.natural.reference_sources offers them under that id; uploads merge into this machine's uploads folder.
    Returns how many existing files with the same name but other content were replaced (the latest import wins)."""
    replaced = 0
    sources: dict[str, str] = {}
    for row in rows:
        sources[row["source_id"]] = row["source_label"]
        if row["source_id"] == UPLOADS_SOURCE:
            folder = cache_root / "natural" / "uploads"
        else:
            folder = cache_root / PACK_SOURCES_DIR / _folder_name(row["source_id"])
        path = folder / row["class_name"] / row["file_name"]  # WHOLE_FOLDER (""): at the folder's top level
        if path.exists():
            if sha256_bytes(path.read_bytes()) == row["sha256"]:
                continue
            replaced += 1
        atomic_write_bytes(path, row["data"])
    for source_id, label in sources.items():
        if source_id == UPLOADS_SOURCE:
            continue
        meta = {"id": source_id, "label": label}
        atomic_write_bytes(cache_root / PACK_SOURCES_DIR / _folder_name(source_id) / PACK_SOURCE_FILE,
                           json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    return replaced


def _folder_name(source_id: str) -> str:
    """<hash of the id>/<name>: unique per source id, and the last part is the original folder's name for a
    'folder:<name>' source, so what the pages say about the folder reads the same as where it was made."""
    name = source_id.split(":", 1)[1] if source_id.startswith("folder:") else source_id
    readable = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".")[:60] or "photos"
    return f"{sha256_bytes(source_id.encode('utf-8'))[:12]}/{readable}"


def imported_packs(cache: Cache) -> list[dict]:
    """Manifests of the packs imported into this cache, newest first."""
    folder = cache.root / IMPORTED_DIR
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


# -- command line ------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """`python -m core.present.pack export OUT.zip | import PACK.zip | show PACK.zip` (cache: DDL_CACHE_DIR)."""
    import argparse

    from core.pipeline.config import cache_dir, natural_roots
    from core.pipeline.natural import reference_sources

    parser = argparse.ArgumentParser(prog="python -m core.present.pack", description=main.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("export", help="write cached runs and natural photos as one pack")
    ex.add_argument("out", type=Path)
    ex.add_argument("--prompt", action="append", default=[],
                    help="only runs whose prompt contains this text (repeatable; default: every run)")
    ex.add_argument("--natural", action="append", default=None, metavar="SOURCE:CLASS",
                    help="natural classes to include, e.g. 'imagenette:tench' (repeatable); default: every class "
                         "with embedded photos; 'none' for no photos")
    ex.add_argument("--title", default="")
    imp = sub.add_parser("import", help="load a pack into the cache")
    imp.add_argument("pack", type=Path)
    show = sub.add_parser("show", help="describe a pack without importing it")
    show.add_argument("pack", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.action == "show":
            manifest, _ = read_pack(args.pack)
            print(f"{manifest['title']} (created {manifest['created']}): {json.dumps(manifest['counts'])}")
            for run in manifest["runs"]:
                print(f"  {run['description']}")
            for nat in manifest["natural"]:
                print(f"  natural: {nat['source_id']}: {nat['class'] or '(top level)'} ({nat['photos']} photos)")
            return 0
        cache = Cache(cache_dir())
        if args.action == "import":
            report = import_pack(args.pack, cache)
            print(f"Imported '{report.summary.title}' into {cache.root}: {report.summary.describe()}.")
            return 0
        runs = [r for r in cached_runs(cache) if not args.prompt or any(p in r.prompt for p in args.prompt)]
        sources = reference_sources(cache.root, natural_roots())
        if args.natural == ["none"]:
            natural = []
        elif args.natural:
            natural = [tuple(n.split(":", 1)) if not n.startswith("folder:") else tuple(n.rsplit(":", 1))
                       for n in args.natural]
        else:
            natural = [(c.source_id, c.class_name) for c in natural_classes(cache, sources) if c.embedded]
        summary = export_pack(args.out, cache, runs, natural, sources, args.title)
        print(f"Wrote {args.out}: {summary.describe()}.")
        return 0
    except (PackError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
