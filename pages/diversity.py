"""Diversity: how widely does a generated set spread in CLIP space, next to natural photos of the class?"""

from dataclasses import asdict

import numpy as np
import streamlit as st

from app import report as ui_report
from app import ui
from core.analysis.diversity import (
    PREVIEW_SIZE,
    curve_rows,
    diversity_reading,
    equal_n_estimates,
    export_zip,
    map_points,
    natural_set,
    statistics_table,
    synthetic_set,
    thumbnails,
)
from core.analysis.stats import diversity_statistics
from core.pipeline import config
from core.pipeline.cache import CacheError
from core.pipeline.generate import (
    RunRequest,
    request_warnings,
    validate_request,
)
from core.pipeline.local import all_clip_models, all_generators, generator_preset
from core.pipeline.models import ModelUnavailableError, clip_key
from core.pipeline.natural import DownloadError, download_reference_set, reference_sources, store_upload
from core.present.charts import embedding_map, similarity_heatmap, statistic_curve_chart, statistics_chart
from core.present.markup import md_literal
from core.present.report import LAB_CHOICES, generation_defaults, report_file_stem

REFERENCE_PARAMS = ("ref", "ref_class", "map")


@st.cache_data(show_spinner="Computing statistics...", max_entries=64)
def statistics_of(embeddings: np.ndarray):
    return diversity_statistics(embeddings)


def set_url(req: RunRequest) -> None:
    extra = {k: st.query_params[k] for k in REFERENCE_PARAMS if k in st.query_params}
    st.query_params.from_dict({**req.to_params(), **extra})


def remember_url() -> None:
    """Keep this session's settings: switching pages clears the URL, coming back restores it."""
    st.session_state["diversity_url"] = st.query_params.to_dict()


if "prompt" not in st.query_params and st.session_state.get("diversity_url"):
    st.query_params.from_dict(st.session_state["diversity_url"])


ui.start_page()
st.title("Lack of diversity")
st.markdown("Generate a set for one prompt and see how far its images spread in CLIP space, and how that "
            "compares with natural photos of the same class.")

# 1. The request: from the URL (a shared link, a reload) or the form.
url_req, url_problems = RunRequest.from_params(dict(st.query_params))
for problem in url_problems:
    st.warning(md_literal(problem))  # they quote the link's values
GENERATORS, CLIP_MODELS = all_generators(), all_clip_models()  # the registry plus models found on this machine
if url_req and url_req.generator not in GENERATORS:
    try:  # a local folder named in the link: allowed only inside the model folders
        GENERATORS[url_req.generator] = generator_preset(url_req.generator)
    except (KeyError, ValueError) as exc:
        st.warning(f"The link's generator cannot be used: {md_literal(exc)}")
        url_req = None
base = url_req or RunRequest(prompt="a photo of a tench")

gen_keys, clip_keys = list(GENERATORS), list(CLIP_MODELS)
gen_key = st.selectbox("Generator", gen_keys, index=ui.pick(gen_keys, base.generator, gen_keys[0]),
                       format_func=lambda k: GENERATORS[k].label, key="generator")
preset = GENERATORS[gen_key]
st.caption(preset.note)
same_preset = base.generator == gen_key
with st.form("run"):
    # Widget defaults come from the URL: clamp them into each widget's range (a tampered link must not crash the
    # form); the request itself is validated below and its problems shown. Every widget whose default comes from
    # the URL has a fixed key: without one its identity follows the default, so once the page has written a choice
    # to the URL the widget is replaced by a new one and the user's next change is dropped.
    # No max_chars: the browser would drop a longer paste without a word; validate_request says what is wrong.
    prompt = st.text_input("Prompt", value=base.prompt, key="div_prompt")
    n, steps, guidance, size, first_seed = ui.run_settings_inputs(base, preset, same_preset)
    negative = st.text_input("Negative prompt (optional)", value=base.negative_prompt, key="div_negative")
    clip_choice = st.selectbox("CLIP model", clip_keys, index=ui.pick(clip_keys, base.clip, clip_keys[0]),
                               format_func=lambda k: CLIP_MODELS[k].label, key="clip")
    submitted = st.form_submit_button("Generate", type="primary")
ui.remember_selection(gen_key, clip_choice)

req = url_req
if submitted:
    req = RunRequest(prompt, int(n), gen_key, int(steps), float(guidance), int(size), int(first_seed), negative,
                     clip_choice).with_preset_defaults(preset)
if req is None:
    st.info("Type a prompt and press Generate.")
    st.stop()
req_preset = GENERATORS[req.generator]
req = req.with_preset_defaults(req_preset)
problems = validate_request(req, req_preset)
if req.clip not in CLIP_MODELS:
    problems.append(f"Unknown CLIP model '{req.clip}'. Pick one of: {', '.join(CLIP_MODELS)}.")
if problems:
    for problem in problems:
        st.error(md_literal(problem))
    st.stop()
for warning in request_warnings(req):
    st.warning(md_literal(warning))
if submitted:
    set_url(req)
remember_url()

# 2. Generate what is missing (on Generate), else show what the cache holds. Cancel keeps every finished batch.
run = ui.runs([req], generate=submitted)[0]
settings, images, cache = run.settings, run.images, ui.cache()
run_line = (
    f"**Run:** {md_literal(req.prompt)} · {md_literal(settings.model_id)} @ {settings.revision[:12]} · "
    f"{md_literal(settings.scheduler.get('_class_name'))}"
    f" · {settings.steps} steps · guidance {settings.guidance:g} · {settings.width} px · seeds {req.first_seed}-"
    f"{req.first_seed + req.n - 1} · {settings.device_type} {settings.dtype}"
    + (f" · negative: {md_literal(settings.negative_prompt)}" if settings.negative_prompt else ""))
st.caption(run_line)
# The experiment report collects what the page shows, as it shows it; it is drawn only when downloaded.
report = ui_report.start(f"Lack of diversity: {req.prompt}", "Diversity", "diversity").text(run_line)
if len(images) < req.n:
    st.warning(f"{len(images)} of {req.n} images are in the cache. Press Generate to make the other "
               f"{req.n - len(images)} (the cached ones are reused).")
if not images:
    st.stop()
synthetic = synthetic_set(images)

st.subheader(f"{len(synthetic)} images")
previews = thumbnails(cache, synthetic, PREVIEW_SIZE)
ui.grid(previews, synthetic.labels)
report.images(previews, synthetic.labels, title=f"{len(synthetic)} generated images")

# 4. Embeddings (only uncached images are embedded; CLIP loads only then).
clip_preset = CLIP_MODELS[req.clip]
try:
    ckey = clip_key(clip_preset)
    syn_emb = ui.embed(cache, ckey, synthetic, lambda: ui.clip(req.clip))
except (ModelUnavailableError, ValueError) as exc:
    st.error(md_literal(exc))
    st.stop()

# 5. An optional natural reference class.
st.subheader("Natural reference")
sources = reference_sources(config.cache_dir(), config.natural_roots())
source_ids = ["none", *sources]
ref_id = st.selectbox("Compare with natural photos from", source_ids,
                      index=ui.pick(source_ids, st.query_params.get("ref", "none"), "none"), key="div_ref",
                      format_func=lambda k: "no reference" if k == "none" else sources[k][0])
if ref_id == "none":
    st.query_params.pop("ref", None)
else:
    st.query_params["ref"] = ref_id
natural, nat_emb = None, None
if ref_id == "imagenette" and not sources["imagenette"][1].root.is_dir():
    st.info("Imagenette (fast.ai's 10-class ImageNet subset, 160 px, about 100 MB) is not downloaded yet.")
    if st.button("Download Imagenette"):
        bar = st.progress(0.0)
        try:
            download_reference_set(sources["imagenette"][1].root.parent,
                                   progress=lambda f, msg: bar.progress(f, text=msg))
            st.rerun()
        except DownloadError as exc:
            bar.empty()  # no empty progress bar left behind the message
            st.error(md_literal(exc))
elif ref_id != "none":
    folder_obj = sources[ref_id][1]
    if ref_id == "uploads":
        with st.expander("Upload photos", expanded=not folder_obj.root.is_dir()):
            up_class = st.text_input("Class name for these photos", key="upload_class")
            files = st.file_uploader("Photos", accept_multiple_files=True, key="upload_files",
                                     type=["jpg", "jpeg", "png", "webp", "bmp"])
            if st.button("Add photos") and files:
                for f in files:
                    try:
                        store_upload(folder_obj.root, up_class, f.getvalue())
                    except (ValueError, CacheError) as exc:
                        st.error(md_literal(f"{f.name}: {exc}"))
    try:
        classes = folder_obj.classes()
    except (FileNotFoundError, ValueError) as exc:
        classes = []
        st.info(md_literal(exc))
    if classes:
        guess = next((c for c in classes if c.replace("_", " ") in req.prompt.lower()), classes[0])
        ref_class = st.selectbox("Class", classes, index=ui.pick(classes, st.query_params.get("ref_class"), guess),
                                 key="div_ref_class")
        st.query_params["ref_class"] = ref_class
        photos, skipped = folder_obj.scan(ref_class)
        if skipped:
            with st.expander(f"{len(skipped)} file(s) in '{md_literal(ref_class)}' were left out"):
                for message in skipped:
                    st.text(message)  # names files: plain text
        if not photos:
            st.warning(f"The class '{md_literal(ref_class)}' has no usable images.")
        else:
            natural = natural_set(photos, n=len(synthetic))
            if len(natural) < len(synthetic):  # fewer photos than images: say so, the statistics are not comparable
                natural_line = (f"All {len(natural)} photos of '{md_literal(ref_class)}': fewer than the "
                                f"{len(synthetic)} synthetic images. Vendi and effective rank grow with n, so compare "
                                f"them with care, or add photos until there are {len(synthetic)}.")
            else:
                natural_line = (f"{len(natural)} of {len(photos)} photos of '{md_literal(ref_class)}' (as many as "
                                f"the {len(synthetic)} synthetic images, drawn with a fixed seed: Vendi and effective "
                                f"rank grow with n, so equal n keeps them comparable).")
            st.caption(natural_line)
            try:
                nat_emb = ui.embed(cache, ckey, natural, lambda: ui.clip(req.clip), "Embedding natural photos")
            except (ModelUnavailableError, ValueError, OSError) as exc:
                st.error(md_literal(exc))
                natural = None
remember_url()

# 6. Statistics with intervals, side by side.
st.subheader("Diversity statistics")
try:
    stats = {"synthetic": statistics_of(syn_emb)}
    if natural is not None:
        stats["natural"] = statistics_of(nat_emb)
except ValueError as exc:  # NaN or zero-norm embeddings: name them rather than show garbage
    st.error(md_literal(exc))
    st.stop()
report.heading("Diversity statistics")
if natural is not None:
    # Vendi grows with n: the sentence compares both sets at the smaller n (the larger one subsampled).
    vendi_line = diversity_reading(*([e] for e in equal_n_estimates(syn_emb, nat_emb)))
    st.markdown(f"**{vendi_line}**")
    report.text(f"Natural reference: {natural_line}").text(f"**{vendi_line}**")
    if len(nat_emb) != len(syn_emb):
        curve = statistic_curve_chart(curve_rows({"synthetic": syn_emb, "natural": nat_emb}), "Vendi score")
        curve_note = ("The two sets differ in size and Vendi grows with n: read them at the same n on this curve "
                      "(each point: the mean over random subsets of that size; band: +-1 SD across subsets).")
        st.altair_chart(curve)
        st.caption(curve_note)
        report.chart(curve, caption=curve_note)
stats_chart = statistics_chart([(src, e) for src, ests in stats.items() for e in ests])
st.altair_chart(stats_chart)
# st.table wraps its cells: the "meaning" column was cut off at the right of a scrolling grid.
st.table(statistics_table(stats))
stats_note = ("Point estimate [95% interval]: estimate +- t x the jackknife standard error (each image left out in "
              "turn; over 100 images, 100 groups), clipped to the statistic's range (the table says when). Each set "
              "at its own n: Vendi and effective rank grow with n, so compare them only at equal n. CLIP: "
              + md_literal(clip_preset.label) + ".")
st.caption(stats_note)
report.chart(stats_chart, "Diversity statistics").numbers(stats, caption=stats_note)


# 7. Similarity heatmap and the map; clicking a heatmap cell highlights its two images in the map.
@st.fragment
def similarity_and_map() -> None:
    left, right = st.columns(2)
    with left:
        heatmap = similarity_heatmap(syn_emb @ syn_emb.T, [im.seed for im in images])
        event = st.altair_chart(heatmap, key="heatmap", on_select="rerun")
        picked = (event or {}).get("selection", {}).get("pair") or []
        highlight = frozenset(f"seed {p[k]}" for p in picked for k in ("seed_a", "seed_b") if k in p)
        if highlight:
            st.caption("Highlighted in the map: " + ", ".join(sorted(highlight)))
    with right:
        methods = {"pca": "PCA", "tsne": "t-SNE"}
        method = st.radio("Projection", list(methods), format_func=methods.get, horizontal=True,
                          index=ui.pick(list(methods), st.query_params.get("map", "pca"), "pca"), key="div_map")
        st.query_params["map"] = method
        remember_url()
        sets = [synthetic] + ([natural] if natural is not None else [])
        all_emb = np.concatenate([syn_emb] + ([nat_emb] if natural is not None else []))
        coords, used = ui.projection(all_emb, method)
        embedding_chart = embedding_map(map_points(cache, sets, coords, highlight), used)
        st.altair_chart(embedding_chart, key="map")
    # Keyed blocks: a rerun of this fragment alone (a click in the heatmap, another projection) replaces them, and
    # the link follows the URL's new 'map'.
    report.chart(heatmap, key="heatmap").chart(embedding_chart, key="map")
    report.link = ui_report.page_link("diversity")


similarity_and_map()

# 8. The run as a zip.
run_settings = {
    "request": asdict(req), "generation_settings": settings.to_dict(), "settings_key": settings.key(),
    "clip": {**asdict(clip_preset), "key": ckey}, "natural_reference": None if natural is None else {
        "source": ref_id, "class": st.query_params.get("ref_class"), "n": len(natural)},
    "note": "Defaults (steps, guidance, size, template, N) are the lab's own choice; the paper's are unknown.",
}
st.download_button("Download this run (.zip)", key="download",
                   data=lambda: export_zip(synthetic, syn_emb, stats, run_settings,
                                           None if natural is None else (natural, nat_emb)),
                   file_name=f"diversity-{settings.image_key(req.prompt, req.first_seed)[:10]}-n{req.n}.zip",
                   mime="application/zip", on_click="ignore")  # no rerun: it would drop the download

report.settings({"request": asdict(req), "natural_reference": run_settings["natural_reference"],
                 "projection": st.query_params.get("map", "pca")})
report.provenance([settings], clip_preset, ckey)
report.lab_defaults({**generation_defaults(req, req_preset), "bootstrap": LAB_CHOICES["bootstrap"],
                     **({"natural sample": LAB_CHOICES["natural sample"]} if natural is not None else {}),
                     "map": "PCA unless t-SNE is chosen (t-SNE: perplexity min(30, (n - 1) / 3), seed 0)."})
ui_report.offer(report, report_file_stem("diversity", settings.image_key(req.prompt, req.first_seed)[:10],
                                         f"n{req.n}"), "diversity")
