"""Open a dataset: a sweep's output folder (./lab sweep) opened in place; its runs open in every analysis page."""

import pandas as pd
import streamlit as st

from app import dataset as ui_dataset
from app import ui
from core.analysis.diversity import statistics_table
from core.analysis.scale import SCALE_GROUPS
from core.pipeline import config
from core.pipeline.cache import CacheError
from core.pipeline.dataset import (
    DatasetError,
    add_dataset,
    diversity_link,
    env_folders,
    forget_dataset,
    open_datasets,
    run_table,
)
from core.present.markup import md_literal

ui.start_page()
root = config.cache_dir()

st.title("Open a dataset")
st.markdown(
    "A sweep (`./lab sweep PLAN.toml`, on this machine or a Ray cluster) writes its images, thumbnails and CLIP "
    "embeddings as Parquet shards. Opened here, the folder is read in place (nothing is copied into the cache): "
    "statistics read its embeddings, images are read one by one when a page shows them, and every analysis page "
    "finds its runs as it finds cached ones, from the same links. Folders named in `DDL_DATASETS` open by themselves."
)

# 1. Add a folder (checked before it is remembered).
with st.form("dataset_add"):
    folder = st.text_input("A sweep's output folder on this machine", key="dataset_folder",
                           placeholder="e.g. /data/sweeps/imagenette (the --out of ./lab sweep)")
    if st.form_submit_button("Open this folder", type="primary"):
        try:
            added = add_dataset(root, folder)
        except (DatasetError, CacheError) as exc:
            st.error(md_literal(exc))
        else:
            st.success(md_literal(f"Opened '{added.title}': {len(added):,} images."))

# 2. The open datasets; a folder that no longer opens says why.
datasets, problems = open_datasets(root)
for problem in problems:
    st.warning(md_literal(problem))
if not datasets:
    st.info("No dataset is open yet. Run a sweep (README: From one GPU to a cluster), then open its folder above.")
    st.stop()
ids = [d.id for d in datasets]
chosen = st.selectbox("Dataset", ids, index=ui.pick(ids, st.query_params.get("dataset"), ids[0]), key="dataset_pick",
                      format_func=lambda i: next(f"{d.title} ({len(d):,} images)" for d in datasets if d.id == i))
st.query_params["dataset"] = chosen
dataset = next(d for d in datasets if d.id == chosen)
st.subheader(md_literal(dataset.title))  # a plan's title: text from elsewhere
st.text(f"Folder: {dataset.folder}")  # a path: plain text
status = "complete" if dataset.complete else "unfinished (rerun the sweep's command to finish it)"
st.caption(md_literal(f"{len(dataset):,} images, {len(dataset.runs())} runs, {status}. CLIP models: "
                      f"{', '.join(dataset.clip_presets) or 'see the embeddings'}."))
if dataset.folder not in env_folders() and st.button("Close this dataset", key="dataset_forget",
                                                     help="Stops opening it here; the folder is left as it is."):
    forget_dataset(root, dataset.folder)
    st.rerun()

# 3. What it holds: one row per run, each with a link into the analysis pages.
st.subheader("Runs")
st.dataframe(pd.DataFrame(run_table(dataset)), hide_index=True, key="dataset_runs")
clip = dataset.clip_presets[0] if dataset.clip_presets else None
for run in dataset.runs()[:50]:
    link, shown = diversity_link(run, clip)
    if link:
        more = f" (its first {shown} of {len(run.seeds)})" if shown < len(run.seeds) else ""
        st.page_link("pages/diversity.py", label=md_literal(f"{run.label}: open in Diversity{more}"), icon="➡️",
                     query_params=link)
if len(dataset.runs()) > 50:
    st.caption(f"Links for the first 50 of {len(dataset.runs())} runs; the table lists them all.")

# 4. Diversity of the whole dataset, or of one class: every image, from its embeddings, in bounded memory.
st.subheader("Diversity at scale")
clip_keys = dataset.clip_keys()
clip_key = st.selectbox("CLIP embeddings", clip_keys, key="dataset_clip",
                        format_func=lambda k: f"{k[:16]}…" if len(k) > 16 else k)
scopes = ["", *dict.fromkeys(dataset.prompts.tolist())]
labels = dataset.labels()
scope = st.selectbox("Images", scopes, key="dataset_scope",
                     format_func=lambda p: "the whole dataset" if not p else labels.get(p, p))
estimates = ui_dataset.statistics(dataset, clip_key, scope or None)
st.table(statistics_table({"synthetic": estimates}))
st.caption(f"n = {estimates[0].n:,}: every image of {'the dataset' if not scope else 'this prompt'}, read from its "
           f"embeddings in one pass (Vendi from the d x d matrix of the normalised embeddings, which has the same "
           f"eigenvalues as the n x n kernel / n). Intervals: delete-a-group jackknife over {SCALE_GROUPS} groups.")

# 5. The map of every image (WebGL): hover shows a thumbnail; click points, or draw a box, to see the images.
ui_dataset.dataset_map(dataset, clip_key)

# 6. PRDC and the natural photos no image comes near: every synthetic image, or a stated sample.
ui_dataset.natural_comparison(dataset, clip_key, scope or None)
