"""Datasets: a sweep's output folder (core.pipeline.sweep) opened in place, read lazily with pyarrow, as a read-only
layer under the cache.

A dataset is never copied into the cache. Opening one reads its small columns (key, settings key, prompt, seed,
sha256, and which shard holds each row): about 100 bytes a row. Embeddings are read per CLIP model when a statistic
or a page asks for them; a PNG is read from its own shard (one small file) only when the image is shown.

1. Where datasets come from: `DDL_DATASETS` (folders separated by os.pathsep) and the folders added on the
   "Open a dataset" page, remembered in `<cache>/datasets.json` (written atomically).
2. `Dataset`: one folder, checked when opened (its tables, its settings, its manifest); `runs()` lists what it holds.
3. `LayeredCache`: the cache, with every opened dataset under it. Lookups of images, embeddings, thumbnails and
   settings by key find a dataset's rows exactly as they find cached ones (a sweep keys its rows as the app does),
   so every page and every link works on a dataset's runs unchanged. Writes (new images, new embeddings for another
   CLIP model, larger previews) go to the cache: the dataset folder is never written.
4. `DatasetImage`: a cached image whose PNG lives in a shard. `load()` decodes it from there; code that needs a file
   (a zip export, decoding in worker processes) gets one spooled to a temporary folder outside the cache on demand.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from core.pipeline.cache import PRECISION_SEPARATOR, Cache, CachedImage, atomic_write_bytes, key_of

ENV = "DDL_DATASETS"
REMEMBERED = "datasets.json"  # in the cache folder: {"folders": [absolute paths]}
TABLES = ("images", "embeddings", "thumbnails")


class DatasetError(ValueError):
    """A folder that cannot be opened as a dataset; the message says what is wrong and how to fix it."""


# -- 1. where datasets come from -------------------------------------------------------------------------------------
def env_folders() -> list[Path]:
    return [Path(p).expanduser().resolve() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def remembered_folders(cache_root: Path) -> list[Path]:
    path = Path(cache_root) / REMEMBERED
    try:
        data = json.loads(path.read_text())
        return [Path(p) for p in data.get("folders", []) if isinstance(p, str)]
    except (OSError, ValueError, AttributeError):
        return []  # none yet, or unreadable: the page can add folders again


def dataset_folders(cache_root: Path) -> list[Path]:
    """DDL_DATASETS first, then the remembered folders; each once."""
    return list(dict.fromkeys(env_folders() + remembered_folders(cache_root)))


def _write_remembered(cache_root: Path, folders: list[Path]) -> None:
    data = {"folders": [str(f) for f in dict.fromkeys(folders)]}
    atomic_write_bytes(Path(cache_root) / REMEMBERED, json.dumps(data, indent=2).encode())


def add_dataset(cache_root: Path, folder: str | Path) -> Dataset:
    """Open `folder` (checked first: a bad folder is not remembered) and remember it for this cache."""
    text = str(folder).strip()
    if not text:
        raise DatasetError("Give the path of a sweep's output folder (the --out of ./lab sweep).")
    dataset = open_dataset(Path(text).expanduser())
    known = remembered_folders(cache_root)
    if dataset.folder not in known:
        _write_remembered(cache_root, [*known, dataset.folder])
    return dataset


def forget_dataset(cache_root: Path, folder: Path) -> None:
    """Stop opening `folder` (the folder itself is left alone). Folders from DDL_DATASETS stay while it names them."""
    _write_remembered(cache_root, [f for f in remembered_folders(cache_root) if f != Path(folder)])


# -- 2. one dataset --------------------------------------------------------------------------------------------------
_OPEN: dict[tuple, Dataset] = {}  # (folder, the tables' modification times) -> Dataset: one index per version
_OPEN_LOCK = threading.Lock()


def _signature(folder: Path) -> tuple:
    """Changes when a shard is added (a running or resumed sweep): the folders' mtimes, the settings file's."""
    stamps = []
    for name in (*TABLES, "settings.parquet", "manifest.json"):
        try:
            stamps.append((folder / name).stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    return (str(folder), *stamps)


def open_dataset(folder: Path) -> Dataset:
    """The dataset in `folder`, opened once per version of its contents and shared (its index stays in memory)."""
    folder = Path(folder).expanduser().resolve()
    sig = _signature(folder)
    with _OPEN_LOCK:
        if sig not in _OPEN:
            for old in [k for k in _OPEN if k[0] == sig[0]]:
                del _OPEN[old]
            _OPEN[sig] = Dataset(folder)
        return _OPEN[sig]


def open_datasets(cache_root: Path) -> tuple[list[Dataset], list[str]]:
    """(the datasets that open, a message for each folder that does not)."""
    datasets, problems = [], []
    for folder in dataset_folders(cache_root):
        try:
            datasets.append(open_dataset(folder))
        except DatasetError as exc:
            problems.append(str(exc))
    return datasets, problems


@dataclass(frozen=True)
class DatasetRun:
    """One run of a dataset: the images of one (settings, prompt), as the Diversity page would ask for them."""

    label: str  # the class name a plan's template was filled with, or the prompt
    prompt: str
    settings_key: str
    settings: dict
    seeds: tuple[int, ...]


class Dataset:
    """A sweep's output folder. Checked on opening; the PNG, embedding and thumbnail columns are read on demand."""

    def __init__(self, folder: Path):
        import pyarrow.dataset as pads

        self.folder = Path(folder)
        fix = ("Fix: choose the folder ./lab sweep wrote (its --out), which holds images/, embeddings/ and "
               "settings.parquet.")
        if not self.folder.is_dir():
            raise DatasetError(f"{self.folder} is not a folder on this machine. {fix}")
        missing = [t for t in ("images", "embeddings") if not any((self.folder / t).glob("*.parquet"))]
        if missing or not (self.folder / "settings.parquet").is_file():
            what = ", ".join([f"{t}/*.parquet" for t in missing] + (
                [] if (self.folder / "settings.parquet").is_file() else ["settings.parquet"]))
            raise DatasetError(f"{self.folder} is not a sweep's output: {what} not found. {fix}")
        try:
            self.manifest = json.loads((self.folder / "manifest.json").read_text())
        except FileNotFoundError:
            self.manifest = {}  # a sweep still running, or killed before its end: its finished shards still open
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.folder}/manifest.json cannot be read ({exc}). Rerun the sweep's command: it "
                               f"resumes and writes the manifest again.") from exc
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(self.folder / "settings.parquet")
            self.settings = {k: json.loads(v) for k, v in zip(table.column("settings_key").to_pylist(),
                                                              table.column("json").to_pylist())}
            images = pads.dataset(self.folder / "images", format="parquet")
            index = images.to_table(columns=["key", "settings_key", "prompt", "seed", "sha256", "__filename"])
        except Exception as exc:  # pyarrow raises several types for a damaged file; all mean the same here
            raise DatasetError(f"{self.folder} cannot be read: {exc}. Rerun the sweep's command to rewrite damaged "
                               f"shards, or remove the folder from the list.") from exc
        self.keys = np.asarray(index.column("key").to_pylist(), dtype=object)
        self.settings_keys = np.asarray(index.column("settings_key").to_pylist(), dtype=object)
        self.prompts = np.asarray(index.column("prompt").to_pylist(), dtype=object)
        self.seeds = index.column("seed").to_numpy()
        self.shas = np.asarray(index.column("sha256").to_pylist(), dtype=object)
        files = index.column("__filename").dictionary_encode().combine_chunks()
        self._files = [Path(f) for f in files.dictionary.to_pylist()]
        self._file_of = files.indices.to_numpy()
        self.row_of_key = {k: i for i, k in enumerate(self.keys)}
        self.row_of_sha = {s: i for i, s in enumerate(self.shas)}
        self._lock = threading.Lock()
        self._vectors: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        self._thumbs: dict[tuple[str, int], bytes | None] = {}
        self._runs: list[DatasetRun] | None = None
        self._clip_keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def id(self) -> str:
        return key_of(str(self.folder))[:12]

    @property
    def title(self) -> str:
        return str(self.manifest.get("title") or self.folder.name)

    @property
    def complete(self) -> bool:
        """The sweep wrote its manifest and every planned image is in a shard."""
        return bool(self.manifest) and len(self) >= int(self.manifest.get("images", 0))

    @property
    def clip_presets(self) -> list[str]:
        return list(self.manifest.get("plan", {}).get("clip", []))

    def labels(self) -> dict[str, str]:
        """prompt -> the class name its plan filled a template with (prompts stand for themselves)."""
        return {str(p): str(label) for label, p in self.manifest.get("plan", {}).get("prompts", [])}

    def runs(self) -> list[DatasetRun]:
        """Every (settings, prompt) with its seeds, in the plan's order of prompts (read once)."""
        if self._runs is None:
            self._runs = self._group_runs()
        return self._runs

    def _group_runs(self) -> list[DatasetRun]:
        labels = self.labels()
        order = {p: i for i, p in enumerate(labels)}
        groups: dict[tuple[str, str], list[int]] = {}
        for skey, prompt, seed in zip(self.settings_keys, self.prompts, self.seeds):
            groups.setdefault((skey, prompt), []).append(int(seed))
        out = [DatasetRun(labels.get(p, p), p, s, self.settings.get(s, {}), tuple(sorted(seeds)))
               for (s, p), seeds in groups.items()]
        return sorted(out, key=lambda r: (order.get(r.prompt, len(order)), r.prompt, r.settings_key))

    # -- embeddings: one CLIP model's column at a time, kept once read -------------------------------------------
    def clip_keys(self) -> list[str]:
        """The CLIP keys of the embeddings (read once)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        if self._clip_keys is None:
            table = pads.dataset(self.folder / "embeddings", format="parquet").to_table(columns=["clip_key"])
            self._clip_keys = sorted(pc.unique(table.column("clip_key")).to_pylist())
        return self._clip_keys

    def vectors(self, clip_key: str) -> tuple[dict[str, int], np.ndarray]:
        """({image sha256: row}, float32 matrix) of one CLIP key: a vector made at another precision of the same
        model counts when the exact key is absent (as in Cache.get_embeddings)."""
        with self._lock:
            if clip_key not in self._vectors:
                self._vectors[clip_key] = self._read_vectors(clip_key)
            return self._vectors[clip_key]

    def _read_vectors(self, clip_key: str) -> tuple[dict[str, int], np.ndarray]:
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        ds = pads.dataset(self.folder / "embeddings", format="parquet")
        base = clip_key.split(PRECISION_SEPARATOR)[0]
        keys, matrix, done = [], None, 0
        other_precision = pc.starts_with(pc.field("clip_key"), base + PRECISION_SEPARATOR)
        for where in (pc.field("clip_key") == clip_key, (pc.field("clip_key") == base) | other_precision):
            # Batch by batch into one preallocated matrix: the peak is the matrix plus one batch, not two copies.
            for batch in ds.to_batches(columns=["key", "vector"], filter=where):
                if batch.num_rows == 0:
                    continue
                flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
                d = len(flat) // batch.num_rows
                if matrix is None:
                    matrix = np.empty((max(len(self), batch.num_rows), d), np.float32)
                if done + batch.num_rows > len(matrix):
                    matrix = np.concatenate([matrix, np.empty((len(matrix) + batch.num_rows, d), np.float32)])
                matrix[done : done + batch.num_rows] = flat.reshape(batch.num_rows, d)
                keys += batch.column("key").to_pylist()
                done += batch.num_rows
            if done:
                break
        if not done:
            return {}, np.zeros((0, 0), np.float32)
        matrix = matrix[:done]
        rows = {}
        for i, sha in enumerate(keys):
            rows.setdefault(sha, i)  # a shard written twice (a resumed batch) holds the same vector
        return rows, matrix

    def embedding_index(self, clip_key: str, shas=None) -> tuple[np.ndarray, np.ndarray]:
        """(the CLIP key's vectors as read, the row of each image of `shas` (default: every image, in the
        dataset's order) in it): index batches of rows rather than copy 100,000 vectors."""
        rows, matrix = self.vectors(clip_key)
        wanted = self.shas if shas is None else shas
        missing = sum(1 for s in wanted if s not in rows)
        if missing:
            raise DatasetError(f"{missing} images of {self.title} have no embedding for this CLIP model. Rerun the "
                               f"sweep with it in the plan's 'clip' list.")
        return matrix, np.fromiter((rows[s] for s in wanted), dtype=np.int64, count=len(wanted))

    def embedding_matrix(self, clip_key: str, shas=None) -> np.ndarray:
        """Every image's vector (in the dataset's row order), or those of `shas`, as one float32 matrix."""
        matrix, index = self.embedding_index(clip_key, shas)
        return matrix[index]

    # -- images and thumbnails, one row at a time ------------------------------------------------------------------
    def png(self, sha: str) -> bytes:
        import pyarrow.parquet as pq

        row = self.row_of_sha[sha]
        table = pq.read_table(self._files[self._file_of[row]], columns=["sha256", "png"],
                              filters=[("sha256", "==", sha)])
        if table.num_rows == 0:
            raise DatasetError(f"The image {sha[:12]} is listed in {self.title} but its shard no longer holds it. "
                               f"Rerun the sweep's command to rewrite the shard.")
        return table.column("png")[0].as_py()

    def thumbnail(self, sha: str, size: int) -> bytes | None:
        """The sweep's thumbnail of `sha` at `size` pixels, read from the thumbnails shard beside its image's shard
        (the same file name), or None when the sweep made none of that size."""
        import pyarrow.parquet as pq

        with self._lock:
            if (sha, size) in self._thumbs:
                return self._thumbs[(sha, size)]
        path = self.folder / "thumbnails" / self._files[self._file_of[self.row_of_sha[sha]]].name
        try:
            table = pq.read_table(path, columns=["sha256", "size", "jpeg"], filters=[("sha256", "==", sha)])
        except FileNotFoundError:
            return None
        found = [j for s, j in zip(table.column("size").to_pylist(), table.column("jpeg").to_pylist()) if s == size]
        with self._lock:
            if len(self._thumbs) > 20_000:  # ~60 MB of small JPEGs at most
                self._thumbs.clear()
            self._thumbs[(sha, size)] = found[0] if found else None
        return found[0] if found else None

    def thumbnails_of(self, shas: list[str], size: int) -> dict[str, bytes]:
        """{sha256: jpeg} of the sweep's thumbnails of `shas` at `size` px, in one scan (only those are kept)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        folder = self.folder / "thumbnails"
        if not shas or not any(folder.glob("*.parquet")):
            return {}
        table = pads.dataset(folder, format="parquet").to_table(
            columns=["sha256", "jpeg"], filter=(pc.field("size") == size) & pc.field("sha256").isin(list(shas)))
        return dict(zip(table.column("sha256").to_pylist(), table.column("jpeg").to_pylist()))

    def image(self, row: int) -> DatasetImage:
        return DatasetImage(str(self.keys[row]), int(self.seeds[row]), str(self.shas[row]), self)


# -- 4. an image whose PNG lives in a shard ----------------------------------------------------------------------------
def spool_dir() -> Path:
    """Where PNGs are written when some code needs a file (outside the cache; the OS clears it)."""
    return Path(tempfile.gettempdir()) / f"ddl-dataset-spool-{os.getuid() if hasattr(os, 'getuid') else 0}"


class SpoolPath(os.PathLike):
    """A dataset image as a path: the file is written to the spool folder the first time it is used as one."""

    def __init__(self, dataset: Dataset, sha: str):
        self._dataset, self.sha = dataset, sha

    @property
    def name(self) -> str:
        return f"{self.sha}.png"

    @property
    def stem(self) -> str:
        return self.sha

    def read_bytes(self) -> bytes:
        return self._dataset.png(self.sha)

    def __fspath__(self) -> str:
        path = spool_dir() / self._dataset.id / self.name
        if not path.exists():
            atomic_write_bytes(path, self.read_bytes())
        return str(path)

    __str__ = __fspath__

    def __reduce__(self):  # to a worker process: the spooled file's path, not the dataset's index
        return (str, (self.__fspath__(),))

    def __repr__(self) -> str:
        return f"SpoolPath({self._dataset.title!r}, {self.sha[:12]})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SpoolPath) and (other._dataset.folder, other.sha) == (self._dataset.folder, self.sha)

    def __hash__(self) -> int:
        return hash(self.sha)


class DatasetImage(CachedImage):
    """A CachedImage read from a dataset's shard: `load()` decodes it from there, `path` spools it on demand."""

    def __init__(self, key: str, seed: int, sha256: str, dataset: Dataset):
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "sha256", sha256)
        object.__setattr__(self, "dataset", dataset)

    @property
    def path(self) -> SpoolPath:  # type: ignore[override]
        return SpoolPath(self.dataset, self.sha256)

    def load(self):
        from PIL import Image

        with Image.open(io.BytesIO(self.dataset.png(self.sha256))) as im:
            return im.convert("RGB")


# -- 3. the cache with the datasets under it ---------------------------------------------------------------------------
class LayeredCache(Cache):
    """The cache first, then each dataset: reads by key find either; writes go to the cache only."""

    def __init__(self, root: Path, datasets: list[Dataset]):
        super().__init__(root)
        self.datasets = list(datasets)

    def lookup_images(self, keys: list[str]) -> dict[str, CachedImage]:
        found = super().lookup_images(keys)
        for ds in self.datasets:
            for key in keys:
                if key not in found and (row := ds.row_of_key.get(key)) is not None:
                    found[key] = ds.image(row)
        return found

    def get_embeddings(self, clip_key: str, shas: list[str]) -> dict[str, np.ndarray]:
        found = super().get_embeddings(clip_key, shas)
        missing = [s for s in shas if s not in found]
        for ds in self.datasets:
            if not missing:
                break
            if not any(s in ds.row_of_sha for s in missing):
                continue
            rows, matrix = ds.vectors(clip_key)
            for sha in missing:
                if sha in rows:
                    found[sha] = matrix[rows[sha]]
            missing = [s for s in missing if s not in found]
        return found

    def get_settings(self, settings_key: str) -> dict | None:
        own = super().get_settings(settings_key)
        return own if own is not None else next(
            (ds.settings[settings_key] for ds in self.datasets if settings_key in ds.settings), None)

    def all_settings(self) -> dict[str, dict]:
        merged: dict[str, dict] = {}
        for ds in reversed(self.datasets):
            merged.update(ds.settings)
        return {**merged, **super().all_settings()}

    def thumbnail(self, sha: str, size: int, load_image) -> bytes:
        for ds in self.datasets:
            if sha in ds.row_of_sha and (jpeg := ds.thumbnail(sha, size)) is not None:
                return jpeg
        return super().thumbnail(sha, size, load_image)  # another size: made once and kept in the cache

    def dataset_of(self, sha: str) -> Dataset | None:
        return next((ds for ds in self.datasets if sha in ds.row_of_sha), None)


def open_cache(root: Path) -> Cache:
    """The cache at `root`, with the datasets it remembers and DDL_DATASETS names layered under it (a plain Cache
    when there are none). Folders that no longer open are skipped here; the Open a dataset page lists why."""
    datasets, _ = open_datasets(root)
    return LayeredCache(root, datasets) if datasets else Cache(root)


# -- links into the analysis pages -------------------------------------------------------------------------------------
def diversity_link(run: DatasetRun, clip: str | None) -> tuple[dict[str, str] | None, int]:
    """(the Diversity page's URL parameters for `run`, how many of its images the link shows). A page run holds at
    most core.pipeline.generate.MAX_IMAGES images: a longer run links its first seeds. None when no link can name the
    run (a generator that is a local folder, or seeds with gaps)."""
    from core.pipeline.generate import MAX_IMAGES, CachedRun

    seeds = run.seeds[:MAX_IMAGES]
    return CachedRun(run.settings_key, run.prompt, seeds, (), run.settings).link_params(clip), len(seeds)


def run_table(dataset: Dataset) -> list[dict]:
    """One row per run, for a table of what a dataset holds."""
    out = []
    for r in dataset.runs():
        s = r.settings
        contiguous = r.seeds == tuple(range(r.seeds[0], r.seeds[0] + len(r.seeds)))
        out.append({"class or prompt": r.label, "prompt": r.prompt, "images": len(r.seeds),
                    "model": s.get("model_id"), "steps": s.get("steps"), "guidance": s.get("guidance"),
                    "size": s.get("width"),
                    "seeds": f"{r.seeds[0]}-{r.seeds[-1]}" if contiguous else f"{len(r.seeds)} seeds",
                    "made on": f"{s.get('device_type')} ({s.get('dtype')})"})
    return out
