import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from core.pipeline.cache import Cache, atomic_write_bytes, canonical_json, key_of, sha256_bytes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_canonical_json_has_one_spelling_per_value():
    literal = '{"a":[1,2.5,"é"],"b":1,"c":null}'
    assert canonical_json({"b": 1, "c": None, "a": [1, 2.5, "é"]}) == literal
    assert canonical_json({"c": None, "a": [1, 2.5, "é"], "b": 1}) == literal
    assert key_of({"b": 1, "a": [1, 2.5, "é"], "c": None}) == hashlib.sha256(literal.encode()).hexdigest()


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"guidance": float("nan")})


def test_put_and_lookup_round_trip(tmp_path):
    cache = Cache(tmp_path)
    entry = cache.put_image("k1", "s", "a prompt", 7, b"png-bytes-1")
    assert entry.path == tmp_path / "images" / entry.sha256[:2] / f"{entry.sha256}.png"
    assert entry.path.read_bytes() == b"png-bytes-1"
    found = cache.lookup_images(["k1", "absent"])
    assert list(found) == ["k1"] and found["k1"].seed == 7 and found["k1"].sha256 == sha256_bytes(b"png-bytes-1")


def test_identical_content_is_stored_once(tmp_path):
    cache = Cache(tmp_path)
    a = cache.put_image("k1", "s", "p", 1, b"same")
    b = cache.put_image("k2", "s", "p", 2, b"same")
    assert a.path == b.path
    assert len([p for p in (tmp_path / "images").rglob("*.png")]) == 1


def test_corrupt_and_missing_files_are_misses_and_their_rows_dropped(tmp_path):
    cache = Cache(tmp_path)
    good = cache.put_image("good", "s", "p", 0, b"good")
    bad = cache.put_image("bad", "s", "p", 1, b"bad")
    gone = cache.put_image("gone", "s", "p", 2, b"gone")
    bad.path.write_bytes(b"bit rot")
    gone.path.unlink()
    assert list(cache.lookup_images(["good", "bad", "gone"])) == ["good"]
    assert cache.count_images() == 1  # the broken rows are gone, so the caller regenerates them
    assert good.path.exists()


def test_verify_and_repair_keep_intact_entries(tmp_path):
    cache = Cache(tmp_path)
    cache.put_image("good", "s", "p", 0, b"good")
    bad = cache.put_image("bad", "s", "p", 1, b"bad")
    bad.path.write_bytes(b"corrupt")
    orphan = tmp_path / "images" / "zz" / ("0" * 64 + ".png")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"nobody points here")
    (tmp_path / "images" / "zz" / ".tmp-half-written").write_bytes(b"half")
    report = cache.verify()
    assert (report.rows, report.corrupt_files, report.missing_files) == (2, ["bad"], [])
    assert len(report.orphan_files) == 1 and len(report.temp_files) == 1 and not report.ok
    cache.repair()
    after = cache.verify()
    assert after.ok and after.rows == 1
    assert list(cache.lookup_images(["good"])) == ["good"]


def test_atomic_write_leaves_no_temp_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_embeddings_round_trip_and_are_keyed_by_clip(tmp_path):
    cache = Cache(tmp_path)
    v = np.arange(4, dtype=np.float32)
    cache.put_embeddings("clipA", {"sha1": v})
    assert np.array_equal(cache.get_embeddings("clipA", ["sha1", "sha2"])["sha1"], v)
    assert cache.get_embeddings("clipB", ["sha1"]) == {}


def test_thumbnail_is_made_once(tmp_path):
    from PIL import Image

    cache = Cache(tmp_path)
    calls = []

    def load():
        calls.append(1)
        return Image.new("RGB", (300, 200), "red")

    first = cache.thumbnail("sha", 80, load)
    second = cache.thumbnail("sha", 80, load)
    assert first == second and len(calls) == 1
    from io import BytesIO

    assert Image.open(BytesIO(first)).size == (80, 53)


_WRITER = textwrap.dedent("""
    import sys, os
    sys.path.insert(0, {repo!r})
    from core.pipeline.cache import Cache
    cache = Cache(__import__("pathlib").Path({root!r}))
    i = 0
    while True:  # write until killed; each entry is 200 kB so the kill lands mid-write often
        cache.put_image(f"k{{i}}", "s", "p", i, os.urandom(200_000))
        i += 1
        if i == 3:
            print("ready", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("writers", [1, 2])
def test_writers_killed_midway_leave_only_complete_entries(tmp_path, writers):
    """SIGKILL one or two concurrent writers mid-stream: every index row must point to an intact file."""
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER.format(repo=REPO_ROOT, root=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True) for _ in range(writers)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    cache = Cache(tmp_path)
    report = cache.verify()
    assert report.rows >= 3
    assert report.missing_files == [] and report.corrupt_files == []
    cache.repair()  # drops the orphans/temp files a kill can leave; intact entries stay
    after = cache.verify()
    assert after.ok and after.rows == report.rows
