"""Streamlit glue for opened datasets (core.dataset): statistics remembered per dataset version, and the WebGL map
with its hover thumbnails and selections (core.atlas)."""

from __future__ import annotations

import numpy as np
import streamlit as st

import ui
from core import atlas, config
from core.dataset import Dataset, open_dataset
from core.markup import md_literal
from core.scale import dataset_diversity

SHOWN = 48  # selected images shown at once (the table lists them all)


@st.cache_data(show_spinner="Computing statistics over every image...", max_entries=32)
def _statistics(folder: str, version: int, clip_key: str, prompt: str | None):
    return dataset_diversity(open_dataset(folder), clip_key, prompt)


def statistics(dataset: Dataset, clip_key: str, prompt: str | None):
    return _statistics(str(dataset.folder), len(dataset), clip_key, prompt)


@st.cache_resource(show_spinner=False, max_entries=4)
def _points(folder: str, version: int, clip_key: str, method: str, cache_root: str):
    """(the map's rows, its chart): made once per dataset version and projection, shared by every session."""
    dataset = open_dataset(folder)
    coords = atlas.projection(config.cache_dir(), dataset, clip_key, method)
    frame = atlas.points(dataset, coords, atlas.hover_thumbnails(config.cache_dir(), dataset))
    deck = atlas.deck(frame)
    spec = deck.to_json()  # tens of MB at 100,000 points: serialised once, not on every rerun of the map
    deck.to_json = lambda: spec
    return frame, deck


def _projected(dataset: Dataset, clip_key: str, method: str):
    root = config.cache_dir()
    if method != "pca" and atlas.stored_projection(root, dataset, clip_key, method) is None:
        # UMAP and t-SNE of 100,000 points take minutes: once per dataset, behind a Cancel button, then stored.
        ui.in_background(lambda: atlas.projection(root, dataset, clip_key, method),
                         f"{atlas.METHODS[method]} of {len(dataset):,} points (once per dataset)")
    return _points(str(dataset.folder), len(dataset), clip_key, method, str(root))


@st.fragment
def dataset_map(dataset: Dataset, clip_key: str) -> None:
    st.subheader("Map of every image")
    methods = list(atlas.METHODS)
    left, right = st.columns(2)
    method = left.radio("Projection", methods, format_func=atlas.METHODS.get, horizontal=True, key="dataset_method",
                        index=ui.pick(methods, st.query_params.get("map"), "pca"))
    st.query_params["map"] = method
    modes = {"hover": "Hover and click", "box": "Select a region"}
    mode = right.radio("Mode", list(modes), format_func=modes.get, horizontal=True, key="dataset_map_mode")
    frame, deck = _projected(dataset, clip_key, method)
    with_thumbs = min(len(frame), atlas.HOVER_LIMIT)
    if mode == "hover":
        event = st.pydeck_chart(deck, on_select="rerun", selection_mode="multi-object",
                                key=f"dataset_deck_{method}", height=520)
        rows = atlas.rows_picked((event or {}).get("selection", {}))
        st.caption(f"{len(frame):,} images, coloured by prompt. Hover a point for its thumbnail "
                   + ("" if with_thumbs == len(frame) else f"({with_thumbs:,} points, a random sample with seed "
                      f"{atlas.HOVER_SEED}, carry one; the others show their prompt and seed) ")
                   + "and click points to select them (each click adds one; click the background to clear).")
    else:
        event = st.altair_chart(atlas.region_chart(frame), on_select="rerun", key=f"dataset_region_{method}")
        box = (event or {}).get("selection", {}).get("region") or {}
        rows = atlas.rows_in_box(frame, box) if box else np.array([], np.int64)
        st.caption(f"{len(frame):,} images. Drag a box over the points to select the images inside it.")
    if len(rows):
        show_selection(dataset, rows)


def show_selection(dataset: Dataset, rows: np.ndarray) -> None:
    st.markdown(f"**{len(rows):,} selected images**" + (f" (the first {SHOWN} shown)" if len(rows) > SHOWN else ""))
    shown = rows[:SHOWN]
    previews = [dataset.thumbnail(str(dataset.shas[r]), 80) or b"" for r in shown]
    labels = dataset.labels()
    captions = [md_literal(f"{labels.get(dataset.prompts[r], dataset.prompts[r])} · seed {dataset.seeds[r]}")
                for r in shown]
    ui.grid([p for p in previews if p], [c for p, c in zip(previews, captions) if p])
    st.dataframe(atlas.selection_table(dataset, rows), hide_index=True, key="dataset_selection")
