"""Ambiguity: which sense of an ambiguous prompt does the generator draw, and how far can CLIP's sense labels be
trusted? The logic lives in core.analysis.ambiguity and core.analysis.zeroshot; this page is the form, the URL and the
layout."""

from dataclasses import asdict

import numpy as np
import streamlit as st

from app import form, ui
from app import report as ui_report
from core.analysis.ambiguity import (
    AMBIGUITY_PRESETS,
    DEFAULT_PRESET,
    DEFAULT_STYLES,
    EXEMPLARS,
    K_RANGE,
    VARIANT_STYLES,
    AmbiguityRequest,
    calibrate,
    calibration_set,
    cluster_images,
    entropy_rows,
    format_senses,
    grouped_by_sense,
    parse_senses,
    senses_reading,
    share_rows,
    validate_ambiguity,
)
from core.analysis.diversity import PREVIEW_SIZE, synthetic_set, thumbnails
from core.analysis.zeroshot import ZERO_SHOT_TEMPLATES, assign, class_vectors
from core.pipeline import config
from core.pipeline.generate import RunRequest, validate_request
from core.pipeline.local import all_clip_models, generator_preset
from core.pipeline.models import ModelUnavailableError, clip_key
from core.pipeline.natural import reference_sources
from core.pipeline.registry import DEFAULT_TEMPLATE, PROMPT_TEMPLATES, prompt_for_class
from core.present.charts import variant_shares_chart
from core.present.markup import md_list, md_literal
from core.present.report import LAB_CHOICES, generation_defaults, report_file_stem

PAGE = "ambiguity"
VIEW_PARAMS = ("show", "k", "cal")  # view choices below the form: kept in the URL, not part of the request
CUSTOM = "custom"


def set_view_param(name: str, value: str, default: str) -> None:
    if value == default:
        st.query_params.pop(name, None)
    else:
        st.query_params[name] = value
    form.remember_url(PAGE)

ui.start_page()
st.title("Ambiguity")
st.markdown("Many class names have several readings: a *crane* is a bird and a machine. Generate images for an "
            "ambiguous prompt and for variants that name one sense, and see which sense CLIP finds in each image, "
            "how often, and how far those labels can be trusted on natural photos.")

# 1. The request: from the URL (a shared link, a reload) or the form.
url_req = form.url_request(AmbiguityRequest, PAGE)
base = url_req or AmbiguityRequest(RunRequest(prompt_for_class(AMBIGUITY_PRESETS[DEFAULT_PRESET].term)),
                                   AMBIGUITY_PRESETS[DEFAULT_PRESET].senses, DEFAULT_STYLES, (), DEFAULT_PRESET)


def fill_from_preset() -> None:
    """A preset or template choice refills the prompt and the senses (the form's widgets read session state)."""
    key, template = st.session_state["amb_preset"], st.session_state["amb_template"]
    if key != CUSTOM:
        preset = AMBIGUITY_PRESETS[key]
        st.session_state["amb_prompt"] = prompt_for_class(preset.term, template)
        st.session_state["amb_senses"] = format_senses(preset.senses)


# The form's text fields start from the URL once per visit, then keep what the user typed.
for widget, value in (("amb_prompt", base.run.prompt), ("amb_senses", format_senses(base.senses)),
                      ("amb_custom", "\n".join(base.custom))):
    st.session_state.setdefault(widget, value)

preset_keys = [CUSTOM, *AMBIGUITY_PRESETS]
left, right = st.columns(2)
preset_key = left.selectbox(
    "Preset", preset_keys, index=ui.pick(preset_keys, base.preset or CUSTOM, CUSTOM), key="amb_preset",
    on_change=fill_from_preset, help="Fills the prompt and the senses; edit both freely afterwards.",
    format_func=lambda k: "your own prompt and senses" if k == CUSTOM else
    f"{AMBIGUITY_PRESETS[k].term}: {' / '.join(s.name for s in AMBIGUITY_PRESETS[k].senses)}")
templates = list(PROMPT_TEMPLATES)
right.selectbox("Prompt template (for presets)", templates, index=templates.index(DEFAULT_TEMPLATE),
                key="amb_template", on_change=fill_from_preset, disabled=preset_key == CUSTOM)
if preset_key != CUSTOM and AMBIGUITY_PRESETS[preset_key].note:
    st.caption(AMBIGUITY_PRESETS[preset_key].note)

gen_key, preset = form.generator_picker(base.run.generator)
same_gen = base.run.generator == gen_key
with st.form("ambiguity"):
    # No max_chars: the browser would drop a longer paste without a word; validate_request says what is wrong.
    prompt = st.text_input("Prompt (the ambiguous one)", key="amb_prompt")
    senses_text = st.text_area(
        "Senses, one per line: name | CLIP text | definition | photo labels", key="amb_senses", height=130,
        help="Only the name is required. CLIP text: what CLIP compares each image with (blank: the name). "
             "Definition: used by the definition-style variant. Photo labels: WordNet ids (n02012849) or class "
             "folder names of natural photos showing this sense, for calibration. Add or delete lines freely.")
    c1, c2 = st.columns(2)
    styles = c1.multiselect("Disambiguated variants (one per sense each)", list(VARIANT_STYLES),
                            default=list(base.styles), format_func=lambda k: VARIANT_STYLES[k].label,
                            key="amb_styles")
    custom_text = c2.text_area("Your own variants, one prompt per line", key="amb_custom", height=80)
    n, steps, guidance, size, first_seed = form.run_settings_inputs(base.run, preset, same_gen, key_prefix="amb_",
                                                                  n_label="Images per variant (N)")
    clip_choice = form.clip_picker(base.run.clip)
    submitted = st.form_submit_button("Generate", type="primary")
ui.remember_selection(gen_key, clip_choice)

req = url_req
if submitted:
    senses, sense_problems = parse_senses(senses_text)
    form.stop_on(sense_problems)
    run = RunRequest(prompt, int(n), gen_key, int(steps), float(guidance), int(size), int(first_seed), "",
                     clip_choice)
    custom = tuple(line.strip() for line in custom_text.splitlines() if line.strip())
    req = AmbiguityRequest(run, tuple(senses), tuple(styles), custom, "" if preset_key == CUSTOM else preset_key)
if req is None:
    st.info("Pick a preset (or type a prompt and its senses) and press Generate.")
    st.stop()
gen_preset = generator_preset(req.run.generator)
req = AmbiguityRequest(req.run.with_preset_defaults(gen_preset), req.senses, req.styles, req.custom, req.preset)
form.stop_on(validate_request(req.run, gen_preset) + validate_ambiguity(req))
if submitted:
    form.write_url(req.to_params(), PAGE, keep=VIEW_PARAMS)
form.remember_url(PAGE)

# 2. One normal run per variant (same model, same seeds): generated on Generate, else read from the cache.
variants = req.variants()
runs = ui.runs(req.run_requests(), generate=submitted)
settings, cache = runs[0].settings, ui.cache()
names = [s.name for s in req.senses]
run_line = (
    f"**Runs:** {len(variants)} prompt variants x {req.run.n} images · {md_literal(settings.model_id)} @ "
    f"{settings.revision[:12]} · {settings.steps} steps · guidance {settings.guidance:g} · {settings.width} px · "
    f"seeds {req.run.first_seed}-{req.run.first_seed + req.run.n - 1} (the same for every variant) · CLIP "
    f"{md_literal(all_clip_models()[req.run.clip].label)}, zero-shot over {len(ZERO_SHOT_TEMPLATES)} templates "
    f"(\"{ZERO_SHOT_TEMPLATES[0]}\", ...), averaged. Defaults are the lab's own choice; the paper's are unknown.")
# The page's output: each result is drawn once and recorded in the experiment report (drawn only when downloaded).
out = ui_report.start(f"Ambiguity: {req.run.prompt}", "Ambiguity", "ambiguity")
out.caption(run_line)
missing = sum(r.missing for r in runs)
if missing:
    st.warning(f"{missing} of {len(runs) * req.run.n} images are not in the cache yet. Press Generate to make them "
               f"(the cached ones are reused).")
if not any(r.images for r in runs):
    st.stop()

# 3. Zero-shot sense assignment (text vectors and image embeddings are cached: reopening needs no CLIP model).
clip_preset = all_clip_models()[req.run.clip]
sets = [synthetic_set(r.images) for r in runs]
try:
    with st.spinner("Embedding images and sense texts with CLIP..."):
        ckey = clip_key(clip_preset)
        get_clip = lambda: ui.clip(req.run.clip)  # noqa: E731 - loaded only if something is not cached
        sense_vectors = class_vectors(cache, ckey, [s.text for s in req.senses], get_clip)
        embeddings = [ui.embed(cache, ckey, s, get_clip) if len(s) else np.zeros((0, sense_vectors.shape[1]))
                      for s in sets]
except (ModelUnavailableError, ValueError, OSError) as exc:
    st.error(md_literal(exc))
    st.stop()
assignments = [assign(x, sense_vectors) for x in embeddings]

out.heading("Which sense does the model draw?")
sense_reading = f"**{md_literal(senses_reading(variants[0].prompt, assignments[0], names))}**"  # quotes the prompt
out.text(sense_reading)
shares = share_rows(variants, assignments, names)
shares_chart = variant_shares_chart(shares)
out.chart(shares_chart, key="shares_chart")
shares_note = ("Each image is given the sense whose CLIP text is most similar to it (cosine of the image embedding "
               "and the sense's text embedding, averaged over the templates). Share: fraction of a variant's images "
               "given each sense, with a 95% Wilson interval (continuity-corrected; never of zero width at 0% or "
               "100%). Entropy of the "
               "sense distribution in nats (natural log): 0 = always the same sense, ln k = all k senses equally "
               "often.")
entropies = entropy_rows(variants, assignments, len(names))
tables = st.expander("Shares and entropy as tables")
out.numbers(shares, "Sense shares", value="share", labels=["variant", "sense"], table=shares, dataframe=True,
            where=tables)
out.numbers(entropies, "Sense entropy (nats)", shares_note, value="entropy (nats)", labels=["variant"],
            table=entropies, dataframe=True, where=tables)

# 4. The images of one variant, grouped by sense, least confident first.
st.subheader("Images by sense")
labels = [v.prompt for v in variants]
show_param = st.query_params.get("show", "0")
if not show_param.isdigit() or int(show_param) >= len(variants):
    st.warning(f"The link's 'show' is {md_literal(repr(show_param))}, not the number of a variant (0 to "
               f"{len(variants) - 1}): showing the bare prompt.")
    show_param = "0"
shown = st.selectbox("Show the images of", range(len(variants)), index=int(show_param),
                     format_func=lambda i: labels[i], key="amb_show")
set_view_param("show", str(shown), "0")
shown_set, shown_assignment = sets[shown], assignments[shown]
previews = thumbnails(cache, shown_set, PREVIEW_SIZE)
out.heading(f"Images of '{labels[shown]}', by sense", on_page=False)  # the page's heading is above the picker
for sense, members in grouped_by_sense(shown_assignment, names):
    group_title = f"**{md_literal(sense)}**: {len(members)} of {len(shown_set)} images (least confident first)"
    group_captions = [f"{shown_set.labels[i]} · margin {shown_assignment.margins[i]:.3f}" for i in members]
    out.text(group_title).images([previews[i] for i in members], group_captions)
st.caption("Margin: cosine with the chosen sense minus cosine with the runner-up. A margin near 0 is a near tie: "
           "check those images by eye.")

# 5. Calibration: the same assignment on labelled natural photos.
st.subheader("Can the sense labels be trusted? Calibration on natural photos")
# The configured folders; a demo pack's copy stands in for one this machine lacks
# (core.pipeline.natural.reference_sources).
roots = {source_id: folder.root for source_id, (_, folder)
         in reference_sources(config.cache_dir(), config.natural_roots()).items() if source_id.startswith("folder:")}
cal_ids = ["none", *roots]
cal_param = st.query_params.get("cal")
if cal_param is not None and cal_param not in cal_ids:
    st.warning(f"The link's calibration folder '{md_literal(cal_param)}' is not configured on this machine: choose "
               f"one below.")
    cal_param = None
if cal_param is None:  # default: the first configured folder that has photos for these senses
    cal_param = next((cid for cid, root in roots.items()
                      if root.is_dir() and sum(calibration_set(root, req.senses, 1).counts.values())), "none")
cal_id = st.selectbox("Labelled photos from", cal_ids, index=cal_ids.index(cal_param), key="amb_cal",
                      format_func=lambda k: "no calibration" if k == "none" else f"folder {roots[k]}")
set_view_param("cal", cal_id, "")
if cal_id == "none" and roots:  # folders are set, but none has photos with these senses' labels
    st.info(f"None of the photo folders ({md_list(roots.values())}) has photos labelled with these senses' labels. "
            f"Put the photos' labels (WordNet ids such as n02012849, or class folder names) in the senses' 4th "
            f"field, or choose a folder above to calibrate on it anyway.")
elif cal_id == "none":
    st.info("Add folders of labelled photos with DDL_NATURAL_ROOTS (`<folder>/<label>/<image>`, or ImageNet-style "
            "`<wnid>_<name>.JPEG` files) and put their labels in the senses' 4th field.")
else:
    try:
        cal = calibration_set(roots[cal_id], req.senses)
    except OSError as exc:
        st.error(md_literal(f"Cannot read the photos in {roots[cal_id]}: {exc}"))
        cal = None
    if cal is not None:
        for note in cal.notes:
            st.warning(md_literal(note))
        unchecked = [name for name, count in cal.counts.items() if count == 0]
        if not len(cal.images):
            st.info(f"No photo in {md_literal(roots[cal_id])} has a label listed by these senses. Put the photos' "
                    f"labels (WordNet ids or folder names) in the senses' 4th field.")
        else:
            try:
                with st.spinner("Embedding the natural photos..."):
                    cal_emb = ui.embed(cache, ckey, cal.images, get_clip)
            except (ModelUnavailableError, ValueError, OSError) as exc:
                st.error(md_literal(exc))
                st.stop()
            result = calibrate(assign(cal_emb, sense_vectors), cal.truth, cal.images.labels, names)
            accuracy_line = (f"**Zero-shot sense accuracy on {result.accuracy.n} labelled photos: "
                             f"{result.accuracy.format(2)}** with {md_literal(clip_preset.label)}."
                             + (" Far too few photos to trust this number: add more." if result.accuracy.n < 20
                                else ""))
            # The page's heading is above the folder picker; the report has the section only when it has a result.
            out.heading("Can the sense labels be trusted? Calibration on natural photos", on_page=False)
            out.text(accuracy_line).numbers([result.accuracy])  # the page: the accuracy in the line
            if unchecked:
                st.caption(f"No labelled photos for: {md_list(unchecked)}. The accuracy covers the other senses "
                           f"only.")
            cal_previews = thumbnails(cache, cal.images, PREVIEW_SIZE)
            ui.grid(cal_previews, [f"{row['true sense']} → CLIP: {row['assigned sense']} · margin {row['margin']:.3f}"
                                for _, row in result.per_photo.iterrows()])
            with st.expander("Every photo"):
                st.dataframe(result.per_photo, hide_index=True)
            out.table(result.per_sense, "Accuracy by sense")
    st.caption("With random-weight CLIP (tiny-random) this accuracy is chance by construction.")

# 6. The unsupervised view: clusters of the shown variant's images, each named by its nearest sense.
out.heading("Readings nobody listed: clusters")
k_options = ["auto", *[str(k) for k in range(1, 9)]]
k_param = st.query_params.get("k", "auto")
if k_param not in k_options:
    st.warning(f"The link's 'k' is {md_literal(repr(k_param))}; use 'auto' or 1 to 8. Using auto.")
    k_param = "auto"
k_choice = st.selectbox("Number of clusters (k)", k_options, index=k_options.index(k_param), key="amb_k",
                        format_func=lambda k: f"auto: best silhouette for k = {K_RANGE[0]} to {K_RANGE[1]}"
                        if k == "auto" else k)
set_view_param("k", k_choice, "auto")
clustering = cluster_images(embeddings[shown], sense_vectors, names, None if k_choice == "auto" else int(k_choice))
how = {"silhouette": "chosen by silhouette", "user": "set by you"}.get(clustering.chosen_by, clustering.chosen_by)
k_line = (f"k-means (scikit-learn, random_state 0) on the CLIP embeddings of '{md_literal(labels[shown])}': "
          f"**k = {clustering.k}** ({how}).")
out.text(k_line)
if clustering.silhouettes:
    silhouette_line = "Silhouette by k: " + ", ".join(f"k={k}: {s:.3f}" for k, s in clustering.silhouettes.items())
    out.caption(silhouette_line)
for number, cluster in enumerate(clustering.clusters, 1):
    cluster_line = (f"**Cluster {number}**: {len(cluster.members)} images, nearest sense "
                    f"**{md_literal(cluster.nearest_sense)}** (cosine of the cluster centre with its text "
                    f"{cluster.sense_similarity:.3f})")
    exemplars = list(cluster.members[:EXEMPLARS])
    out.text(cluster_line).images([previews[i] for i in exemplars], [shown_set.labels[i] for i in exemplars])
st.caption("Exemplars: the images nearest each cluster's centre. A cluster whose nearest sense is only weakly similar "
           "may be a reading nobody listed: look at its images, then add it as a sense.")

# 7. The experiment report of everything above.
out.settings({"request": asdict(req), "view": {"shown variant": labels[shown], "k": k_choice,
                                               "calibration photos": cal_id}})
out.provenance([r.settings for r in runs], clip_preset, ckey)
out.lab_defaults({
    **generation_defaults(req.run, gen_preset),
    "variants": f"one per sense in the style(s) {', '.join(req.styles) or '(none)'}; the lab's default style is "
                f"'the-sense' ('<prompt>, the <sense>').",
    "zero-shot": f"each sense's CLIP text in {len(ZERO_SHOT_TEMPLATES)} templates, embeddings averaged (CLIP's "
                 f"ImageNet recipe, a subset chosen by the lab).",
    "clusters": f"k-means, random_state 0; k by silhouette among {K_RANGE[0]} to {K_RANGE[1]} unless set.",
    "bootstrap": LAB_CHOICES["bootstrap"]})
out.offer(report_file_stem("ambiguity", settings.image_key(req.run.prompt, req.run.first_seed)[:10],
                           f"n{req.run.n}"))
