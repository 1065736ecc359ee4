"""The map of a whole dataset (100,000 points and more) for the browser: projected once per dataset and stored, drawn
with WebGL (deck.gl through pydeck), a thumbnail on hover, and a box selection.

1. `projection`: PCA, UMAP (umap-learn) or t-SNE of one CLIP model's embeddings, computed once per version of the
   dataset and stored in the cache (`<cache>/datasets/<dataset id>/`, written atomically): a reload, another session
   or another page reads it back.
2. `hover_thumbnails`: small JPEGs (HOVER_SIZE px) for the tooltip, as data URIs, made once from the sweep's
   thumbnails and stored beside the projection. At most HOVER_LIMIT points carry one (a seeded sample above that,
   which the page states): the browser receives every point's position but not 100,000 pictures.
3. `points`: one row per image for the map: position, colour (by prompt), tooltip text (prompts are user text:
   Streamlit's tooltip escapes each field it puts into the tooltip's HTML, checked in the browser test) and
   thumbnail.
4. `deck`: the pydeck chart (an orthographic view, no base map, nothing fetched from the network).
   `region_chart`: the same points as an Altair chart with an interval (box) selection, for choosing a region.
5. `selected_rows`: the rows a click selection or a box names.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.pipeline.cache import atomic_write_bytes, data_uri, key_of
from core.pipeline.dataset import Dataset

METHODS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
HOVER_SIZE = 32  # px: a tooltip thumbnail (about 1 kB as a JPEG), drawn at 64 px
HOVER_LIMIT = 5_000  # points with a tooltip thumbnail (~7 MB of the chart); the rest show their prompt and seed
HOVER_SEED = 0
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # Tableau 10


def store_dir(cache_root: Path, dataset: Dataset) -> Path:
    """Where a dataset's derived files live: one folder per dataset and version of its contents."""
    version = key_of([len(dataset), min(dataset.row_of_key, default=""), dataset.manifest.get("shards", {})])[:12]
    return Path(cache_root) / "datasets" / dataset.id / version


# -- 1. projections ---------------------------------------------------------------------------------------------------
def project(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(n, 2) float32 coordinates. PCA: the first two principal axes (pca_2d, exact, in bounded memory);
    UMAP: umap-learn's defaults (15 neighbours, min_dist 0.1, cosine metric), seeded; t-SNE:
    core.analysis.stats.project_2d."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 3:
        return np.zeros((len(x), 2), np.float32)
    if method == "pca":
        return pca_2d(x)
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=min(15, len(x) - 1),
                            low_memory=True)
        return reducer.fit_transform(x).astype(np.float32)
    if method == "tsne":
        from core.analysis.stats import project_2d

        return project_2d(x, "tsne", seed)[0].astype(np.float32)
    raise ValueError(f"Unknown projection '{method}'; choose one of {', '.join(METHODS)}.")


def pca_2d(x: np.ndarray, rows: int = 8192) -> np.ndarray:
    """The first two principal components, from the d x d covariance accumulated over batches of rows: no centred
    copy of the whole set (at 100,000 x 512 that copy and the SVD's were the server's memory peak). Signs follow
    sklearn's convention (the largest loading of each axis positive), so maps match PCA(2).fit_transform."""
    n, d = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d))
    for start in range(0, n, rows):
        b = x[start : start + rows].astype(np.float64) - mean
        cov += b.T @ b
    _, vectors = np.linalg.eigh(cov)
    axes = vectors[:, ::-1][:, :2]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), range(2)])
    out = np.empty((n, 2), np.float32)
    for start in range(0, n, rows):
        out[start : start + rows] = (x[start : start + rows].astype(np.float64) - mean) @ axes
    return out


def projection_path(cache_root: Path, dataset: Dataset, clip_key: str, method: str) -> Path:
    return store_dir(cache_root, dataset) / f"map-{key_of(clip_key)[:12]}-{method}.npy"


def stored_projection(cache_root: Path, dataset: Dataset, clip_key: str, method: str) -> np.ndarray | None:
    path = projection_path(cache_root, dataset, clip_key, method)
    try:
        coords = np.load(path)
    except (OSError, ValueError):
        return None
    return coords if coords.shape == (len(dataset), 2) else None


def projection(cache_root: Path, dataset: Dataset, clip_key: str, method: str) -> np.ndarray:
    """The stored projection, or computed now (every image, in the dataset's row order) and stored."""
    coords = stored_projection(cache_root, dataset, clip_key, method)
    if coords is None:
        coords = project(dataset.embedding_matrix(clip_key), method)
        buf = io.BytesIO()
        np.save(buf, coords)
        atomic_write_bytes(projection_path(cache_root, dataset, clip_key, method), buf.getvalue())
    return coords


# -- 2. tooltip thumbnails ---------------------------------------------------------------------------------------------
def hover_rows(n: int, limit: int = HOVER_LIMIT) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(HOVER_SEED).choice(n, limit, replace=False))


def hover_thumbnails(cache_root: Path, dataset: Dataset, source_size: int = 80,
                     limit: int = HOVER_LIMIT) -> tuple[np.ndarray, list[str]]:
    """(rows, data URIs) of the points whose tooltip shows a picture: made once from the sweep's thumbnails."""
    path = store_dir(cache_root, dataset) / f"hover-{HOVER_SIZE}-{limit}.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_file():
        table = pq.read_table(path)
        return table.column("row").to_numpy(), table.column("uri").to_pylist()
    from PIL import Image

    rows = hover_rows(len(dataset), limit)
    by_sha = dataset.thumbnails_of([str(dataset.shas[r]) for r in rows], source_size)
    uris = []
    for row in rows:
        jpeg = by_sha.get(dataset.shas[row])
        if jpeg is None:
            uris.append("")
            continue
        with Image.open(io.BytesIO(jpeg)) as im:
            small = im.convert("RGB")
            small.thumbnail((HOVER_SIZE, HOVER_SIZE))
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=75)
        uris.append(data_uri(buf.getvalue()))
    buf = io.BytesIO()
    pq.write_table(pa.table({"row": pa.array(rows, pa.int64()), "uri": uris}), buf)
    atomic_write_bytes(path, buf.getvalue())
    return rows, uris


# -- 3-4. the chart ----------------------------------------------------------------------------------------------------
def _colour_expression(count: int) -> str:
    """A deck.gl accessor picking each point's colour from PALETTE by its prompt number `c` (one small integer per
    point in the JSON instead of three)."""
    expr = "[%d, %d, %d, 200]" % PALETTE[(count - 1) % len(PALETTE)]
    for i in range(min(count, len(PALETTE)) - 2, -1, -1):
        expr = "c %% %d == %d ? [%d, %d, %d, 200] : %s" % (len(PALETTE), i, *PALETTE[i], expr)
    return expr


def points(dataset: Dataset, coords: np.ndarray, hover: tuple[np.ndarray, list[str]]) -> pd.DataFrame:
    """One row per image, in the dataset's order (a selection's indices are dataset rows), with short column names
    (pydeck sends every row's names as JSON): x, y (scaled to 0..1000, 0.1 apart), c (the prompt's number: its
    colour), t (tooltip text) and m (the tooltip thumbnail as a data URI, or "")."""
    labels = dataset.labels()
    codes, uniques = pd.factorize(pd.Series(dataset.prompts))
    # Not escaped here: Streamlit's deck.gl tooltip escapes every field it puts into the HTML (escaping here too
    # showed "&lt;b&gt;" in the browser; tests/test_e2e_dataset_map.py checks a prompt with markup shows as text).
    label_of = np.array([str(labels.get(p, p)) for p in uniques], dtype=object)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    scaled = np.round((coords - lo) / np.where(hi > lo, hi - lo, 1.0) * 1000.0, 1)
    image = np.full(len(dataset), "", dtype=object)
    rows, uris = hover
    image[rows] = uris
    return pd.DataFrame({"x": scaled[:, 0], "y": scaled[:, 1], "c": codes.astype(np.int32),
                         "t": label_of[codes] + " · seed " + dataset.seeds.astype(str).astype(object), "m": image})


def deck(frame: pd.DataFrame, point_px: float = 2.5):
    """The WebGL map: one ScatterplotLayer ("points") in an orthographic view; hover: thumbnail and text."""
    import pydeck as pdk

    layer = pdk.Layer("ScatterplotLayer", data=frame, id="points", get_position="[x, y]",
                      get_fill_color=_colour_expression(int(frame["c"].max()) + 1 if len(frame) else 1),
                      get_radius=point_px, radius_units="pixels", pickable=True, auto_highlight=True)
    view = pdk.View(type="OrthographicView", controller=True)
    state = pdk.ViewState(target=[500.0, 500.0, 0], zoom=-1.0)  # 1000 units in 500 px
    # A background image, not an <img>: points without a thumbnail show no broken-image icon.
    tooltip = {"html": "<div class='ddl-thumb' style=\"width:64px;height:64px;background:url({m}) center/contain "
                       "no-repeat\"></div><div>{t}</div>",
               "style": {"backgroundColor": "white", "color": "black", "fontSize": "12px"}}
    return pdk.Deck(layers=[layer], views=[view], initial_view_state=state, tooltip=tooltip, map_provider=None)


def region_chart(frame: pd.DataFrame):
    """The points (x, y, colour only) with a box selection named `region` (Altair interval selection)."""
    import altair as alt

    palette = ["#%02x%02x%02x" % c for c in PALETTE]
    data = pd.DataFrame({"x": frame["x"], "y": frame["y"], "colour": [palette[c % len(palette)] for c in frame["c"]]})
    region = alt.selection_interval(name="region", encodings=["x", "y"])
    return (alt.Chart(data).mark_circle(size=6, opacity=0.6)
            .encode(x=alt.X("x:Q", title=None), y=alt.Y("y:Q", title=None), color=alt.Color("colour:N", scale=None))
            .add_params(region).properties(height=500))


# -- 5. what was selected ----------------------------------------------------------------------------------------------
def rows_in_box(frame: pd.DataFrame, box: dict) -> np.ndarray:
    """The rows inside an interval selection {"x": [a, b], "y": [c, d]} (either order)."""
    keep = np.ones(len(frame), bool)
    for axis in ("x", "y"):
        if axis in box and len(box[axis]) == 2:
            lo, hi = sorted(float(v) for v in box[axis])
            keep &= (frame[axis].to_numpy() >= lo) & (frame[axis].to_numpy() <= hi)
    return np.flatnonzero(keep)


def rows_picked(event_selection: dict) -> np.ndarray:
    """The rows a pydeck click selection names ({"indices": {"points": [row, ...]}}: the map's data is in the
    dataset's row order)."""
    indices = (event_selection or {}).get("indices", {}).get("points", [])
    return np.array(sorted({int(i) for i in indices}), dtype=np.int64)


def selection_table(dataset: Dataset, rows: np.ndarray) -> pd.DataFrame:
    """Prompt, seed and the settings that made each selected image."""
    labels = dataset.labels()
    out = []
    for r in rows:
        s = dataset.settings.get(dataset.settings_keys[r], {})
        out.append({"class or prompt": labels.get(dataset.prompts[r], dataset.prompts[r]),
                    "prompt": dataset.prompts[r], "seed": int(dataset.seeds[r]), "model": s.get("model_id"),
                    "steps": s.get("steps"), "guidance": s.get("guidance"), "size": s.get("width"),
                    "settings": json.dumps({k: s.get(k) for k in ("negative_prompt", "dtype", "device_type")})})
    return pd.DataFrame(out)
