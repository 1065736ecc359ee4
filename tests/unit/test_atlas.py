"""core.present.atlas: a dataset's map is projected once and stored (PCA, UMAP, t-SNE), its tooltips carry thumbnails (a
stated sample above HOVER_LIMIT) and the prompt, and selections name the right rows."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from core.pipeline.dataset import open_dataset
from core.pipeline.tiny_dataset import write_synthetic_dataset
from core.present import atlas

PROMPTS = ["a <img src=x onerror=alert(1)> & co", "a photo of a church"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = write_synthetic_dataset(tmp_path_factory.mktemp("atlas") / "ds", n=300, d=16, prompts=PROMPTS,
                                     rows_per_shard=64)
    return open_dataset(folder)


@pytest.mark.parametrize("method", ["pca", pytest.param("umap", marks=pytest.mark.slow)])  # umap: numba compiles
def test_a_projection_is_computed_once_per_dataset_and_stored(dataset, tmp_path, method):
    clip_key = dataset.clip_keys()[0]
    coords = atlas.projection(tmp_path, dataset, clip_key, method)
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    with mock.patch("core.present.atlas.project", side_effect=AssertionError("computed again")):
        again = atlas.projection(tmp_path, dataset, clip_key, method)
    np.testing.assert_array_equal(coords, again)
    # The two prompts' clusters stay apart on the map: each point's nearest neighbour shares its prompt.
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    same = dataset.prompts[d.argmin(axis=1)] == dataset.prompts
    assert same.mean() > 0.8  # chance: 0.5


def test_tooltips_carry_thumbnails_and_escaped_text(dataset, tmp_path):
    coords = atlas.projection(tmp_path, dataset, dataset.clip_keys()[0], "pca")
    hover = atlas.hover_thumbnails(tmp_path, dataset)
    frame = atlas.points(dataset, coords, hover)
    assert len(frame) == 300 and frame["m"].str.startswith("data:image/jpeg;base64,").all()
    assert frame["x"].between(0, 1000).all() and frame["y"].between(0, 1000).all()
    tip = frame.loc[0, "t"]
    assert tip == f"{PROMPTS[0]} · seed 0"  # raw: Streamlit's tooltip escapes it (tests/test_e2e_dataset_map.py)
    deck = atlas.deck(frame)
    assert "{m}" in deck._tooltip["html"] and "{t}" in deck._tooltip["html"]  # Streamlit sends it beside the JSON
    spec = deck.to_json()
    assert '"@@type": "ScatterplotLayer"' in spec and '"c": 1' in spec  # a colour per prompt, one integer a point
    assert {p: set(frame["c"][dataset.prompts == p]) for p in PROMPTS} in ({PROMPTS[0]: {0}, PROMPTS[1]: {1}},
                                                                         {PROMPTS[0]: {1}, PROMPTS[1]: {0}})
    # Above the limit: a seeded sample of the points carries a thumbnail, the others none.
    rows, uris = atlas.hover_thumbnails(tmp_path / "small", dataset, limit=50)
    assert len(rows) == 50 == len(uris) and np.array_equal(rows, atlas.hover_rows(300, 50))
    sparse = atlas.points(dataset, coords, (rows, uris))
    assert (sparse["m"] != "").sum() == 50


def test_selections_name_their_rows(dataset, tmp_path):
    frame = atlas.points(dataset, atlas.projection(tmp_path, dataset, dataset.clip_keys()[0], "pca"), ([], []))
    box = {"x": [600.0, 100.0], "y": [0.0, 1000.0]}
    inside = atlas.rows_in_box(frame, box)
    assert set(inside) == set(np.flatnonzero(frame["x"].between(100, 600)))
    picked = atlas.rows_picked({"indices": {"points": [7, 3, 7]}, "objects": {"points": [{}, {}, {}]}})
    assert picked.tolist() == [3, 7]
    table = atlas.selection_table(dataset, picked)
    assert table["prompt"].tolist() == [PROMPTS[0]] * 2 and table["seed"].tolist() == [3, 7]
    assert table["steps"].tolist() == [4, 4]


def test_pca_in_batches_equals_sklearns():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(700, 12)) * np.linspace(3, 0.5, 12)).astype(np.float32)
    ours = atlas.pca_2d(x, rows=100)
    theirs = PCA(2, svd_solver="full").fit_transform(x.astype(np.float64))
    theirs *= np.sign(theirs[0]) * np.sign(ours[0])  # an axis's sign is a convention
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
