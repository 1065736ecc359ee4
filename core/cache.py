"""The disk cache: an SQLite index (WAL) plus content-addressed PNG files.

Guarantees (each tested):
- A file is written to a temporary name, flushed, fsynced and renamed into place; its index row is committed only
  after the file exists. A process killed at any point leaves either a complete entry or none (at worst an orphan
  file nobody points to, which `verify()` reports and `repair()` removes).
- Reads check the file's sha256 against its name: a missing or corrupt file is reported as a miss, its row dropped,
  so the caller regenerates it.
- Several processes and threads may write at once: SQLite serialises the index, identical content maps to the same
  file name, and `INSERT OR REPLACE` of the same key is idempotent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1

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


def canonical_json(obj) -> str:
    """One spelling per value: sorted keys, no spaces, no NaN. The basis of every cache key."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def key_of(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see the old file, or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.corrupt_files or self.orphan_files or self.temp_files)


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "index.sqlite"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent in the file: set once, not per connection
            db.executescript(_SCHEMA)

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
            db.executemany(
                "INSERT OR REPLACE INTO images(key, settings_key, prompt, seed, sha256) VALUES (?, ?, ?, ?, ?)",
                [(im.key, settings_key, prompt, im.seed, im.sha256) for im in stored],
            )
        return stored

    def lookup_images(self, keys: list[str]) -> dict[str, CachedImage]:
        """The intact cached images among `keys`. Missing or corrupt files are dropped from the index."""
        if not keys:
            return {}
        found: dict[str, CachedImage] = {}
        with self._connect() as db:
            rows = []
            for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[i : i + 500]
                rows += db.execute(
                    f"SELECT key, seed, sha256 FROM images WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
        bad = []
        for key, seed, sha in rows:
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
        out: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for i in range(0, len(shas), 500):
                chunk = shas[i : i + 500]
                for sha, blob in db.execute(
                    f"SELECT image_sha256, vector FROM embeddings WHERE clip_key=? "
                    f"AND image_sha256 IN ({','.join('?' * len(chunk))})", [clip_key, *chunk]
                ):
                    out[sha] = np.frombuffer(blob, dtype=np.float32)
        return out

    # -- thumbnails -------------------------------------------------------------------------------------------
    def thumbnail(self, sha: str, size: int, load_image) -> bytes:
        """A small JPEG of an image, made once. `load_image()` returns the PIL image when it must be made."""
        with self._connect() as db:
            row = db.execute("SELECT jpeg FROM thumbnails WHERE image_sha256=? AND size=?", (sha, size)).fetchone()
        if row:
            return row[0]
        img = load_image().convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        jpeg = buf.getvalue()
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO thumbnails VALUES (?, ?, ?)", (sha, size, jpeg))
        return jpeg

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
            rows = db.execute("SELECT key, sha256 FROM images").fetchall()
        report.rows = len(rows)
        referenced = set()
        for key, sha in rows:
            path = self.image_path(sha)
            referenced.add(path.name)
            if not path.exists():
                report.missing_files.append(key)
            elif not self._file_intact(path, sha):
                report.corrupt_files.append(key)
        for path in self.images_dir.rglob("*"):
            if path.is_file():
                if path.name.startswith(".tmp-"):
                    report.temp_files.append(str(path))
                elif path.name not in referenced:
                    report.orphan_files.append(str(path))
        return report

    def repair(self) -> VerifyReport:
        """Drop rows whose file is missing or corrupt, delete corrupt, orphan and temp files. Intact entries stay."""
        report = self.verify()
        with self._connect() as db:
            for key in report.missing_files + report.corrupt_files:
                row = db.execute("SELECT sha256 FROM images WHERE key=?", (key,)).fetchone()
                db.execute("DELETE FROM images WHERE key=?", (key,))
                if row and key in report.corrupt_files:
                    self.image_path(row[0]).unlink(missing_ok=True)
        for p in report.orphan_files + report.temp_files:
            Path(p).unlink(missing_ok=True)
        return report
