"""Adherence: how closely do images follow the prompt, next to natural photos of the class, and what does guidance
(or steps, or the model) trade for it? The logic lives in core.analysis.adherence and core.analysis.zeroshot."""

from dataclasses import asdict

import numpy as np
import streamlit as st

from app import form, ui
from app import report as ui_report
from core.analysis.adherence import (
    CONFUSABLE_SETS,
    DEFAULT_CONFUSABLE,
    SCORE_NOTE,
    SWEEP_METRICS,
    SWEEP_SETTINGS,
    Sweep,
    guess_class,
    parse_classes,
    parse_sweep_values,
    rank_estimates,
    rank_rows,
    score_reading,
    score_rows,
    sweep_point,
    sweep_requests,
    sweep_rows,
)
from core.analysis.diversity import PREVIEW_SIZE, synthetic_set, thumbnails
from core.analysis.zeroshot import (
    ZERO_SHOT_TEMPLATES,
    class_vectors,
    clip_scores,
    ranks,
    score_estimate,
    text_embeddings,
)
from core.pipeline import config
from core.pipeline.cache import THUMB_SIZE
from core.pipeline.generate import RunRequest
from core.pipeline.local import all_clip_models, generator_preset
from core.pipeline.models import ModelUnavailableError, clip_key
from core.pipeline.natural import reference_sources
from core.present.charts import rank_chart, score_histogram, sweep_chart
from core.present.markup import md_list, md_literal
from core.present.report import LAB_CHOICES, generation_defaults, report_file_stem

PAGE = "adherence"
VIEW_PARAMS = ("ref", "ref_class", "classes", "intended", "sweep", "sweep_values")  # kept when the run changes
STRIP = 6  # images per sweep value in the strip

ui.start_page()
st.title("Adherence to prompt")
st.markdown("How closely do generated images follow the prompt, compared with natural photos of the same class? "
            "And what does stronger guidance trade for it? Each image is scored against the prompt with CLIP; a "
            "sweep varies one setting on the same prompt and seeds.")

# 1. The run: from the URL (a shared link, a reload) or the form.
req, submitted = form.run_request(PAGE, form.url_request(RunRequest, PAGE), text_prefix="adh_", keep=VIEW_PARAMS)
req_preset = generator_preset(req.generator)

run = ui.runs([req], generate=submitted)[0]
settings, images, cache = run.settings, run.images, ui.cache()
clip_preset = all_clip_models()[req.clip]
run_line = (
    f"**Run:** {md_literal(req.prompt)} · {md_literal(settings.model_id)} @ {settings.revision[:12]} · "
    f"{settings.steps} steps · guidance "
    f"{settings.guidance:g} · {settings.width} px · seeds {req.first_seed}-{req.first_seed + req.n - 1} · CLIP "
    f"{md_literal(clip_preset.label)}. Defaults are the lab's own choice; the paper's are unknown.")
# The page's output: each result is drawn once and recorded in the experiment report (drawn only when downloaded).
out = ui_report.start(f"Adherence to prompt: {req.prompt}", "Adherence", "adherence")
out.caption(run_line)
synthetic = form.cached_set(req, images)
ckey = clip_key(clip_preset)
get_clip = lambda: ui.clip(req.clip)  # noqa: E731 - loaded only if an image or text is not cached yet
try:
    with st.spinner("Embedding images and the prompt with CLIP..."):
        syn_emb = ui.embed(cache, ckey, synthetic, get_clip)
        prompt_vector = text_embeddings(cache, ckey, [req.prompt], get_clip)[0]
except (ModelUnavailableError, ValueError, OSError) as exc:
    st.error(md_literal(exc))
    st.stop()

# 2. Natural photos of the class (optional, but the comparison is the point).
st.subheader("Natural photos of the class")
first_folder = next((s for s in reference_sources(config.cache_dir(), config.natural_roots())
                     if s.startswith("folder:")), None)
reference = form.reference_picker(PAGE, req.prompt, len(synthetic), widget_prefix="adh_", default=first_folder)
natural, nat_emb = reference.natural, None
if natural is not None:
    natural_line = (f"{len(natural)} of {reference.available} photos of '{md_literal(reference.class_name)}' "
                    + (f"(as many as the {len(synthetic)} generated images, drawn with a fixed seed)."
                       if len(natural) == len(synthetic) else
                       f"(all of them: fewer than the {len(synthetic)} generated images)."))
    out.caption(f"Natural photos of the class: {natural_line}")
    try:
        with st.spinner("Embedding natural photos..."):
            nat_emb = ui.embed(cache, ckey, natural, get_clip)
    except (ModelUnavailableError, ValueError, OSError) as exc:
        st.error(md_literal(exc))
        natural = None
form.remember_url(PAGE)

# 3. CLIPScore: two distributions, means with intervals, images from least to most adherent.
out.heading("CLIPScore against the prompt")
out.caption(SCORE_NOTE)
syn_scores = clip_scores(syn_emb, prompt_vector)
named = {"synthetic": (synthetic.labels, syn_scores)}
nat_estimate = None
if natural is not None:
    nat_scores = clip_scores(nat_emb, prompt_vector)
    named["natural"] = (natural.labels, nat_scores)
    nat_estimate = score_estimate("mean CLIPScore", nat_scores)
syn_estimate = score_estimate("mean CLIPScore", syn_scores)
score_line = f"**{score_reading(syn_estimate, nat_estimate)}**"
out.text(score_line)
table = score_rows(named)
histogram = score_histogram(table)
out.chart(histogram, key="score_histogram")
histogram_note = ("Dashed lines: each source's mean. Intervals: Student's t for a mean of independent images, "
                  "clipped to CLIPScore's range [0, 2.5]; top-1 shares: Wilson (continuity-corrected).")
out.numbers({"synthetic": [syn_estimate], "natural": [nat_estimate]}, caption=histogram_note)
order = np.argsort(syn_scores, kind="stable")
previews = thumbnails(cache, synthetic, PREVIEW_SIZE)
score_captions = [f"{synthetic.labels[i]} · {syn_scores[i]:.3f}" for i in order]
out.images([previews[i] for i in order], score_captions, title_md="**Generated images, least to most adherent**")
with st.expander("Every image's score (both sources)"):
    st.dataframe(table, hide_index=True)

# 4. Confusable classes: the rank of the intended class among K class names, by zero-shot.
out.heading("Confusable classes: where does the intended class rank?")


def fill_classes() -> None:
    choice = st.session_state["adh_class_set"]
    if choice in CONFUSABLE_SETS:
        st.session_state["adh_classes"] = ", ".join(CONFUSABLE_SETS[choice])


url_classes = st.query_params.get("classes")
default_classes = ", ".join(c.replace("_", " ") for c in reference.classes) if len(reference.classes) > 1 else \
    ", ".join(CONFUSABLE_SETS[DEFAULT_CONFUSABLE])
st.session_state.setdefault("adh_classes", url_classes or default_classes)
c1, c2 = st.columns([1, 3])
c1.selectbox("Fill with", ["(keep)", *CONFUSABLE_SETS], key="adh_class_set", on_change=fill_classes)
classes_text = c2.text_area("Class names (comma-separated)", key="adh_classes", height=80)
class_names, class_problems = parse_classes(classes_text)
for problem in class_problems:
    st.warning(md_literal(problem))
if len(class_names) >= 2:
    st.query_params["classes"] = ", ".join(class_names)
    url_intended = st.query_params.get("intended")
    if url_intended is not None and url_intended not in class_names:
        st.warning(f"The link's intended class '{md_literal(url_intended)}' is not in the list: choose one below.")
    guess = (guess_class(req.prompt, class_names)
             or (guess_class(st.query_params.get("ref_class", ""), class_names) if natural is not None else None)
             or class_names[0])
    intended = st.selectbox("Intended class", class_names, index=ui.pick(class_names, url_intended, guess),
                            key="adh_intended")
    st.query_params["intended"] = intended
    form.remember_url(PAGE)
    try:
        with st.spinner("Embedding the class names..."):
            class_vecs = class_vectors(cache, ckey, class_names, get_clip)
    except (ModelUnavailableError, ValueError) as exc:
        st.error(md_literal(exc))
        st.stop()
    target = class_names.index(intended)
    named_ranks = {"synthetic": ranks(syn_emb, class_vecs, target)}
    if natural is not None:
        named_ranks["natural"] = ranks(nat_emb, class_vecs, target)
    ranks_chart = rank_chart(rank_rows(named_ranks, len(class_names)))
    out.note(f"Intended class **{md_literal(intended)}** among: {md_list(class_names)}.")  # the page: its widgets
    out.chart(ranks_chart, key="rank_chart")
    rank_numbers = {source: rank_estimates(r) for source, r in named_ranks.items()}
    rank_note = (f"Zero-shot among {len(class_names)} class names, each embedded in {len(ZERO_SHOT_TEMPLATES)} "
                 f"templates (\"{ZERO_SHOT_TEMPLATES[0]}\", ...), normalised, averaged and re-normalised (CLIP's "
                 f"recipe). Rank 1 = the intended class is CLIP's first choice; ties count in its favour.")
    out.numbers(rank_numbers, caption=rank_note, dataframe=True, table=[
        {"source": source, "statistic": e.name, "value": e.value, "95% low": e.low, "95% high": e.high, "n": e.n}
        for source, ests in rank_numbers.items() for e in ests])

# 5. Sweep one setting: guidance by default. Every point is a normal, cached run.
st.subheader("Sweep one setting: what does guidance trade?")
url_sweep, sweep_problems = Sweep.from_params(st.query_params.to_dict())
for problem in sweep_problems:
    st.warning(md_literal(problem))
settings_keys = list(SWEEP_SETTINGS)
default_setting = url_sweep.setting if url_sweep else ("guidance" if req_preset.supports_guidance else "steps")
setting = st.radio("Vary", settings_keys, index=settings_keys.index(default_setting), horizontal=True,
                   format_func=lambda k: SWEEP_SETTINGS[k].label, key="adh_sweep_setting")
spec = SWEEP_SETTINGS[setting]
st.caption(spec.note)
guidance_ignored = setting == "guidance" and not req_preset.supports_guidance
if guidance_ignored:
    st.info(f"{md_literal(req_preset.label)} ignores classifier-free guidance, so a guidance sweep would show the "
            f"same images at every value. Pick a guidance-capable model above (SD 1.5, SD 2.1 base, tiny-random), "
            f"or vary steps or the model.")
with st.form("sweep"):
    default_values = (url_sweep.to_params()["sweep_values"] if url_sweep and url_sweep.setting == setting
                      else spec.default_values)
    if setting == "generator" and not (url_sweep and url_sweep.setting == setting):
        default_values = ", ".join(dict.fromkeys([req.generator, *spec.default_values.split(", ")]))
    values_text = st.text_input(f"{spec.label.capitalize()} values (comma-separated)", value=default_values,
                                key=f"adh_sweep_values-{setting}")
    sweep_submitted = st.form_submit_button("Run sweep", disabled=guidance_ignored)
st.caption(f"Same prompt, seeds {req.first_seed}-{req.first_seed + req.n - 1} and N = {req.n} at every value; the "
           f"other settings as in the run above.")

sweep = url_sweep
if sweep_submitted:
    values, value_problems = parse_sweep_values(setting, values_text)
    for problem in value_problems:
        st.error(md_literal(problem))
    sweep = Sweep(setting, tuple(values)) if values and not value_problems else None
sweep_reqs = []
if sweep is not None:
    sweep_reqs, point_problems = sweep_requests(req, sweep)
    for problem in point_problems:
        (st.error if sweep_submitted else st.warning)(md_literal(problem))
if sweep_reqs:
    if sweep_submitted:
        st.query_params.update(sweep.to_params())
        form.remember_url(PAGE)
    points = ui.runs(sweep_reqs, generate=sweep_submitted)
    missing = sum(p.missing for p in points)
    if missing:
        st.warning(f"{missing} of {len(points) * req.n} sweep images are not in the cache yet. Press Run sweep to "
                   f"make them.")
    try:
        with st.spinner("Embedding the sweep's images..."):
            point_sets = [synthetic_set(p.images) for p in points]
            point_embs = [ui.embed(cache, ckey, s, get_clip) if len(s) else np.zeros((0, len(prompt_vector)))
                          for s in point_sets]
    except (ModelUnavailableError, ValueError, OSError) as exc:
        st.error(md_literal(exc))
        st.stop()
    estimates = [sweep_point(x, clip_scores(x, prompt_vector) if len(x) else np.zeros(0)) for x in point_embs]
    rows = sweep_rows(sweep.setting, sweep.values, estimates)
    sweep_figure = sweep_chart(rows, sweep.setting)
    # The page's heading names the form above; the report's, the setting this sweep varied.
    out.heading(f"Sweep: what does {SWEEP_SETTINGS[sweep.setting].label} trade?", on_page=False)
    out.chart(sweep_figure, key="sweep_chart")
    sweep_note = " · ".join(f"**{name}**: {meaning}" for name, meaning in SWEEP_METRICS) + \
        ". Bars: 95% intervals (t for the mean CLIPScore; jackknife for Vendi and mean cosine)."
    out.numbers(rows, caption=sweep_note, value="estimate", labels=[sweep.setting, "metric"], table=rows,
                dataframe=True, where=st.expander("Sweep as a table"))
    label = SWEEP_SETTINGS[sweep.setting].label
    for value, point, point_set in zip(sweep.values, points, point_sets):
        strip = thumbnails(cache, point_set, THUMB_SIZE * 2)[:STRIP]
        shown_value = f"{value:g}" if isinstance(value, float) else str(value)
        details = (f" · {point.settings.steps} steps · guidance {point.settings.guidance:g}"
                   if sweep.setting == "generator" else "")
        st.markdown(f"**{label} {md_literal(shown_value)}**{details} · {len(point_set)} images")
        ui.grid(strip, point_set.labels[:STRIP], per_row=STRIP)

# 6. The experiment report of everything above.
out.settings({"request": asdict(req), "natural photos": {
    "source": reference.source_id, "class": reference.class_name, "n": None if natural is None else len(natural)},
    "class names": st.query_params.get("classes"), "intended class": st.query_params.get("intended"),
    "sweep": sweep.to_params() if sweep_reqs else None})
out.provenance([settings, *[p.settings for p in points]] if sweep_reqs else [settings], clip_preset, ckey)
out.lab_defaults({
    **generation_defaults(req, req_preset),
    "CLIPScore": "the prompt as written is the text (Hessel et al. prefix 'A photo depicts'); w = 2.5.",
    "zero-shot": f"class names in {len(ZERO_SHOT_TEMPLATES)} templates, embeddings averaged (CLIP's ImageNet "
                 f"recipe, a subset chosen by the lab); default class list: {DEFAULT_CONFUSABLE}.",
    "sweep": "default values " + "; ".join(f"{s.label} {s.default_values}" for s in SWEEP_SETTINGS.values())
             + "; the same prompt, seeds and N at every value.",
    "natural sample": LAB_CHOICES["natural sample"], "bootstrap": LAB_CHOICES["bootstrap"]})
out.offer(report_file_stem("adherence", settings.image_key(req.prompt, req.first_seed)[:10], f"n{req.n}"))
