"""Demo packs: export cached runs as one file; import one to present them with no GPU and no generator weights."""

import io
import time

import pandas as pd
import streamlit as st

from app import ui
from core.pipeline import config
from core.pipeline.generate import cached_runs
from core.pipeline.natural import reference_sources
from core.present.markup import md_list, md_literal
from core.present.pack import (
    CachedRun,
    PackError,
    export_pack,
    import_pack,
    imported_packs,
    natural_classes,
)

ui.start_page()
cache = ui.cache()

st.title("Demo packs")
st.markdown(
    "Prepare on a GPU machine, present on a laptop. A pack holds cached runs (images, thumbnails, CLIP embeddings of "
    "images and texts, statistics, settings with model revisions and library versions) and the natural photos they "
    "were compared with. Imported here, every page shows those runs again, from the same links, with no generator "
    "weights and no GPU; CLIP weights are needed only to embed photos the pack does not hold."
)
tab_import, tab_export = st.tabs(["Import a pack", "Export a pack"])

# 1. Import: check the whole pack, then write it into this machine's cache.
with tab_import:
    upload = st.file_uploader("A demo pack (.zip)", type=["zip"], key="pack_upload", max_upload_size=2048,
                              help="Packs over the upload limit: `./lab pack import PACK.zip` on this machine.")
    if upload is not None and st.button("Import this pack", type="primary", key="pack_import"):
        try:
            with st.spinner("Checking and importing the pack..."):
                report = import_pack(upload, cache)
        except PackError as exc:
            st.error(md_literal(exc))
        else:
            st.success(md_literal(f"Imported '{report.summary.title}': {report.summary.describe()}."))
            if report.replaced_photos:
                st.warning(f"{report.replaced_photos} natural photos of an earlier pack had the same names and were "
                           f"replaced by this pack's.")
            ui.refresh_cache_status()

    packs = imported_packs(cache)
    if packs:
        st.subheader("Imported packs")
    for manifest in packs:
        counts = manifest.get("counts", {})
        # A pack's manifest is a file from elsewhere: every text in it is data (md_literal, st.text).
        with st.expander(md_literal(f"{manifest.get('title')} (made {str(manifest.get('created', '?'))[:10]}, "
                                    f"{counts.get('runs', 0)} runs, {counts.get('natural_photos', 0)} natural "
                                    f"photos)")):
            versions = manifest.get("library_versions", {})
            st.caption("Made with " + md_list(f"{k} {v}" for k, v in versions.items()))
            for run in manifest.get("runs", []):
                st.text(f"• {run['description']}")
                link = CachedRun.from_manifest(run).link_params()
                if link:
                    st.page_link("pages/diversity.py", label="Open in Diversity", icon="➡️", query_params=link)

# 2. Export: choose runs and natural classes, build the pack, download it.
with tab_export:
    runs = cached_runs(cache)
    if not runs:
        st.info("The cache holds no runs yet. Run an analysis on any page first; its images land in the cache.")
    else:
        table = pd.DataFrame([{
            "include": True, "prompt": r.prompt, "images": len(r.seeds),
            "model": r.generator or r.settings.get("model_id"), "steps": r.settings.get("steps"),
            "guidance": r.settings.get("guidance"), "size": r.settings.get("width"),
            "seeds": f"{r.seeds[0]}-{r.seeds[-1]}", "made on": f"{r.settings.get('device_type')} "
                                                              f"({r.settings.get('dtype')})"} for r in runs])
        edited = st.data_editor(table, key="pack_runs", hide_index=True, disabled=list(table.columns[1:]),
                                column_config={"include": st.column_config.CheckboxColumn("include")})
        chosen = [r for r, keep in zip(runs, edited["include"]) if keep]

        sources = reference_sources(config.cache_dir(), config.natural_roots())
        with st.spinner("Finding the natural photos the cache has used..."):
            classes = natural_classes(cache, sources)
        options = {f"{c.source_label}: {c.class_name or 'the photos at its top level'} ({c.photos} photos)":
                   (c.source_id, c.class_name) for c in classes}
        default = [label for label, c in zip(options, classes) if c.embedded]
        picked = st.multiselect("Natural photos to include (default: the classes some analysis compared with)",
                                list(options), default=default, key="pack_natural",
                                help="Whole classes: the pages draw the same fixed sample from them on any machine.")
        title = st.text_input("Title", value="", placeholder="e.g. Lecture 3: ambiguity and diversity",
                              key="pack_title", max_chars=200)
        if st.button("Build the pack", type="primary", key="pack_build"):
            buf = io.BytesIO()
            try:
                with st.spinner("Writing the pack..."):
                    summary = export_pack(buf, cache, chosen, [options[p] for p in picked], sources, title.strip())
            except PackError as exc:
                st.error(md_literal(exc))
            else:
                st.session_state["pack_built"] = (buf.getvalue(), summary)
        built = st.session_state.get("pack_built")
        if built:
            data, summary = built
            st.success(md_literal(f"'{summary.title}': {summary.describe()}."))
            st.download_button("Download the pack", data=data, on_click="ignore", mime="application/zip",
                               file_name=f"demo-pack-{time.strftime('%Y%m%d-%H%M')}.zip", key="pack_download")
