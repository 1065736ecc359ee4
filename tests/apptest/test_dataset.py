"""core.pipeline.dataset and the Open a dataset page: a sweep's shards (a local Ray cluster on 2 CPUs, tiny-random
models, 2 classes x 8 seeds) open in the app in place, and the Diversity page shows the same statistics for a dataset's
run as for the same run generated into the cache; nothing is copied into the cache."""

from __future__ import annotations

import json
from unittest import mock

import app_support
import numpy as np
import pytest

from core.pipeline.dataset import (
    REMEMBERED,
    Dataset,
    DatasetError,
    DatasetImage,
    LayeredCache,
    add_dataset,
    dataset_folders,
    diversity_link,
    open_cache,
    open_dataset,
)

TIMEOUT = 240
CLASSES = ("tench", "church")


@pytest.fixture(scope="module")
def swept(finished_sweep):
    """(the sweep's output folder, the cache folder whose models it used)."""
    tmp, out, _ = finished_sweep
    return out, tmp / "cache"


def link_params(link) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(link.proto.query_string))


def statistics(at) -> list[dict]:
    table = app_support.table_elements(at)[0].value
    return table[["statistic", "source", "value", "95% low", "95% high", "n"]].to_dict("records")


# -- the dataset read in place ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_opens_as_a_dataset_of_its_runs(swept, tmp_path):
    out, _ = swept
    ds = open_dataset(out)
    assert len(ds) == 16 and ds.title == "tiny grid" and ds.complete and ds.clip_presets == ["tiny-random"]
    runs = ds.runs()
    assert [(r.label, r.prompt, r.seeds) for r in runs] == [(c, f"a photo of a {c}", tuple(range(8))) for c in CLASSES]
    assert open_dataset(out) is ds  # one index per version of the folder
    # Read by row: the PNG of one image from its shard, its thumbnail, every embedding of one CLIP model.
    image = ds.image(3)
    assert isinstance(image, DatasetImage) and image.load().size == (64, 64)
    from core.pipeline.cache import sha256_bytes

    assert sha256_bytes(ds.png(image.sha256)) == image.sha256
    assert ds.thumbnail(image.sha256, 80)[:2] == b"\xff\xd8" and ds.thumbnail(image.sha256, 81) is None
    (clip_key,) = ds.clip_keys()
    matrix = ds.embedding_matrix(clip_key)
    assert matrix.shape[0] == 16 and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-3)


@pytest.mark.slow
def test_the_layered_cache_finds_dataset_rows_by_the_apps_keys_and_writes_only_to_the_cache(swept, tmp_path):
    out, _ = swept
    ds = open_dataset(out)
    cache = LayeredCache(tmp_path / "c", [ds])
    keys = list(ds.keys[:5]) + ["no-such-key"]
    found = cache.lookup_images(keys)
    assert set(found) == set(keys[:5]) and all(isinstance(im, DatasetImage) for im in found.values())
    (clip_key,) = ds.clip_keys()
    vectors = cache.get_embeddings(clip_key, [found[k].sha256 for k in keys[:5]])
    assert len(vectors) == 5
    assert set(cache.all_settings()) == set(ds.settings) and cache.get_settings(ds.settings_keys[0]) is not None
    # A size the sweep did not make is made once from the shard's PNG and kept in the cache (derived data).
    im = found[keys[0]]
    assert cache.thumbnail(im.sha256, 80, lambda: 1 / 0)[:2] == b"\xff\xd8"  # the sweep's: no decode
    assert cache.thumbnail(im.sha256, 32, im.load) == cache.thumbnail(im.sha256, 32, lambda: 1 / 0)
    # A path is spooled outside the cache only when some code needs a file; the cache holds no PNG.
    assert open(im.path, "rb").read() == ds.png(im.sha256)
    assert not list((tmp_path / "c" / "images").rglob("*.png"))


def test_a_folder_that_is_not_a_sweep_is_refused_and_not_remembered(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "nowhere", "is not a folder"), (tmp_path / "empty", "is not a sweep's output"),
                            ("  ", "Give the path")):
        with pytest.raises(DatasetError, match=message):
            add_dataset(tmp_path / "cache", folder)
    assert dataset_folders(tmp_path / "cache") == []
    assert not (tmp_path / "cache" / REMEMBERED).exists()


@pytest.mark.slow
def test_folders_come_from_ddl_datasets_and_from_the_remembered_list(swept, tmp_path, monkeypatch):
    out, _ = swept
    monkeypatch.delenv("DDL_DATASETS", raising=False)
    assert type(open_cache(tmp_path / "c")).__name__ == "Cache"  # nothing opened: the plain cache
    add_dataset(tmp_path / "c", out)
    assert json.loads((tmp_path / "c" / REMEMBERED).read_text()) == {"folders": [str(out.resolve())]}
    assert isinstance(open_cache(tmp_path / "c"), LayeredCache)
    monkeypatch.setenv("DDL_DATASETS", f"{out}{__import__('os').pathsep}{tmp_path / 'gone'}")
    assert dataset_folders(tmp_path / "c") == [out.resolve(), (tmp_path / "gone").resolve()]


# -- the app -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_app_opens_the_sweep_and_diversity_shows_the_statistics_of_cached_runs(swept, monkeypatch):
    import streamlit as st

    from app import ui

    out, cache_root = swept  # the sweep's models folder; its image index is empty
    monkeypatch.setenv("DDL_CACHE_DIR", str(cache_root))
    monkeypatch.delenv("DDL_DATASETS", raising=False)
    st.cache_data.clear()
    # 1. Open the folder on the page: its runs are listed, each with a link into Diversity.
    at = app_support.open_page("pages/open_dataset.py", timeout=TIMEOUT)
    assert not at.exception and any("No dataset is open yet" in i.value for i in at.info)
    at.text_input(key="dataset_folder").set_value(str(out))
    at = at.button[0].click().run()
    assert not at.exception, at.exception
    assert "Opened 'tiny grid': 16 images." in at.success[0].value
    runs = at.dataframe[0].value
    assert list(runs["class or prompt"]) == list(CLASSES) and list(runs["images"]) == [8, 8]
    links = [link for link in at.get("page_link") if "open in Diversity" in link.proto.label]
    assert len(links) == 2
    params = link_params(links[0])
    assert params.items() >= {"prompt": "a photo of a tench", "n": "8", "generator": "tiny-random",
                              "clip": "tiny-random", "first_seed": "0"}.items()
    assert params == diversity_link(open_dataset(out).runs()[0], "tiny-random")[0]
    # 2. The link: the run's images and statistics read from the dataset; nothing generated, no PNG in the cache.
    with mock.patch("core.pipeline.engine.generate_missing", side_effect=AssertionError("nothing may be generated")):
        from_dataset = app_support.open_page("pages/diversity.py", params, TIMEOUT)
    assert not from_dataset.exception, from_dataset.exception
    assert not list((cache_root / "images").rglob("*.png"))
    dataset_stats = statistics(from_dataset)
    assert [row["n"] for row in dataset_stats] == [8] * 4
    # 3. The same run generated into the cache by the page (the dataset closed): the same statistics.
    (cache_root / REMEMBERED).unlink()
    st.cache_data.clear()
    real = ui.runs
    with mock.patch("app.ui.runs", lambda requests, generate: real(requests, generate=True)):
        cached = app_support.open_page("pages/diversity.py", params, TIMEOUT)
    assert not cached.exception, cached.exception
    assert len(list((cache_root / "images").rglob("*.png"))) == 8  # generated this time
    for ours, theirs in zip(dataset_stats, statistics(cached), strict=True):
        assert (ours["statistic"], ours["n"]) == (theirs["statistic"], theirs["n"])
        for column in ("value", "95% low", "95% high"):  # pixels agree within one 8-bit level
            assert ours[column] == pytest.approx(theirs[column], rel=1e-2, abs=1e-3), (ours, theirs)


def test_the_page_explains_a_folder_that_is_not_a_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.delenv("DDL_DATASETS", raising=False)
    at = app_support.open_page("pages/open_dataset.py", timeout=TIMEOUT)
    at.text_input(key="dataset_folder").set_value(str(tmp_path))
    at = at.button[0].click().run()
    assert not at.exception
    assert "is not a sweep's output" in at.error[0].value and "Fix:" in at.error[0].value


def test_a_dataset_title_is_shown_as_text_not_markdown(tmp_path, monkeypatch):
    from core.pipeline.tiny_dataset import write_synthetic_dataset

    folder = write_synthetic_dataset(tmp_path / "ds", n=40, d=8, prompts=["a *bold* [link](http://x) prompt"],
                                     title="**Title** <b>x</b>")
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("DDL_DATASETS", str(folder))
    at = app_support.open_page("pages/open_dataset.py", timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert Dataset(folder).title == "**Title** <b>x</b>"
    from core.present.markup import md_literal

    assert md_literal("**Title** <b>x</b>") in [h.value for h in at.subheader]  # shown literally, never as markup
    assert list(at.dataframe[0].value["prompt"]) == ["a *bold* [link](http://x) prompt"]


def test_the_page_shows_statistics_over_every_image_with_their_n(tmp_path, monkeypatch):
    from core.analysis.scale import SCALE_GROUPS
    from core.analysis.stats import diversity_statistics
    from core.pipeline.tiny_dataset import write_synthetic_dataset

    folder = write_synthetic_dataset(tmp_path / "ds", n=600, d=24, prompts=["a", "b", "c"], rows_per_shard=128)
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("DDL_DATASETS", str(folder))
    at = app_support.open_page("pages/open_dataset.py", timeout=TIMEOUT)
    assert not at.exception, at.exception
    shown = at.table[0].value
    ds = open_dataset(folder)
    expected = diversity_statistics(ds.embedding_matrix(ds.clip_keys()[0]), groups=SCALE_GROUPS)
    assert list(shown["n"]) == [600] * 4
    for (_, row), e in zip(shown.iterrows(), expected, strict=True):
        assert row["statistic"] == e.name
        assert [row["value"], row["95% low"], row["95% high"]] == pytest.approx([e.value, e.low, e.high], rel=1e-4)
    assert any("n = 600: every image" in c.value for c in at.caption)
    # One prompt's images: n = 200.
    at.selectbox(key="dataset_scope").set_value("b")
    at = at.run()
    assert not at.exception and list(at.table[0].value["n"]) == [200] * 4


@pytest.mark.slow
def test_the_page_compares_the_dataset_with_natural_photos(swept, imagenette_dir, monkeypatch, tmp_path):
    from core.analysis.scale import never_drawn, prdc_estimates
    from core.pipeline.cache import Cache
    from core.pipeline.natural import NaturalFolder

    out, cache_root = swept
    monkeypatch.setenv("DDL_CACHE_DIR", str(cache_root))
    monkeypatch.setenv("DDL_DATASETS", str(out))
    monkeypatch.setenv("DDL_NATURAL_ROOTS", str(imagenette_dir))
    at = app_support.open_page("pages/open_dataset.py", timeout=TIMEOUT)
    at.selectbox(key="dataset_ref").set_value("folder:imagenette224")
    at = at.run()
    at.selectbox(key="dataset_ref_class").set_value("tench")
    at = at.run()
    assert not at.exception, at.exception
    ds = open_dataset(out)
    (clip_key,) = ds.clip_keys()
    photos, _ = NaturalFolder(imagenette_dir).scan("tench")
    found = Cache(cache_root).get_embeddings(clip_key, [p.sha256 for p in photos])  # embedded by the page
    natural = np.stack([found[p.sha256] for p in photos])
    synthetic = ds.embedding_matrix(clip_key)
    shown = at.table[-1].value
    expected = prdc_estimates(natural, synthetic)
    assert list(shown["statistic"]) == ["precision", "recall", "density", "coverage"]
    assert list(shown["value"]) == pytest.approx([e.value for e in expected])
    assert list(shown["n"]) == [16, len(photos), 16, len(photos)]
    missed = never_drawn(natural, synthetic)
    assert any(f"Never drawn:** {missed.share.value:.0%} of the {len(photos)} photos" in m.value for m in at.markdown)
