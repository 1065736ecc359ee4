"""Streamlit glue for opened datasets (core.pipeline.dataset): statistics remembered per dataset version, and the WebGL
map with its hover thumbnails and selections (core.present.atlas)."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from app import ui
from core.analysis.scale import dataset_diversity
from core.pipeline import config
from core.pipeline.dataset import Dataset, open_dataset
from core.present import atlas
from core.present.markup import md_literal

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
    # Serialised once, not on every rerun of the map, and compact: pydeck indents its JSON, which doubled the
    # 100,000-point chart (23 MB) that the browser must receive and parse.
    spec = json.dumps(json.loads(deck.to_json()), separators=(",", ":"), ensure_ascii=False)
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


def natural_comparison(dataset: Dataset, clip_key: str, prompt: str | None) -> None:
    """PRDC and the natural photos never drawn, for the dataset's images (or one prompt's) against one class of
    natural photos embedded with the same CLIP model: exact over every synthetic image where it can be (never drawn:
    faiss), on a stated sample where it cannot (PRDC above core.analysis.scale.EXACT_LIMIT images per set)."""
    from core.analysis.diversity import natural_set, thumbnails
    from core.analysis.scale import never_drawn, prdc_estimates
    from core.pipeline.local import all_clip_models
    from core.pipeline.models import ModelUnavailableError
    from core.pipeline.models import clip_key as key_of_clip
    from core.pipeline.natural import reference_sources

    st.subheader("Compared with natural photos")
    sources = reference_sources(config.cache_dir(), config.natural_roots())
    ids = ["none", *(k for k, (_, folder) in sources.items() if folder.root.is_dir())]
    ref = st.selectbox("Natural photos", ids, key="dataset_ref",
                       format_func=lambda k: "no comparison" if k == "none" else sources[k][0])
    if ref == "none":
        return
    folder = sources[ref][1]
    classes = folder.classes()
    if not classes:
        st.info("This folder has no class sub-folders of photos.")
        return
    ref_class = st.selectbox("Class", classes, key="dataset_ref_class")
    presets = all_clip_models()
    preset = next((p for p in dataset.clip_presets if p in presets and key_of_clip(presets[p]) == clip_key), None)
    if preset is None:
        st.warning("These embeddings come from a CLIP model this machine does not have, so the photos cannot be "
                   "embedded in the same space. Add the model (README: models), or pick other embeddings above.")
        return
    photos, _ = folder.scan(ref_class)
    if len(photos) < 6:
        st.warning(md_literal(f"'{ref_class}' has {len(photos)} usable photos; PRDC needs at least 6 (k = 5)."))
        return
    natural = natural_set(photos)
    cache = ui.cache()
    try:
        nat_emb = ui.embed(cache, clip_key, natural, lambda: ui.clip(preset), "Embedding natural photos")
    except (ModelUnavailableError, ValueError, OSError) as exc:
        st.error(md_literal(exc))
        return
    matrix, index = dataset.embedding_index(clip_key, None if not prompt else dataset.shas[dataset.prompts == prompt])
    synthetic = matrix[index]
    estimates = prdc_estimates(nat_emb, synthetic)
    st.table(_estimates_table(estimates))
    st.caption("; ".join(sorted({e.note for e in estimates if e.note})) or "Exact: every image of both sets.")
    missed = never_drawn(nat_emb, synthetic)
    st.markdown(f"**Never drawn:** {missed.share.value:.0%} of the {missed.share.n} photos of "
                f"{md_literal(ref_class)} [{missed.share.low:.0%}, {missed.share.high:.0%}] have no synthetic image "
                f"among the {len(synthetic):,} inside their 5-NN ball (exact search over every image).")
    shown = missed.photos[:16]
    if len(shown):
        previews = thumbnails(cache, natural, 128)
        ui.grid([previews[i] for i in shown], [md_literal(natural.labels[i]) for i in shown])


def _estimates_table(estimates):
    import pandas as pd

    return pd.DataFrame([{"statistic": e.name, "value": e.value, "95% low": e.low, "95% high": e.high, "n": e.n,
                          "note": e.note} for e in estimates])
