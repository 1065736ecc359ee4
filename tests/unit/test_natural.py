import csv
import hashlib
import http.server
import io
import tarfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from core.pipeline.natural import (
    IMAGENETTE_WNIDS,
    MAX_UPLOAD_BYTES,
    DownloadError,
    NaturalFolder,
    UnreadableImageError,
    download_reference_set,
    imagenette,
    open_rgb,
    reference_sources,
    store_upload,
)

# -- the folder loader on Imagenette-style folders: generated photos, and the real ones where present -----------
BOTH_SETS = pytest.mark.parametrize("photos", [
    pytest.param(("imagenette_dir", 24), id="generated"),
    pytest.param(("real_imagenette_dir", 100), id="real", marks=pytest.mark.real_photos)])


@BOTH_SETS
def test_folder_loader_reads_every_class_and_image(photos, request):
    fixture, per_class = photos
    imagenette_dir = request.getfixturevalue(fixture)
    folder = NaturalFolder(imagenette_dir)
    assert folder.classes() == sorted(IMAGENETTE_WNIDS.values())
    with open(imagenette_dir / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    for name in folder.classes():
        images = folder.images(name)
        assert len(images) == sum(r["class_name"] == name for r in rows) == per_class
        assert {im.path.name for im in images} == {r["path"].split("/")[-1] for r in rows if r["class_name"] == name}


@BOTH_SETS
def test_loaded_photos_are_rgb_even_when_grayscale(photos, request):
    folder = NaturalFolder(request.getfixturevalue(photos[0]))
    modes = set()
    for name in folder.classes():
        for im in folder.images(name):
            with Image.open(im.path) as raw:
                modes.add(raw.mode)
    assert "L" in modes  # both sets hold grayscale photos...
    gray = next(im for name in folder.classes() for im in folder.images(name) if Image.open(im.path).mode == "L")
    assert gray.load().mode == "RGB"  # ...which the loader converts


def test_sha256_identifies_content(imagenette_dir):
    im = NaturalFolder(imagenette_dir).images("tench", limit=1)[0]
    assert im.sha256 == hashlib.sha256(im.path.read_bytes()).hexdigest()


def test_unknown_class_and_empty_folder_are_explained(tmp_path, imagenette_dir):
    with pytest.raises(KeyError, match="No class 'crane'"):
        NaturalFolder(imagenette_dir).images("crane")
    with pytest.raises(ValueError, match="no class sub-folders"):
        NaturalFolder(tmp_path).classes()
    with pytest.raises(FileNotFoundError):
        NaturalFolder(tmp_path / "absent").classes()


def test_reference_sources_list_imagenette_folders_and_uploads(tmp_path, imagenette_dir):
    sources = reference_sources(tmp_path, [imagenette_dir])
    assert list(sources) == ["imagenette", "folder:imagenette224", "uploads"]
    assert sources["folder:imagenette224"][1].classes()[0] == "cassette_player"


# -- uploads -----------------------------------------------------------------------------------------------------
def png_bytes(colour="red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_are_stored_by_content_never_by_name(tmp_path):
    data = png_bytes()
    path = store_upload(tmp_path, "../../etc", data)
    assert path.parent.parent == tmp_path  # the class name cannot climb out
    assert path.name == hashlib.sha256(data).hexdigest() + ".png"
    assert store_upload(tmp_path, "../../etc", data) == path  # same content, same file
    assert NaturalFolder(tmp_path).images(path.parent.name)[0].path == path


def test_uploads_that_are_not_images_are_refused(tmp_path):
    # Pillow names the bytes '<_io.BytesIO object at 0x...>', and a folder's advice does not fit an upload.
    with pytest.raises(ValueError, match="not a readable image") as refused:
        store_upload(tmp_path, "cats", b"#!/bin/sh\nrm -rf /\n")
    assert "BytesIO" not in str(refused.value) and "folder" not in str(refused.value)
    assert "upload that file" in str(refused.value)
    with pytest.raises(ValueError, match="class name"):
        store_upload(tmp_path, "///", png_bytes())
    assert not any(tmp_path.rglob("*.*"))


def test_uploads_over_the_size_limit_are_refused_before_decoding(tmp_path):
    with pytest.raises(ValueError, match=r"the limit is 20 MB per photo"):
        store_upload(tmp_path, "cats", b"\xff" * (MAX_UPLOAD_BYTES + 1))
    assert not any(tmp_path.rglob("*.*"))


# -- the catalogue of awkward image files a real folder holds -------------------------------------------------------
def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_cmyk_jpeg_becomes_rgb():
    im = open_rgb(encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))  # pure red in CMYK
    assert im.mode == "RGB" and im.getpixel((4, 4))[0] > 200 and im.getpixel((4, 4))[1] < 60


def test_16_bit_greyscale_is_scaled_not_clipped_to_white():
    import numpy as np

    arr = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    im = open_rgb(encoded(Image.fromarray(arr), "PNG"))
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (128, 128, 128)


def test_transparent_pixels_become_white_not_black():
    im = open_rgb(encoded(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"))
    assert im.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    r, g, b = open_rgb(data).getpixel((0, 0))
    assert r > 200 and b < 60


def test_truncated_jpeg_is_refused_with_a_fix():
    data = encoded(Image.new("RGB", (64, 64), "green"), "JPEG")
    with pytest.raises(UnreadableImageError, match="not a readable image.*Fix: re-save it"):
        open_rgb(data[: len(data) // 2], "half.jpg")


def test_decompression_bomb_is_refused_from_its_header():
    bomb = encoded(Image.new("1", (8000, 7000)), "PNG")  # 56 megapixels in a few KB
    assert len(bomb) < 100_000
    with pytest.raises(UnreadableImageError, match="8000 x 7000 pixels, over the 50-megapixel limit"):
        open_rgb(bomb, "bomb.png")
    with pytest.raises(ValueError, match="50-megapixel limit"):
        store_upload(Path("/nonexistent-never-written"), "bombs", bomb)


def test_folder_scan_keeps_good_photos_and_says_why_each_bad_file_was_left_out(tmp_path):
    cls = tmp_path / "cats"
    cls.mkdir()
    (cls / "good.png").write_bytes(encoded(Image.new("RGB", (8, 8), "red"), "PNG"))
    (cls / "cmyk.jpg").write_bytes(encoded(Image.new("CMYK", (8, 8)), "JPEG"))
    (cls / "notes.jpg").write_bytes(b"not an image at all")
    (cls / "cut.jpg").write_bytes(encoded(Image.new("RGB", (64, 64), "blue"), "JPEG")[:300])
    (cls / "readme.txt").write_text("ignored: not an image suffix")
    usable, skipped = NaturalFolder(tmp_path).scan("cats")
    assert sorted(im.path.name for im in usable) == ["cmyk.jpg", "good.png"]
    assert len(skipped) == 2 and all("not a readable image" in m for m in skipped)
    assert {m.split(" ")[0] for m in skipped} == {"notes.jpg", "cut.jpg"}
    assert all(im.load().mode == "RGB" for im in usable)


# -- the reference-set download, served on loopback ---------------------------------------------------------------
def imagenette_like_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for wnid in list(IMAGENETTE_WNIDS)[:2]:
            for i in range(3):
                data = png_bytes(["red", "green", "blue"][i])
                info = tarfile.TarInfo(f"imagenette2-160/val/{wnid}/img{i}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def loopback_server(tmp_path):
    """Serves tmp_path/www over HTTP on 127.0.0.1; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.slow
def test_download_fetches_verifies_unpacks_and_reports_progress(tmp_path, loopback_server):
    www, base = loopback_server
    archive = imagenette_like_archive()
    (www / "set.tgz").write_bytes(archive)
    progress = []
    dest = tmp_path / "natural" / "imagenette2-160"
    val = download_reference_set(dest, f"{base}/set.tgz", hashlib.md5(archive).hexdigest(),
                                 progress=lambda f, msg: progress.append((f, msg)))
    assert val == dest / "val"
    folder = imagenette(dest)
    assert folder.classes() == sorted(list(IMAGENETTE_WNIDS.values())[:2])  # WordNet ids shown as class names
    assert len(folder.images("tench")) == 3
    assert progress[-2][0] == pytest.approx(1.0) and progress[-1][1] == "Unpacking"
    assert [p for p in (tmp_path / "natural").iterdir()] == [dest]  # no temp folders left behind
    (www / "set.tgz").unlink()
    assert download_reference_set(dest, f"{base}/set.tgz", "unused") == val  # second call: nothing fetched


@pytest.mark.slow
def test_corrupt_download_is_rejected_and_nothing_kept(tmp_path, loopback_server):
    www, base = loopback_server
    (www / "set.tgz").write_bytes(imagenette_like_archive())
    dest = tmp_path / "natural" / "imagenette2-160"
    with pytest.raises(DownloadError, match="corrupt"):
        download_reference_set(dest, f"{base}/set.tgz", "0" * 32)
    assert list((tmp_path / "natural").iterdir()) == []


@pytest.mark.slow
def test_offline_download_fails_fast_with_a_fix(tmp_path, loopback_server):
    _, base = loopback_server
    start = time.monotonic()
    with pytest.raises(DownloadError, match="Could not download.*Fix"):
        download_reference_set(tmp_path / "x", f"{base}/missing.tgz", "0" * 32)
    closed = "http://127.0.0.1:9/imagenette.tgz"  # discard port: connection refused
    with pytest.raises(DownloadError, match="connect to the internet") as offline:
        download_reference_set(tmp_path / "x", closed, "0" * 32)
    # The fix names options that exist (the lab has no 'local folder' choice for natural photos).
    assert "local folder" not in str(offline.value) and "DDL_NATURAL_ROOTS" in str(offline.value)
    assert "photos uploaded here" in str(offline.value)
    assert time.monotonic() - start < 5
