import io
import json
import zipfile

import numpy as np
import pytest

from core.analysis.diversity import (
    diversity_reading,
    embed_set,
    export_zip,
    map_points,
    natural_set,
    statistics_table,
    synthetic_set,
)
from core.analysis.stats import Estimate, diversity_statistics, project_2d
from core.pipeline.cache import Cache
from core.pipeline.generate import RunRequest, cached_images, generate_missing, resolve_settings
from core.pipeline.natural import NaturalFolder
from core.pipeline.registry import GENERATORS, TINY_RANDOM


@pytest.fixture
def run(tmp_path, tiny_pipe, tiny_folder, cpu):
    """Four tiny-random images in a fresh cache."""
    req = RunRequest("a photo of a tench", n=4, generator=TINY_RANDOM).with_preset_defaults(GENERATORS[TINY_RANDOM])
    settings = resolve_settings(req, tiny_folder, cpu)
    cache = Cache(tmp_path)
    generate_missing(tiny_pipe, settings, req.prompt, req.seeds, cache)
    return cache, settings, synthetic_set(cached_images(settings, req.prompt, req.seeds, cache))


def test_embeddings_are_computed_once_and_clip_loads_only_when_needed(run, tiny_clip, counted_clip):
    cache, _, images = run
    get_clip = counted_clip

    first = embed_set(cache, tiny_clip.key, images, get_clip)
    second = embed_set(cache, tiny_clip.key, images, get_clip)
    assert first.shape == (4, 384) and np.array_equal(first, second)
    assert get_clip.loads == 1  # the second call found every embedding in the cache


def test_natural_sets_are_a_fixed_sample(imagenette_dir):
    photos = NaturalFolder(imagenette_dir).images("tench")
    a, b = natural_set(photos, n=10), natural_set(photos, n=10)
    assert a.labels == b.labels and len(a) == 10 and len(set(a.shas)) == 10
    assert natural_set(photos, n=10, seed=1).labels != a.labels
    assert len(natural_set(photos[:3], n=10)) == 3


def test_export_zip_holds_the_whole_run(run, tiny_clip, imagenette_dir):
    cache, settings, images = run
    emb = embed_set(cache, tiny_clip.key, images, lambda: tiny_clip)
    nat = natural_set(NaturalFolder(imagenette_dir).images("tench"), n=4)
    nat_emb = embed_set(cache, tiny_clip.key, nat, lambda: tiny_clip)
    stats = {"synthetic": diversity_statistics(emb, 20), "natural": diversity_statistics(nat_emb, 20)}
    data = export_zip(images, emb, stats, {"generation_settings": settings.to_dict()}, (nat, nat_emb))
    z = zipfile.ZipFile(io.BytesIO(data))
    names = set(z.namelist())
    assert {f"images/seed_{s}.png" for s in range(4)} <= names
    assert z.read("images/seed_2.png") == images.files[2].read_bytes()
    assert np.allclose(np.load(io.BytesIO(z.read("embeddings.npy"))), emb)
    assert np.load(io.BytesIO(z.read("natural_embeddings.npy"))).shape == (4, 384)
    table = z.read("images.csv").decode().splitlines()
    assert table[0] == "label,sha256,file,mean cosine to the others" and len(table) == 5
    saved = json.loads(z.read("settings.json"))
    assert saved["generation_settings"]["revision"] == settings.revision
    assert {"torch", "diffusers", "open_clip_torch", "python"} <= set(saved["library_versions"])
    assert [e["name"] for e in json.loads(z.read("statistics.json"))["natural"]][1] == "Vendi score"


def test_map_points_carry_thumbnails_and_highlights(run, tiny_clip):
    cache, _, images = run
    emb = embed_set(cache, tiny_clip.key, images, lambda: tiny_clip)
    coords, _ = project_2d(emb, "pca")
    df = map_points(cache, [images], coords, frozenset({"seed 1"}))
    assert list(df["label"]) == [f"seed {s}" for s in range(4)]
    assert df["image"].str.startswith("data:image/jpeg;base64,").all()
    assert list(df["highlighted"]) == [False, True, False, False]
    assert np.allclose(df[["x", "y"]].to_numpy(), coords)


def est(value, low, high, n=16):
    return [Estimate("Vendi score", value, low, high, n)]


@pytest.mark.parametrize("syn,nat,phrase", [
    (est(3.1, 2.6, 3.5), est(9.8, 8.9, 10.6), "covers far less"),
    (est(7.0, 6.5, 7.5), est(9.8, 8.9, 10.6), "covers less"),
    (est(9.0, 8.0, 10.0), est(9.8, 8.9, 10.6), "intervals overlap"),
    (est(12.0, 11.0, 13.0), est(9.8, 8.9, 10.6), "more diverse"),
])
def test_reading_states_the_comparison_honestly(syn, nat, phrase):
    text = diversity_reading(syn, nat)
    assert phrase in text and text.startswith("Synthetic Vendi 3.1 [2.6, 3.5] (n=16)" if syn[0].value == 3.1
                                              else "Synthetic Vendi")


def test_statistics_table_explains_each_statistic():
    x = np.eye(4)
    table = statistics_table({"synthetic": diversity_statistics(x, 10)})
    assert list(table["statistic"])[:2] == ["mean pairwise cosine", "Vendi score"]
    assert table.loc[1, "value"] == pytest.approx(4.0) and "distinct" in table.loc[1, "meaning"]


def test_sets_of_different_sizes_get_no_verdict_and_are_compared_at_equal_n():
    from core.analysis.diversity import curve_rows, equal_n_estimates

    syn = np.eye(16)  # 16 orthonormal images: Vendi 16, and m of them have Vendi m
    nat = np.eye(16)[:3]
    text = diversity_reading(diversity_statistics(syn), diversity_statistics(nat))
    assert "(n=16)" in text and "(n=3)" in text and "cannot be compared" in text
    syn_eq, nat_eq = equal_n_estimates(syn, nat)
    assert syn_eq.n == nat_eq.n == 3 and syn_eq.value == pytest.approx(3.0) and nat_eq.value == pytest.approx(3.0)
    text = diversity_reading([syn_eq], [nat_eq])
    assert text.startswith("Synthetic Vendi 3.0") and "at equal n (synthetic: mean over 20 random subsets of 3" in text
    rows = curve_rows({"synthetic": syn, "natural": nat})
    assert set(rows["source"]) == {"synthetic", "natural"} and rows["n"].max() == 16
    assert rows[rows["source"] == "synthetic"]["value"].tolist() == pytest.approx(
        rows[rows["source"] == "synthetic"]["n"].tolist())


def test_the_vendi_against_n_chart_has_one_line_per_source():
    from core.analysis.diversity import curve_rows
    from core.present.charts import statistic_curve_chart

    rows = curve_rows({"synthetic": np.eye(12), "natural": np.eye(12)[:4]})
    spec = statistic_curve_chart(rows, "Vendi score").to_dict()
    assert spec["title"] == "Vendi score against n" and len(spec["layer"]) == 2
    assert set(rows["source"]) == {"synthetic", "natural"} and rows[rows["source"] == "natural"]["n"].max() == 4
