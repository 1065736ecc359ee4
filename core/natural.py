"""Natural reference photos: one loader for any folder laid out <class>/<image>, the Imagenette download, uploads."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from .cache import atomic_write_bytes, sha256_bytes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class NaturalImage:
    path: Path
    class_name: str
    sha256: str

    def load(self) -> Image.Image:
        with Image.open(self.path) as im:
            return im.convert("RGB")  # grayscale / palette / CMYK photos become RGB like the rest


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
        folder = self.class_dirs().get(class_name)
        if folder is None:
            raise KeyError(f"No class '{class_name}' in {self.root}; it has: {', '.join(self.classes())}.")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if limit is not None:
            files = files[:limit]
        return [NaturalImage(p, class_name, sha256_bytes(p.read_bytes())) for p in files]


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
                f"Could not download the reference set from {url}: {exc}. Fix: connect to the internet and retry, "
                f"or choose 'local folder' and point to photos laid out as <folder>/<class>/<image>."
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
    """Every place natural photos can come from, as {id: (label, folder)}: ids are stable, for URLs."""
    sources = {"imagenette": ("Imagenette validation set (downloaded on first use)",
                              imagenette(cache_root / "natural" / "imagenette2-160"))}
    for root in extra_roots:
        sources[f"folder:{root.name}"] = (f"folder {root}", NaturalFolder(root))
    sources["uploads"] = ("photos uploaded here", NaturalFolder(cache_root / "natural" / "uploads"))
    return sources


# -- uploads -------------------------------------------------------------------------------------------------------
def store_upload(uploads_root: Path, class_name: str, data: bytes) -> Path:
    """Keep an uploaded photo under <uploads_root>/<class>/<sha256>.<format>: named by content, never by the
    uploader's file name (which may hold '../' or odd characters). Rejects files that are not images."""
    import io

    safe_class = "".join(c for c in class_name if c.isalnum() or c in "-_ ").strip()  # no '/', '.', ':'...
    if not safe_class:
        raise ValueError("Give the uploaded photos a class name (letters, digits, '-', '_' or spaces).")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").lower()
            im.verify()
    except Exception as exc:
        raise ValueError(f"The upload is not a readable image ({exc}).") from exc
    suffix = {"jpeg": ".jpg"}.get(fmt, f".{fmt}")
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"Uploaded images must be JPEG, PNG, WebP, BMP, GIF or TIFF (got {fmt or 'unknown'}).")
    path = uploads_root / safe_class / f"{sha256_bytes(data)}{suffix}"
    if not path.exists():
        atomic_write_bytes(path, data)
    return path
