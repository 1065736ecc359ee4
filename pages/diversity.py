"""Diversity: how widely does a generated set spread in CLIP space, next to natural photos of the class?"""

from dataclasses import asdict

import numpy as np
import streamlit as st

from app import form, ui
from app import report as ui_report
from core.analysis.diversity import (
    PREVIEW_SIZE,
    curve_rows,
    diversity_reading,
    equal_n_estimates,
    export_zip,
    map_points,
    statistics_table,
    thumbnails,
)
from core.analysis.stats import diversity_statistics
from core.pipeline.generate import (
    RunRequest,
)
from core.pipeline.local import all_clip_models, generator_preset
from core.pipeline.models import ModelUnavailableError, clip_key
from core.present.charts import embedding_map, similarity_heatmap, statistic_curve_chart, statistics_chart
from core.present.markup import md_literal
from core.present.report import LAB_CHOICES, generation_defaults, report_file_stem

PAGE = "diversity"
VIEW_PARAMS = ("ref", "ref_class", "map")  # below the form: kept in the URL when the run changes


@st.cache_data(show_spinner="Computing statistics...", max_entries=64)
def statistics_of(embeddings: np.ndarray):
    return diversity_statistics(embeddings)


ui.start_page()
st.title("Lack of diversity")
st.markdown("Generate a set for one prompt and see how far its images spread in CLIP space, and how that "
            "compares with natural photos of the same class.")

# 1. The request: from the URL (a shared link, a reload) or the form.
req, submitted = form.run_request(PAGE, form.url_request(RunRequest, PAGE), text_prefix="div_",
                                   settings_prefix="", keep=VIEW_PARAMS)
req_preset = generator_preset(req.generator)

# 2. Generate what is missing (on Generate), else show what the cache holds. Cancel keeps every finished batch.
run = ui.runs([req], generate=submitted)[0]
settings, images, cache = run.settings, run.images, ui.cache()
run_line = (
    f"**Run:** {md_literal(req.prompt)} · {md_literal(settings.model_id)} @ {settings.revision[:12]} · "
    f"{md_literal(settings.scheduler.get('_class_name'))}"
    f" · {settings.steps} steps · guidance {settings.guidance:g} · {settings.width} px · seeds {req.first_seed}-"
    f"{req.first_seed + req.n - 1} · {settings.device_type} {settings.dtype}"
    + (f" · negative: {md_literal(settings.negative_prompt)}" if settings.negative_prompt else ""))
# The page's output: each result is drawn once and recorded in the experiment report (drawn only when downloaded).
out = ui_report.start(f"Lack of diversity: {req.prompt}", "Diversity", "diversity")
out.caption(run_line)
synthetic = form.cached_set(req, images)

previews = thumbnails(cache, synthetic, PREVIEW_SIZE)
out.images(previews, synthetic.labels, title=f"{len(synthetic)} generated images", heading=True)

# 4. Embeddings (only uncached images are embedded; CLIP loads only then).
clip_preset = all_clip_models()[req.clip]
try:
    ckey = clip_key(clip_preset)
    syn_emb = ui.embed(cache, ckey, synthetic, lambda: ui.clip(req.clip))
except (ModelUnavailableError, ValueError) as exc:
    st.error(md_literal(exc))
    st.stop()

# 5. An optional natural reference class.
st.subheader("Natural reference")
reference = form.reference_picker(PAGE, req.prompt, len(synthetic), widget_prefix="div_",
                                  label="Compare with natural photos from")
natural, nat_emb = reference.natural, None
if natural is not None:
    if len(natural) < len(synthetic):  # fewer photos than images: say so, the statistics are not comparable
        natural_line = (f"All {len(natural)} photos of '{md_literal(reference.class_name)}': fewer than the "
                        f"{len(synthetic)} synthetic images. Vendi and effective rank grow with n, so compare "
                        f"them with care, or add photos until there are {len(synthetic)}.")
    else:
        natural_line = (f"{len(natural)} of {reference.available} photos of '{md_literal(reference.class_name)}' "
                        f"(as many as the {len(synthetic)} synthetic images, drawn with a fixed seed: Vendi and "
                        f"effective rank grow with n, so equal n keeps them comparable).")
    out.caption(natural_line, key="natural")
    try:
        nat_emb = ui.embed(cache, ckey, natural, lambda: ui.clip(req.clip), "Embedding natural photos")
    except (ModelUnavailableError, ValueError, OSError) as exc:
        st.error(md_literal(exc))
        natural = None
form.remember_url(PAGE)

# 6. Statistics with intervals, side by side.
out.heading("Diversity statistics")
try:
    stats = {"synthetic": statistics_of(syn_emb)}
    if natural is not None:
        stats["natural"] = statistics_of(nat_emb)
except ValueError as exc:  # NaN or zero-norm embeddings: name them rather than show garbage
    st.error(md_literal(exc))
    st.stop()
if natural is not None:
    # Vendi grows with n: the sentence compares both sets at the smaller n (the larger one subsampled).
    vendi_line = diversity_reading(*([e] for e in equal_n_estimates(syn_emb, nat_emb)))
    out.text(f"**{vendi_line}**")
    if len(nat_emb) != len(syn_emb):
        curve = statistic_curve_chart(curve_rows({"synthetic": syn_emb, "natural": nat_emb}), "Vendi score")
        curve_note = ("The two sets differ in size and Vendi grows with n: read them at the same n on this curve "
                      "(each point: the mean over random subsets of that size; band: +-1 SD across subsets).")
        out.chart(curve, caption=curve_note)
stats_chart = statistics_chart([(src, e) for src, ests in stats.items() for e in ests])
out.chart(stats_chart, "Diversity statistics")
stats_note = ("Point estimate [95% interval]: estimate +- t x the jackknife standard error (each image left out in "
              "turn; over 100 images, 100 groups), clipped to the statistic's range (the table says when). Each set "
              "at its own n: Vendi and effective rank grow with n, so compare them only at equal n. CLIP: "
              + md_literal(clip_preset.label) + ".")
# st.table wraps its cells: the "meaning" column was cut off at the right of a scrolling grid.
out.numbers(stats, caption=stats_note, table=statistics_table(stats))


# 7. Similarity heatmap and the map; clicking a heatmap cell highlights its two images in the map.
@st.fragment
def similarity_and_map() -> None:
    left, right = st.columns(2)
    with left:
        heatmap = similarity_heatmap(syn_emb @ syn_emb.T, [im.seed for im in images])
        event = out.chart(heatmap, key="heatmap", on_select="rerun")
        picked = (event or {}).get("selection", {}).get("pair") or []
        highlight = frozenset(f"seed {p[k]}" for p in picked for k in ("seed_a", "seed_b") if k in p)
        if highlight:
            st.caption("Highlighted in the map: " + ", ".join(sorted(highlight)))
    with right:
        methods = {"pca": "PCA", "tsne": "t-SNE"}
        method = st.radio("Projection", list(methods), format_func=methods.get, horizontal=True,
                          index=ui.pick(list(methods), st.query_params.get("map", "pca"), "pca"), key="div_map")
        st.query_params["map"] = method
        form.remember_url(PAGE)
        out.setting("projection", method)  # the report's settings and link follow this fragment's choice
        sets = [synthetic] + ([natural] if natural is not None else [])
        all_emb = np.concatenate([syn_emb] + ([nat_emb] if natural is not None else []))
        coords, used = ui.projection(all_emb, method)
        embedding_chart = embedding_map(map_points(cache, sets, coords, highlight), used)
        # Keyed blocks: a rerun of this fragment alone (a click in the heatmap, another projection) replaces them.
        out.chart(embedding_chart, key="map")


similarity_and_map()

# 8. The run as a zip.
run_settings = {
    "request": asdict(req), "generation_settings": settings.to_dict(), "settings_key": settings.key(),
    "clip": {**asdict(clip_preset), "key": ckey}, "natural_reference": None if natural is None else {
        "source": reference.source_id, "class": reference.class_name, "n": len(natural)},
    "note": "Defaults (steps, guidance, size, template, N) are the lab's own choice; the paper's are unknown.",
}
st.download_button("Download this run (.zip)", key="download",
                   data=lambda: export_zip(synthetic, syn_emb, stats, run_settings,
                                           None if natural is None else (natural, nat_emb)),
                   file_name=f"diversity-{settings.image_key(req.prompt, req.first_seed)[:10]}-n{req.n}.zip",
                   mime="application/zip", on_click="ignore")  # no rerun: it would drop the download

out.settings({"request": asdict(req), "natural_reference": run_settings["natural_reference"]})  # + projection
out.provenance([settings], clip_preset, ckey)
out.lab_defaults({**generation_defaults(req, req_preset), "bootstrap": LAB_CHOICES["bootstrap"],
                  **({"natural sample": LAB_CHOICES["natural sample"]} if natural is not None else {}),
                  "map": "PCA unless t-SNE is chosen (t-SNE: perplexity min(30, (n - 1) / 3), seed 0)."})
out.offer(report_file_stem("diversity", settings.image_key(req.prompt, req.first_seed)[:10], f"n{req.n}"))
