"""Natural reference photos: one loader for any folder laid out <class>/<image>, the Imagenette download, uploads."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.pipeline.cache import atomic_write_bytes, sha256_bytes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# Larger images are refused before decoding: a few-KB "decompression bomb" can expand to gigabytes of pixels.
# 50 megapixels is well above any photo CLIP needs (it sees 224 px) and bounds one decode to ~150 MB.
MAX_IMAGE_PIXELS = 50_000_000
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class UnreadableImageError(ValueError):
    """An image file that cannot be used; the message says why and what to do."""


def open_rgb(source: Path | bytes, name: str | None = None) -> Image.Image:
    """Decode an image fully into 8-bit RGB, or raise UnreadableImageError saying why.

    Handles what real folders hold: grayscale, palette, CMYK (converted), 16-bit (scaled, not clipped to white),
    transparency (composited on white, not black), animated GIF/WebP (first frame). Refuses truncated files and
    images over MAX_IMAGE_PIXELS (checked from the header, before any pixel is decoded).
    """
    label = name or (source.name if isinstance(source, Path) else "the image")
    try:
        # Pillow only warns between its own limit and twice it; our lower limit below refuses those images anyway
        # (and warnings.catch_warnings() is not thread-safe, with many sessions decoding at once).
        im = Image.open(source if isinstance(source, Path) else io.BytesIO(source))
        with im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UnreadableImageError(
                    f"{label} is {width} x {height} pixels, over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit "
                    f"(a guard against decompression bombs). Fix: downscale it, e.g. to 1024 px on the long side.")
            im.seek(0)  # animated GIF / WebP / multi-page TIFF: the first frame
            im.load()  # a truncated file fails here, not later inside CLIP
            return _to_rgb(im)
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(f"{label} is refused as a possible decompression bomb ({exc}). "
                                   f"Fix: downscale it.") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's ways of saying "not an image"
        # Pillow names bytes by the repr of its buffer ('<_io.BytesIO object at 0x...>'): say what it means instead.
        why = ("its content is not an image format Pillow knows" if isinstance(exc, UnidentifiedImageError)
               else f"{type(exc).__name__}: {exc}")
        fix = ("re-save it as JPEG or PNG, or remove it from the folder" if isinstance(source, Path)
               else "re-save it as JPEG or PNG and upload that file")
        raise UnreadableImageError(f"{label} is not a readable image ({why}). Fix: {fix}.") from exc


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grey: scale to the 8-bit range (convert() would clip everything above 255 to white).
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


@functools.lru_cache(maxsize=65536)
def _problem_with(path: str, mtime_ns: int, size: int) -> str | None:
    """Why the file at `path` cannot be used, or None. Cached per (path, mtime, size): a changed file is
    checked again, an unchanged one never twice in a process."""
    try:
        open_rgb(Path(path))
        return None
    except UnreadableImageError as exc:
        return str(exc)


def image_problem(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path.name} cannot be read ({exc})."
    return _problem_with(str(path), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class NaturalImage:
    path: Path
    class_name: str
    sha256: str

    def load(self) -> Image.Image:
        return open_rgb(self.path)


@dataclass(frozen=True)
class NaturalFolder:
    """A folder whose sub-folders are classes. `aliases` maps folder names (e.g. WordNet ids) to class names."""

    root: Path
    aliases: tuple[tuple[str, str], ...] = ()

    def class_dirs(self) -> dict[str, Path]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"The natural-image folder {self.root} does not exist.")
        names = dict(self.aliases)
        dirs = {names.get(d.name, d.name): d for d in sorted(self.root.iterdir())
                if d.is_dir() and not d.name.startswith(".")}
        if not dirs:
            raise ValueError(f"{self.root} has no class sub-folders. Lay it out as <folder>/<class>/<image>.")
        return dirs

    def classes(self) -> list[str]:
        return sorted(self.class_dirs())

    def images(self, class_name: str, limit: int | None = None) -> list[NaturalImage]:
        """The class's usable photos (see `scan` for the files left out and why)."""
        return self.scan(class_name, limit)[0]

    def scan(self, class_name: str, limit: int | None = None) -> tuple[list[NaturalImage], list[str]]:
        """(usable photos, one message per file left out). Every file is decoded once per process to find
        truncated, corrupt or oversized images before they reach CLIP; files without an image suffix are ignored."""
        folder = self.class_dirs().get(class_name)
        if folder is None:
            raise KeyError(f"No class '{class_name}' in {self.root}; it has: {', '.join(self.classes())}.")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if limit is not None:
            files = files[:limit]
        usable, skipped = [], []
        for p in files:
            problem = image_problem(p)
            if problem:
                skipped.append(problem)
            else:
                usable.append(NaturalImage(p, class_name, sha256_bytes(p.read_bytes())))
        return usable, skipped


# -- the default reference set: Imagenette (fast.ai), validation split --------------------------------------------
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
IMAGENETTE_MD5 = "e793b78cc4c9e9a4ccc0c1155377a412"
IMAGENETTE_WNIDS = {
    "n01440764": "tench", "n02102040": "english_springer", "n02979186": "cassette_player", "n03000684": "chain_saw",
    "n03028079": "church", "n03394916": "french_horn", "n03417042": "garbage_truck", "n03425413": "gas_pump",
    "n03445777": "golf_ball", "n03888605": "parachute",
}


class DownloadError(RuntimeError):
    pass


ProgressFn = Callable[[float, str], None]


def download_reference_set(dest: Path, url: str = IMAGENETTE_URL, md5: str = IMAGENETTE_MD5,
                           progress: ProgressFn | None = None, timeout_s: float = 20.0) -> Path:
    """Download, verify (MD5) and unpack an Imagenette-style archive into `dest`; returns the val/ folder.

    Streams with progress; unpacks into a temp folder and renames it into place, so an interrupted download
    never leaves a half-unpacked set behind. A second call finds the set and returns at once.
    """
    done = dest / "val"
    if done.is_dir():
        return done
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
    try:
        archive = work / "archive.tgz"
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, archive.open("wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                got = 0
                while block := resp.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    got += len(block)
                    if progress:
                        progress(got / total if total else 0.0, f"Downloading {url} ({got / 1e6:.1f} MB)")
        except OSError as exc:
            raise DownloadError(
                f"Could not download the reference set from {url}: {exc}. Fix: connect to the internet and retry; "
                f"or use photos already on this machine: list their folders, laid out as <folder>/<class>/<image>, "
                f"in DDL_NATURAL_ROOTS and restart the lab (each folder then appears in the list of natural "
                f"photos); or upload photos on the Diversity page (choose 'photos uploaded here')."
            ) from exc
        if digest.hexdigest() != md5:
            raise DownloadError(f"The download from {url} is corrupt (MD5 {digest.hexdigest()}, expected {md5}). "
                                f"Nothing was kept; retry the download.")
        if progress:
            progress(1.0, "Unpacking")
        unpacked = work / "unpacked"
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")  # "data" refuses absolute paths, '..' and links out
        vals = list(unpacked.glob("*/val"))
        if len(vals) != 1:
            raise DownloadError(f"The archive from {url} has no <name>/val folder: not an Imagenette archive.")
        shutil.rmtree(dest, ignore_errors=True)
        vals[0].parent.rename(dest)
        return done
    finally:
        shutil.rmtree(work, ignore_errors=True)


def imagenette(dest: Path) -> NaturalFolder:
    """The Imagenette validation split downloaded into `dest`, with class names instead of WordNet ids."""
    return NaturalFolder(dest / "val", tuple(IMAGENETTE_WNIDS.items()))


def reference_sources(cache_root: Path, extra_roots: list[Path]) -> dict[str, tuple[str, NaturalFolder]]:
    """Every place natural photos can come from, as {id: (label, folder)}: ids are stable, for URLs.

    A demo pack's copy of a source (PACK_SOURCES_DIR) stands in for the source of the same id when that source is
    not on this machine, so a link made where the photos were reopens here with the same photos."""
    sources = {"imagenette": ("Imagenette validation set (downloaded on first use)",
                              imagenette(cache_root / "natural" / "imagenette2-160"))}
    for root in extra_roots:
        sources[f"folder:{root.name}"] = (f"folder {root}", NaturalFolder(root))
    sources["uploads"] = ("photos uploaded here", NaturalFolder(cache_root / "natural" / "uploads"))
    for source_id, (label, folder) in pack_sources(cache_root).items():
        if source_id not in sources or not sources[source_id][1].root.is_dir():
            sources[source_id] = (f"{label} (from a demo pack)", folder)
    return sources


# -- natural photos imported with a demo pack (core/present/pack.py writes them)
# ---------------------------------------------
PACK_SOURCES_DIR = Path("natural") / "packs"  # under the cache root: <dir>/<id hash>/<name>/source.json, <class>/<file>
PACK_SOURCE_FILE = "source.json"  # {"id": source id, "label": text}; photos lie in <class>/ as the pages name it


def pack_sources(cache_root: Path) -> dict[str, tuple[str, NaturalFolder]]:
    found = {}
    base = cache_root / PACK_SOURCES_DIR
    for meta_file in sorted(base.glob(f"*/*/{PACK_SOURCE_FILE}")) if base.is_dir() else []:
        try:
            meta = json.loads(meta_file.read_text())
            found[str(meta["id"])] = (str(meta.get("label") or meta["id"]), NaturalFolder(meta_file.parent))
        except (OSError, ValueError, KeyError, AttributeError):
            continue  # a damaged descriptor: that pack's photos are not offered (re-import the pack)
    return found


# -- uploads -------------------------------------------------------------------------------------------------------
def store_upload(uploads_root: Path, class_name: str, data: bytes) -> Path:
    """Keep an uploaded photo under <uploads_root>/<class>/<sha256>.<format>: named by content, never by the
    uploader's file name (which may hold '../' or odd characters). Rejects files that are not images, are
    truncated, over MAX_UPLOAD_BYTES or over MAX_IMAGE_PIXELS."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"The upload is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB "
                         f"per photo. Fix: save it as a smaller JPEG (CLIP sees 224 px anyway).")
    safe_class = "".join(c for c in class_name if c.isalnum() or c in "-_ ").strip()  # no '/', '.', ':'...
    if not safe_class:
        raise ValueError("Give the uploaded photos a class name (letters, digits, '-', '_' or spaces).")
    open_rgb(data, "The upload")  # raises UnreadableImageError (a ValueError) saying why
    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "").lower()
    suffix = {"jpeg": ".jpg"}.get(fmt, f".{fmt}")
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"Uploaded images must be JPEG, PNG, WebP, BMP, GIF or TIFF (got {fmt or 'unknown'}).")
    path = uploads_root / safe_class / f"{sha256_bytes(data)}{suffix}"
    if not path.exists():
        atomic_write_bytes(path, data)
    return path
