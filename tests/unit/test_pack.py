"""Demo packs (core/present/pack.py): export -> import round trip, refusal of damaged packs, the command line, and
reopening runs made on another device without the generator (core.pipeline.generate.cached_alternatives)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from suite import PHOTOS_PER_CLASS

from core.analysis.diversity import embed_set, natural_set, synthetic_set, thumbnails
from core.analysis.geometry import embedding_norms, is_norm_key, norm_cache_key, text_norms
from core.pipeline.cache import Cache
from core.pipeline.embed import text_embeddings
from core.pipeline.generate import (
    RunRequest,
    cached_alternatives,
    cached_images,
    generate_missing,
    resolve_settings,
)
from core.pipeline.natural import reference_sources
from core.pipeline.registry import GENERATORS, TINY_RANDOM
from core.present.pack import (
    PackError,
    cached_runs,
    export_pack,
    import_pack,
    imported_packs,
    main,
    natural_classes,
    read_pack,
)

SOURCE = "folder:imagenette224"
PROMPT = "a photo of a tench"


@pytest.fixture(scope="module")
def source_cache(tmp_path_factory, tiny_pipe, tiny_folder, tiny_clip, cpu, imagenette_dir):
    """A cache with two runs (one generated as if on another device), their embeddings and thumbnails, a text
    embedding, 6 embedded natural photos of 'tench' from the shared Imagenette folder, and the lengths CLIP geometry's
    "Measure the norms" keeps: of the first run's images, of the photos and of the prompt."""
    cache = Cache(tmp_path_factory.mktemp("pack-source"))
    preset = GENERATORS[TINY_RANDOM]
    req = RunRequest(PROMPT, n=4, generator=TINY_RANDOM).with_preset_defaults(preset)
    settings = resolve_settings(req, tiny_folder, cpu)
    generate_missing(tiny_pipe, settings, req.prompt, req.seeds, cache)
    # The same recipe "made on a GPU": other device and dtype, so another settings key (pixels come from the CPU
    # here; only the key matters to the test).
    gpu = replace(settings, device_type="cuda", dtype="float16")
    other = RunRequest("a photo of a church", n=3, generator=TINY_RANDOM).with_preset_defaults(preset)
    generate_missing(tiny_pipe, gpu, other.prompt, other.seeds, cache)
    for s, r in ((settings, req), (gpu, other)):
        images = synthetic_set(cached_images(s, r.prompt, r.seeds, cache))
        embed_set(cache, tiny_clip.key, images, lambda: tiny_clip)
        thumbnails(cache, images)
    text_embeddings(cache, tiny_clip.key, [PROMPT], lambda: tiny_clip)
    sources = reference_sources(cache.root, [imagenette_dir])
    photos = natural_set(sources[SOURCE][1].images("tench"), n=6)
    embed_set(cache, tiny_clip.key, photos, lambda: tiny_clip)
    first = synthetic_set(cached_images(settings, req.prompt, req.seeds, cache))
    embedding_norms(cache, tiny_clip.key, first.shas + photos.shas, first.loaders + photos.loaders, lambda: tiny_clip)
    text_norms(cache, tiny_clip.key, [PROMPT], lambda: tiny_clip)
    return cache, sources, settings, gpu


def test_cached_runs_lists_each_run_with_a_link(source_cache):
    cache, _, settings, gpu = source_cache
    runs = {r.prompt: r for r in cached_runs(cache)}
    assert set(runs) == {PROMPT, "a photo of a church"}
    assert runs[PROMPT].seeds == (0, 1, 2, 3) and runs[PROMPT].settings_key == settings.key()
    assert runs[PROMPT].link_params("tiny-random") == {
        "prompt": PROMPT, "n": "4", "generator": TINY_RANDOM, "steps": "4", "guidance": "7.5", "size": "64",
        "first_seed": "0", "clip": "tiny-random"}
    assert "made on cuda (float16)" in runs["a photo of a church"].describe()


def test_natural_classes_counts_embedded_photos(source_cache):
    cache, sources, _, _ = source_cache
    found = {(c.source_id, c.class_name): c for c in natural_classes(cache, sources)}
    assert found[(SOURCE, "tench")].photos == PHOTOS_PER_CLASS and found[(SOURCE, "tench")].embedded == 6
    assert found[(SOURCE, "church")].embedded == 0


def test_round_trip_restores_every_entry(source_cache, tmp_path):
    cache, sources, settings, gpu = source_cache
    pack = tmp_path / "demo.zip"
    summary = export_pack(pack, cache, cached_runs(cache), [(SOURCE, "tench")], sources, "Tench demo")
    assert (summary.runs, summary.images, summary.natural_photos, summary.thumbnails) == (2, 7, PHOTOS_PER_CLASS, 7)
    # 7 generated + 6 photos + 1 text embedded, 4 + 6 + 1 of them measured before normalisation: nothing else
    assert summary.embeddings == 25

    target = Cache(tmp_path / "empty-cache")
    report = import_pack(pack, target)
    assert report.summary.images == 7 and report.replaced_photos == 0
    # Images: same keys, same bytes.
    for s, prompt, seeds in ((settings, PROMPT, range(4)), (gpu, "a photo of a church", range(3))):
        before = cached_images(s, prompt, list(seeds), cache)
        after = cached_images(s, prompt, list(seeds), target)
        assert [a.path.read_bytes() for a in after] == [b.path.read_bytes() for b in before]
    # Embeddings and thumbnails: exactly equal.
    keys = [k for k, _ in cache.embedding_keys()]
    assert {k for k, _ in target.embedding_keys()} == set(keys)
    old = {(k, c): v for k, c, v in cache.embedding_rows(keys)}
    assert {(k, c): v for k, c, v in target.embedding_rows(keys)} == old
    shas = [im.sha256 for im in cached_images(settings, PROMPT, list(range(4)), cache)]
    assert sorted(target.thumbnail_rows(shas)) == sorted(cache.thumbnail_rows(shas))
    # Natural photos: offered under the same source id with no such folder configured, same photos, same sample.
    here = reference_sources(target.root, [])
    assert "from a demo pack" in here[SOURCE][0]
    assert [p.sha256 for p in here[SOURCE][1].images("tench")] == \
        [p.sha256 for p in sources[SOURCE][1].images("tench")]
    assert natural_set(here[SOURCE][1].images("tench"), n=6).shas == \
        natural_set(sources[SOURCE][1].images("tench"), n=6).shas
    assert imported_packs(target)[0]["title"] == "Tench demo"
    assert sum(is_norm_key(k) for k, _ in target.embedding_keys()) == 11  # the measured norms came along


def test_a_measured_norm_stays_behind_with_its_photo(source_cache, tmp_path):
    cache, sources, _, _ = source_cache
    pack = tmp_path / "no-photos.zip"
    export_pack(pack, cache, cached_runs(cache), [], sources)
    _, tables = read_pack(pack)
    photo_shas = natural_set(sources[SOURCE][1].images("tench"), n=6).shas
    keys = {row["key"] for row in tables["embeddings"]}
    assert not keys & {norm_cache_key(s) for s in photo_shas} and sum(map(is_norm_key, keys)) == 5


def test_import_twice_changes_nothing(source_cache, tmp_path):
    cache, sources, _, _ = source_cache
    data = io.BytesIO()
    export_pack(data, cache, cached_runs(cache), [(SOURCE, "tench")], sources)
    target = Cache(tmp_path / "c")
    import_pack(data.getvalue(), target)
    files = sorted(p.relative_to(target.root) for p in target.root.rglob("*") if p.is_file() and "sqlite" not in p.name)
    counts = (target.count_images(), len(target.embedding_keys()))
    report = import_pack(data.getvalue(), target)
    assert report.replaced_photos == 0
    assert (target.count_images(), len(target.embedding_keys())) == counts
    assert sorted(p.relative_to(target.root) for p in target.root.rglob("*")
                  if p.is_file() and "sqlite" not in p.name) == files


def test_recipe_match_reopens_another_devices_run(source_cache, tiny_folder, cpu):
    """On this CPU the 'church' run resolves to float32/cpu settings with nothing cached; the cuda/float16 run of
    the same recipe is found and holds all 3 images; another recipe (5 steps) finds nothing."""
    cache, _, settings, gpu = source_cache
    preset = GENERATORS[TINY_RANDOM]
    req = RunRequest("a photo of a church", n=3, generator=TINY_RANDOM).with_preset_defaults(preset)
    assert cached_images(resolve_settings(req, tiny_folder, cpu), req.prompt, req.seeds, cache) == []
    found = cached_alternatives(req, preset, cache.all_settings())
    assert {s.key() for s in found} == {settings.key(), gpu.key()}
    assert len(cached_images(gpu, req.prompt, req.seeds, cache)) == 3
    assert cached_alternatives(replace(req, steps=5), preset, cache.all_settings()) == []


def _rewrite(pack: bytes, member: str, edit) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(pack)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info.filename, edit(data) if info.filename == member else data)
    return out.getvalue()


def _table_edit(column: str, change, which=lambda row: True):
    """Change `column` of the first row `which` accepts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def edit(data: bytes) -> bytes:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        first = next(r for r in rows if which(r))
        first[column] = change(first[column])
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(io.BytesIO(data))), buf)
        return buf.getvalue()

    return edit


@pytest.mark.parametrize("damage, message", [
    (lambda p: b"not a zip at all", "not a zip file"),
    (lambda p: _rewrite(p, "manifest.json", lambda d: b"{"), "manifest.json is damaged"),
    (lambda p: _rewrite(p, "manifest.json", lambda d: json.dumps({**json.loads(d), "version": 99}).encode()),
     "format version 99"),
    (lambda p: _rewrite(p, "images.parquet", _table_edit("png", lambda b: b[:-20] + bytes(20))), "damaged (checksum)"),
    (lambda p: _rewrite(p, "images.parquet", _table_edit("seed", lambda s: s + 100)), "key that does not match"),
    (lambda p: _rewrite(p, "natural.parquet", _table_edit("file_name", lambda n: "../../evil.jpg")), "unsafe"),
    (lambda p: _rewrite(p, "embeddings.parquet", _table_edit("vector", lambda v: [x * 2 for x in v])),
     "not a unit vector"),
    (lambda p: _rewrite(p, "embeddings.parquet", _table_edit("vector", lambda v: [float("nan")] * len(v))),
     "not a finite number"),
    (lambda p: _rewrite(p, "embeddings.parquet", _table_edit("vector", lambda v: [-1.0],
                                                             lambda row: is_norm_key(row["key"]))),
     "not one positive number"),
    (lambda p: _rewrite(p, "thumbnails.parquet", _table_edit("jpeg", lambda b: b"garbage")), "does not decode"),
])
def test_damaged_pack_is_refused_and_changes_nothing(source_cache, tmp_path, damage, message):
    cache, sources, _, _ = source_cache
    data = io.BytesIO()
    export_pack(data, cache, cached_runs(cache), [(SOURCE, "tench")], sources)
    target = Cache(tmp_path / "c")
    with pytest.raises(PackError, match=re.escape(message)):
        import_pack(damage(data.getvalue()), target)
    assert target.count_images() == 0 and target.embedding_keys() == []
    assert not [p for p in target.root.rglob("*") if p.is_file() and "sqlite" not in p.name]


def test_a_run_download_zip_is_not_a_pack():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("settings.json", "{}")
    with pytest.raises(PackError, match="not a demo pack: it has no manifest.json"):
        read_pack(buf.getvalue())


def test_export_of_nothing_or_unknown_classes_says_why(source_cache, tmp_path):
    cache, sources, _, _ = source_cache
    with pytest.raises(PackError, match="Nothing to export"):
        export_pack(tmp_path / "x.zip", cache, [], [], sources)
    with pytest.raises(PackError, match="not on this machine: imagenette: tench"):
        export_pack(tmp_path / "x.zip", cache, [], [("imagenette", "tench")], sources)
    assert not (tmp_path / "x.zip").exists()


def test_pack_tables_open_without_the_lab(source_cache, tmp_path):
    """The format promise: pandas reads each table from the zip; vectors are float32 lists of the model's size."""
    import pandas as pd

    cache, sources, _, _ = source_cache
    pack = tmp_path / "p.zip"
    export_pack(pack, cache, cached_runs(cache), [], sources)
    with zipfile.ZipFile(pack) as z:
        emb = pd.read_parquet(io.BytesIO(z.read("embeddings.parquet")))
        stats = pd.read_parquet(io.BytesIO(z.read("statistics.parquet")))
        manifest = json.loads(z.read("manifest.json"))
    # Unit vectors of the model's size, and the lengths measured before normalisation: one positive number each.
    norms = emb["key"].map(is_norm_key)
    assert emb["vector"][~norms].map(len).nunique() == 1 and (emb["vector"][norms].map(len) == 1).all()
    assert np.allclose(np.linalg.norm(np.stack(emb["vector"][~norms].to_numpy()), axis=1), 1, atol=1e-5)
    assert norms.sum() == 5 and all(v[0] > 0 for v in emb["vector"][norms])
    vendi = stats[(stats.prompt == PROMPT) & (stats.statistic == "Vendi score")]
    assert len(vendi) == 1 and 1.0 <= vendi.value.iloc[0] <= 4.0 and vendi.n.iloc[0] == 4
    assert {r["prompt"] for r in manifest["runs"]} == {PROMPT, "a photo of a church"}
    assert manifest["natural"] == [] and "torch" in manifest["library_versions"]


def test_command_line_export_show_import(source_cache, tmp_path, monkeypatch, capsys, imagenette_dir):
    cache, _, _, _ = source_cache
    monkeypatch.setenv("DDL_CACHE_DIR", str(cache.root))
    monkeypatch.setenv("DDL_NATURAL_ROOTS", str(imagenette_dir))
    pack = tmp_path / "cli.zip"
    assert main(["export", str(pack), "--prompt", "tench"]) == 0
    wrote = capsys.readouterr().out
    assert f"1 runs (4 images), {PHOTOS_PER_CLASS} natural photos in 1 classes" in wrote  # tench: embedded photos
    assert main(["show", str(pack)]) == 0
    assert f"natural: folder:imagenette224: tench ({PHOTOS_PER_CLASS} photos)" in capsys.readouterr().out
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "fresh"))
    assert main(["import", str(pack)]) == 0
    assert Cache(tmp_path / "fresh").count_images() == 4
    capsys.readouterr()
    assert main(["import", str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip does not exist" in capsys.readouterr().err


def test_a_flat_labelled_folder_travels_whole(tmp_path, tiny_clip, ambiguous_dir):
    """The Ambiguity page's calibration photos live flat (<wnid>_<name>.JPEG, no class folders): the pack carries
    the folder's top level, and the imported copy offers the same labelled photos under the same source id."""
    from core.analysis.ambiguity import photo_labels
    from core.pipeline.natural import pack_sources
    from core.present.pack import WHOLE_FOLDER

    cache = Cache(tmp_path / "box")
    sources = reference_sources(cache.root, [ambiguous_dir])
    sid = f"folder:{ambiguous_dir.name}"
    listed = {(c.source_id, c.class_name): c for c in natural_classes(cache, sources)}
    assert listed[(sid, WHOLE_FOLDER)].photos == len(list(ambiguous_dir.glob("*.JPEG"))) > 0
    pack = tmp_path / "cal.zip"
    export_pack(pack, cache, [], [(sid, WHOLE_FOLDER)], sources)
    laptop = Cache(tmp_path / "laptop")
    import_pack(pack, laptop)
    copy = pack_sources(laptop.root)[sid][1].root
    assert copy.name == ambiguous_dir.name
    before, after = photo_labels(ambiguous_dir), photo_labels(copy)
    assert {k: [p.name for p in v] for k, v in after.items()} == {k: [p.name for p in v] for k, v in before.items()}
    assert all(a.read_bytes() == b.read_bytes() for k in before for a, b in zip(before[k], after[k]))
