"""The disk cache: an SQLite index (WAL) plus content-addressed PNG files.

Guarantees (each tested):
- A file is written to a temporary name, flushed, fsynced and renamed into place; its index row is committed only
  after the file exists. A process killed at any point leaves either a complete entry or none (at worst an orphan
  file nobody points to, which `verify()` reports and `repair()` removes).
- Reads check the file's sha256 against its name: a missing or corrupt file is reported as a miss, its row dropped,
  so the caller regenerates it.
- Several processes and threads may write at once: SQLite serialises the index, identical content maps to the same
  file name, and `INSERT OR REPLACE` of the same key is idempotent.
- The index can be rebuilt from the files: each generated PNG carries its own index row (key, settings, prompt,
  seed) in a text chunk. A corrupted index file is moved aside and rebuilt when the cache opens; embeddings and
  thumbnails (derived data) are recomputed on demand.

`python -m core.pipeline.cache verify|repair [ROOT]` checks or repairs a cache from the command line.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
PNG_METADATA_KEY = "diffusion-diversity-lab"  # the PNG text chunk holding an image's own index row

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY,            -- sha256 of (settings key, prompt, seed)
    settings_key TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    sha256 TEXT NOT NULL,            -- of the PNG bytes; the file is images/<sha[:2]>/<sha>.png
    created REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE INDEX IF NOT EXISTS images_by_settings ON images(settings_key, prompt);
CREATE TABLE IF NOT EXISTS settings (
    settings_key TEXT PRIMARY KEY,
    json TEXT NOT NULL               -- canonical JSON of everything that changes pixels
);
CREATE TABLE IF NOT EXISTS embeddings (
    image_sha256 TEXT NOT NULL,
    clip_key TEXT NOT NULL,
    vector BLOB NOT NULL,            -- float32, L2-normalised
    PRIMARY KEY (image_sha256, clip_key)
);
CREATE TABLE IF NOT EXISTS thumbnails (
    image_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    jpeg BLOB NOT NULL,
    PRIMARY KEY (image_sha256, size)
);
"""


# A CLIP key names the model; a vector made at reduced precision is stored under the key + this + the precision.
PRECISION_SEPARATOR = ":"


def canonical_json(obj) -> str:
    """One spelling per value: sorted keys, no spaces, no NaN. The basis of every cache key."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def key_of(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


THUMB_SIZE = 80  # map tooltips and sweep thumbnails: small JPEGs keep a chart's payload light


def thumbnail_jpeg(image, size: int) -> bytes:
    """A PIL image as a JPEG of at most size x size pixels: the lab's thumbnails (cache, sweeps)."""
    img = image.convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def data_uri(jpeg: bytes) -> str:
    """A JPEG (e.g. a cached thumbnail) as a data: URI, the form chart tooltips and HTML reports embed."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha) of files whose hash was checked


class CacheError(OSError):
    """The cache cannot be used or written; the message says what happened and how to fix it."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see the old file, or the whole new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, CacheError):
            raise _write_error(path, exc) from exc
        raise


def _write_error(path: Path, exc: OSError) -> CacheError:
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only",
           errno.EPERM: "permission denied"}.get(exc.errno, str(exc))
    return CacheError(exc.errno or errno.EIO,
                      f"Could not write {path.name} to the cache at {path.parent}: {why}. Everything saved before "
                      f"this is intact. Fix: free disk space or make the folder writable, or set DDL_CACHE_DIR to "
                      f"another folder.")


@dataclass(frozen=True)
class CachedImage:
    key: str
    seed: int
    sha256: str
    path: Path


@dataclass
class VerifyReport:
    rows: int = 0
    missing_files: list[str] | None = None
    corrupt_files: list[str] | None = None
    orphan_files: list[str] | None = None
    temp_files: list[str] | None = None
    index_check: str = "ok"  # SQLite's PRAGMA integrity_check

    @property
    def ok(self) -> bool:
        return self.index_check == "ok" and not (self.missing_files or self.corrupt_files or self.orphan_files
                                                 or self.temp_files)

    def summary(self) -> str:
        parts = [f"{self.rows} indexed images", f"index {self.index_check}"]
        for name, items in (("missing files", self.missing_files), ("corrupt files", self.corrupt_files),
                            ("orphan files", self.orphan_files), ("unfinished temp files", self.temp_files)):
            parts.append(f"{len(items or [])} {name}")
        return ", ".join(parts) + (": all good." if self.ok else ".")


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.db_path = self.root / "index.sqlite"
        self.recovered: str | None = None  # set when a corrupt index was rebuilt on opening: say so to the user
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(self.images_dir, exc) from exc
        if not os.access(self.root, os.W_OK) or not os.access(self.images_dir, os.W_OK):
            raise CacheError(errno.EACCES, f"The cache folder {self.root} is not writable, so nothing could be "
                                           f"saved. Fix: make it writable, or set DDL_CACHE_DIR to a writable folder.")
        try:
            self._create_schema()
        except sqlite3.OperationalError:
            raise  # locked or unreadable: not corruption, do not touch the file
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            self.recovered = self._rebuild_corrupt_index(exc)

    def _create_schema(self) -> None:
        with self._connect() as db:
            # WAL is persistent in the file: switch once. Switching needs the database to itself and SQLite does
            # not wait for that (busy timeout or not), so a second process opening a new cache retries briefly.
            deadline = time.monotonic() + 30.0
            while db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            db.executescript(_SCHEMA)

    def _rebuild_corrupt_index(self, exc: Exception) -> str:
        """Move the corrupt index aside (kept for inspection), start a new one and refill it from the PNGs."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{self.db_path}{suffix}")
            if old.exists():
                old.replace(f"{self.db_path}.corrupt-{stamp}{suffix}")
        self._create_schema()
        restored = self.rebuild_index()
        return (f"The cache index was corrupt ({exc}); it was moved to {self.db_path.name}.corrupt-{stamp} and "
                f"rebuilt from the image files: {restored} images restored. Embeddings and thumbnails are "
                f"recomputed when needed.")

    def rebuild_index(self) -> int:
        """Re-create the index rows of every intact generated PNG from its own metadata. Returns how many."""
        from PIL import Image

        rows, settings = [], {}
        for path in sorted(self.images_dir.glob("*/*.png")):
            try:
                data = path.read_bytes()
                if sha256_bytes(data) != path.stem:
                    continue  # corrupt: verify()/repair() report it
                with Image.open(io.BytesIO(data)) as im:
                    meta = json.loads(im.text[PNG_METADATA_KEY])
            except (OSError, KeyError, ValueError):
                continue
            rows.append((meta["key"], meta["settings_key"], meta["prompt"], int(meta["seed"]), path.stem))
            settings[meta["settings_key"]] = meta["settings"]
        with self._connect() as db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO images(key, settings_key, prompt, seed, sha256) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT OR IGNORE INTO settings VALUES (?, ?)",
                           [(k, canonical_json(v)) for k, v in settings.items()])
            db.execute("COMMIT")
        return len(rows)

    # -- plumbing ---------------------------------------------------------------------------------------------
    @contextmanager
    def _connect(self):
        # One short-lived connection per operation: safe across threads and processes, cheap with WAL.
        # timeout=30: wait for another writer's lock instead of failing with 'database is locked'.
        db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def image_path(self, sha: str) -> Path:
        return self.images_dir / sha[:2] / f"{sha}.png"

    # -- generated images -------------------------------------------------------------------------------------
    def put_settings(self, settings_key: str, settings: dict) -> None:
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (settings_key, canonical_json(settings)))

    def get_settings(self, settings_key: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT json FROM settings WHERE settings_key=?", (settings_key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_image(self, key: str, settings_key: str, prompt: str, seed: int, png: bytes) -> CachedImage:
        return self.put_images(settings_key, prompt, [(key, seed, png)])[0]

    def put_images(self, settings_key: str, prompt: str, entries: list[tuple[str, int, bytes]]) -> list[CachedImage]:
        """Store (key, seed, png) entries: every file first, then all their rows in one transaction."""
        stored = []
        for key, seed, png in entries:
            sha = sha256_bytes(png)
            path = self.image_path(sha)
            if not path.exists():
                atomic_write_bytes(path, png)
            stored.append(CachedImage(key, int(seed), sha, path))
        with self._connect() as db:  # the rows go in only once their files are complete on disk
            db.executemany(  # one statement, one implicit transaction: all rows of the batch or none
                "INSERT OR REPLACE INTO images(key, settings_key, prompt, seed, sha256) VALUES (?, ?, ?, ?, ?)",
                [(im.key, settings_key, prompt, im.seed, im.sha256) for im in stored],
            )
        return stored

    def lookup_images(self, keys: list[str]) -> dict[str, CachedImage]:
        """The intact cached images among `keys`. Missing or corrupt files are dropped from the index."""
        if not keys:
            return {}
        found: dict[str, CachedImage] = {}
        bad = []
        for key, seed, sha in self._query_in("SELECT key, seed, sha256 FROM images WHERE key", keys):
            path = self.image_path(sha)
            if self._file_intact(path, sha):
                found[key] = CachedImage(key, seed, sha, path)
            else:
                bad.append(key)
        if bad:
            with self._connect() as db:
                db.executemany("DELETE FROM images WHERE key=?", [(k,) for k in bad])
        return found

    @staticmethod
    def _file_intact(path: Path, sha: str) -> bool:
        """The file exists and hashes to `sha`. A file already verified in this process is trusted while its
        size and modification time are unchanged: every rerun of a page looks its images up again, and hashing
        hundreds of PNGs each time would dominate the page's time. verify() always re-reads everything."""
        try:
            st = path.stat()
            stamp = (str(path), st.st_size, st.st_mtime_ns, sha)
            if stamp in _VERIFIED:
                return True
            if sha256_bytes(path.read_bytes()) != sha:
                return False
        except OSError:
            return False
        if len(_VERIFIED) > 200_000:
            _VERIFIED.clear()
        _VERIFIED.add(stamp)
        return True

    @staticmethod
    def _file_hash_matches(path: Path, sha: str) -> bool:
        try:
            return sha256_bytes(path.read_bytes()) == sha
        except OSError:
            return False

    # -- embeddings -------------------------------------------------------------------------------------------
    def put_embeddings(self, clip_key: str, vectors: dict[str, np.ndarray]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [(sha, clip_key, np.asarray(v, dtype=np.float32).tobytes()) for sha, v in vectors.items()],
            )

    def get_embeddings(self, clip_key: str, shas: list[str]) -> dict[str, np.ndarray]:
        """The vectors of `shas` stored under `clip_key`; for the others, a vector the same model made at another
        precision (a key `base` + PRECISION_SEPARATOR + precision, see core.pipeline.models.clip_key), e.g. on a GPU box
        whose demo pack a laptop opened: tested to agree within cosine 0.999, and cheaper than embedding again."""
        rows = self._query_in("SELECT image_sha256, vector FROM embeddings WHERE clip_key=? AND image_sha256", shas,
                              (clip_key,))
        found = {sha: np.frombuffer(blob, dtype=np.float32) for sha, blob in rows}
        missing = [sha for sha in shas if sha not in found]
        if missing:
            base = clip_key.split(PRECISION_SEPARATOR)[0]
            rows = self._query_in("SELECT image_sha256, vector FROM embeddings WHERE (clip_key=? OR clip_key LIKE ?) "
                                  "AND image_sha256", missing, (base, base + PRECISION_SEPARATOR + "%"))
            for sha, blob in rows:
                found.setdefault(sha, np.frombuffer(blob, dtype=np.float32))
        return found

    # -- thumbnails -------------------------------------------------------------------------------------------
    def thumbnail(self, sha: str, size: int, load_image) -> bytes:
        """A small JPEG of an image, made once. `load_image()` returns the PIL image when it must be made."""
        with self._connect() as db:
            row = db.execute("SELECT jpeg FROM thumbnails WHERE image_sha256=? AND size=?", (sha, size)).fetchone()
        if row:
            return row[0]
        jpeg = thumbnail_jpeg(load_image(), size)
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO thumbnails VALUES (?, ?, ?)", (sha, size, jpeg))
        return jpeg

    def put_thumbnails(self, rows: list[tuple[str, int, bytes]]) -> None:
        """Store (image sha256, size, jpeg) thumbnails made elsewhere (a demo pack)."""
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO thumbnails VALUES (?, ?, ?)", rows)

    # -- whole-cache listings (demo packs) ------------------------------------------------------------------------
    def run_groups(self) -> list[tuple[str, str, list[int], list[str], float]]:
        """Every (settings key, prompt) with its seeds, image sha256s (seed order) and newest julian date."""
        groups: dict[tuple[str, str], list] = {}
        for settings_key, prompt, seed, sha, created in self._query(
                "SELECT settings_key, prompt, seed, sha256, created FROM images ORDER BY settings_key, prompt, seed"):
            g = groups.setdefault((settings_key, prompt), [[], [], 0.0])
            g[0].append(int(seed))
            g[1].append(sha)
            g[2] = max(g[2], created)
        return [(k[0], k[1], seeds, shas, created) for k, (seeds, shas, created) in groups.items()]

    def image_rows(self, settings_key: str, prompt: str) -> list[tuple[str, int, str]]:
        """(key, seed, sha256) of one run's images, in seed order."""
        return self._query("SELECT key, seed, sha256 FROM images WHERE settings_key=? AND prompt=? ORDER BY seed",
                           (settings_key, prompt))

    def embedding_keys(self) -> list[tuple[str, str]]:
        """Every (key, clip key) in the embeddings table: image sha256s and text keys alike."""
        return self._query("SELECT image_sha256, clip_key FROM embeddings")

    def embedding_rows(self, keys: list[str]) -> list[tuple[str, str, bytes]]:
        return self._query_in("SELECT image_sha256, clip_key, vector FROM embeddings WHERE image_sha256", keys)

    def thumbnail_rows(self, shas: list[str]) -> list[tuple[str, int, bytes]]:
        return self._query_in("SELECT image_sha256, size, jpeg FROM thumbnails WHERE image_sha256", shas)

    def _query_in(self, select_where: str, values: list[str], params: tuple = (), chunk: int = 500) -> list[tuple]:
        """`select_where IN (values)` (`params` bind the ?s before IN), in chunks of `chunk` values: SQLite caps
        the number of bound parameters in one statement."""
        rows: list[tuple] = []
        with self._connect() as db:
            for i in range(0, len(values), chunk):
                part = values[i : i + chunk]
                rows += db.execute(f"{select_where} IN ({','.join('?' * len(part))})", [*params, *part]).fetchall()
        return rows

    def all_settings(self) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self._query("SELECT settings_key, json FROM settings")}

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def count_images(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def verify(self) -> VerifyReport:
        """Check every row's file and every file's row. Reads every image: O(cache size)."""
        report = VerifyReport(missing_files=[], corrupt_files=[], orphan_files=[], temp_files=[])
        with self._connect() as db:
            report.index_check = db.execute("PRAGMA integrity_check").fetchone()[0]
            rows = db.execute("SELECT key, sha256 FROM images").fetchall()
        report.rows = len(rows)
        referenced = set()
        for key, sha in rows:
            path = self.image_path(sha)
            referenced.add(path.name)
            if not path.exists():
                report.missing_files.append(key)
            elif not self._file_hash_matches(path, sha):
                report.corrupt_files.append(key)
        for path in self.images_dir.rglob("*"):
            if path.is_file():
                if path.name.startswith(".tmp-"):
                    report.temp_files.append(str(path))
                elif path.name not in referenced:
                    report.orphan_files.append(str(path))
        return report

    def repair(self) -> VerifyReport:
        """Drop rows whose file is missing or corrupt and delete those files and temp files; orphan files that
        carry their own metadata (a row lost with a corrupt index) are indexed again, other orphans deleted.
        Intact entries stay. Returns what was found before repairing."""
        report = self.verify()
        with self._connect() as db:
            for key in report.missing_files + report.corrupt_files:
                row = db.execute("SELECT sha256 FROM images WHERE key=?", (key,)).fetchone()
                db.execute("DELETE FROM images WHERE key=?", (key,))
                if row and key in report.corrupt_files:
                    self.image_path(row[0]).unlink(missing_ok=True)
        for p in report.temp_files:
            Path(p).unlink(missing_ok=True)
        if report.orphan_files:
            self.rebuild_index()
            indexed = {sha for (sha,) in self._query("SELECT sha256 FROM images")}
            for p in report.orphan_files:
                if Path(p).stem not in indexed:
                    Path(p).unlink(missing_ok=True)
        return report

    def _query(self, sql: str, params=()) -> list[tuple]:
        with self._connect() as db:
            return db.execute(sql, params).fetchall()


def main(argv: list[str] | None = None) -> int:
    """`python -m core.pipeline.cache verify|repair [ROOT]`: exit status 0 when the cache is (now) consistent."""
    import argparse

    from core.pipeline.config import cache_dir

    parser = argparse.ArgumentParser(prog="python -m core.pipeline.cache", description=main.__doc__)
    parser.add_argument("action", choices=["verify", "repair"])
    parser.add_argument("root", nargs="?", type=Path, default=None, help="cache folder (default: DDL_CACHE_DIR)")
    args = parser.parse_args(argv)
    try:
        cache = Cache(args.root or cache_dir())
    except CacheError as exc:
        print(exc, file=sys.stderr)
        return 2
    if cache.recovered:
        print(cache.recovered)
    report = cache.verify() if args.action == "verify" else cache.repair()
    print(f"{cache.root}: {report.summary()}")
    if args.action == "repair" and not report.ok:
        after = cache.verify()
        print(f"after repair: {after.summary()}")
        return 0 if after.ok else 1
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
