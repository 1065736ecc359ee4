"""CLIP geometry: where synthetic images, natural photos and their prompts sit in CLIP space."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app import classes as uc
from app import ui
from core.analysis.geometry import (
    GEOMETRY_STATS,
    cached_norms,
    embedding_norms,
    norm_cache_key,
    offsets_reading,
    per_image_conformity,
    project,
    source_geometry,
    synthetic_offsets,
    text_norms,
)
from core.pipeline.local import all_clip_models
from core.pipeline.models import ModelUnavailableError, clip_key
from core.present.charts import class_matrix_chart, prompt_closeness_chart
from core.present.markup import md_literal

PAGE = "clip_geometry"
CLASS_SELECTION = "geometry_class"


@st.cache_data(show_spinner="Measuring the geometry (bootstrap intervals)...", max_entries=32)
def geometry_of(x, labels, texts):
    return source_geometry(x, labels, texts)


@st.cache_data(show_spinner="Computing the synthetic offsets...", max_entries=16)
def offsets_of(syn_x, syn_y, nat_x, nat_y, k: int):
    return synthetic_offsets(syn_x, syn_y, nat_x, nat_y, k)


ui.start_page()
st.title("CLIP geometry")
st.markdown("Every analysis in this lab happens in CLIP space. Where do synthetic images sit there: nearer their "
            "prompt than real photos are, off to one side, all in the same direction? Each number has its "
            "meaning beside it.")

exp = uc.experiment(PAGE)
out = uc.report_for(exp, PAGE)  # draws each result once and records it in the report (drawn only when downloaded)
names = exp.names
k = len(names)
syn_x, syn_y = exp.stacked("synthetic")
nat_x, nat_y = exp.stacked("natural")
texts = exp.texts()

# 1. All classes together.
out.heading("All classes", 1)
overall = {"synthetic": geometry_of(syn_x, syn_y, texts), "natural": geometry_of(nat_x, nat_y, texts)}
overall_table = pd.DataFrame([{"statistic": name, "synthetic": uc.fmt(overall["synthetic"][i], 3),
                               "natural": uc.fmt(overall["natural"][i], 3), "meaning": GEOMETRY_STATS[name]}
                              for i, name in enumerate(GEOMETRY_STATS)])
out.numbers(overall, caption=f"value [95% interval]; n = {len(syn_x)} synthetic images and {len(nat_x)} natural "
                             f"photos.", table=overall_table.set_index("statistic"))  # st.table wraps the meanings
out.note("\n".join(f"- **{name}**: {meaning}" for name, meaning in GEOMETRY_STATS.items()))  # the page: the table's
rows = [(src, e) for src, ests in overall.items() for e in ests]
chart_df = uc.estimate_rows(rows, key="source").rename(columns={"95% low": "low", "95% high": "high"})
overall_chart = uc.interval_chart(chart_df[np.isfinite(chart_df["value"])], "source", colour="source",
                                  title="All classes (95% intervals)", facet="statistic", width=200)
overall_note = (f"{len(syn_x)} synthetic images, {len(nat_x)} natural photos, {k} prompts. 'All classes': the "
                f"image centroid against the centroid of the prompts; per-image cosines with each image's own prompt; "
                f"cos(prompt, centroid) averaged over classes; conformity against each image's own class and source. "
                f"Intervals: normal bootstrap, images resampled within class (200 resamples, seed 0).")
out.chart(overall_chart, caption=overall_note, key="overall")

# 2. Per class.
out.heading("Per class", 1)
per_class_rows, per_class_estimates = [], {}
for i, c in enumerate(exp.classes):
    for src, x in (("synthetic", c.syn_emb), ("natural", c.nat_emb)):
        per_class_estimates[f"{c.name} · {src}"] = geometry_of(x, np.full(len(x), i), texts)
        for e in per_class_estimates[f"{c.name} · {src}"]:
            per_class_rows.append({"class": c.name, "source": src, "statistic": e.name, "value": e.value,
                                   "low": e.low, "high": e.high, "n": e.n, "shown": uc.fmt(e, 3)})
per_class = pd.DataFrame(per_class_rows)
wide = per_class.pivot_table(index="class", columns=["statistic", "source"], values="shown", aggfunc="first")
wide = wide.reindex(index=names, columns=[(stat, src) for stat in GEOMETRY_STATS for src in ("synthetic", "natural")])
wide.columns = [f"{stat} ({src})" for stat, src in wide.columns]
out.numbers(per_class_estimates, caption="Each class against its own prompt; value [95% interval]. n per cell: the "
                                         "class's images of that source (see 'Images behind every number' above).",
            group_label="class · source", table=wide.reset_index())  # st.table wraps: every statistic in view


@st.fragment
def prompt_closeness() -> None:
    cos = per_class[per_class["statistic"] == "cos(prompt, centroid)"].pivot(index="class", columns="source",
                                                                             values="value").reset_index()
    closeness_chart = prompt_closeness_chart(cos, CLASS_SELECTION)
    # Keyed blocks: a click reruns this fragment alone, which replaces them.
    out.heading("Nearer its prompt: synthetic or natural?", on_page=False, key="closeness_heading")
    left, right = st.columns([2, 1])  # 2/3 of a projector's width: room for the title in one line
    with left:
        event = out.chart(closeness_chart, key="prompt_closeness", on_select="rerun")
    picked = (event or {}).get("selection", {}).get(CLASS_SELECTION) or []
    chosen = next((p["class"] for p in picked if p.get("class") in names), None)
    above = int((cos["synthetic"] > cos["natural"]).sum())
    closeness = (f"**In {above} of {k} classes the synthetic images' centroid is nearer the prompt than the "
                 f"natural photos' centroid** (points above the dashed line). The expectation behind the "
                 f"question: a generator draws what the text says, in CLIP's own terms, while real photos of a "
                 f"class also show what its prompt leaves out.")
    with right:
        out.text(closeness, key="closeness_text")
        if chosen is None:
            st.info("Click a class in the chart to see where its images fall along the synthetic direction.")
            out.note("", key="closeness_class")
        else:
            i = names.index(chosen)
            st.subheader(f"Selected: {md_literal(chosen)}")
            st.dataframe(per_class[per_class["class"] == chosen][["statistic", "source", "shown", "n"]]
                         .rename(columns={"shown": "value [95% interval]"}), hide_index=True)
            proj = pd.DataFrame({"projection": np.concatenate([project(exp.classes[i].syn_emb, offsets.direction),
                                                               project(exp.classes[i].nat_emb, offsets.direction)]),
                                 "source": ["synthetic"] * len(exp.classes[i].syn_emb)
                                 + ["natural"] * len(exp.classes[i].nat_emb)})
            class_chart = uc.histogram_by_source(proj, "projection", f"{chosen}: images along the mean offset",
                                                 "projection on the mean synthetic offset", bins=20)
            out.chart(class_chart, f"Selected: {chosen}", key="closeness_class")


# 3. The synthetic offset.
offsets = offsets_of(syn_x, syn_y, nat_x, nat_y, k)
prompt_closeness()

out.heading("Is there one 'synthetic direction'?", 1)
offsets_line = f"**{md_literal(offsets_reading(offsets))}**"  # may name classes
out.text(offsets_line)
left, right = st.columns(2)
with left:
    norm_df = pd.DataFrame([{"class": c.name, "value": e.value, "low": e.low, "high": e.high, "n": e.n}
                            for c, e in zip(exp.classes, offsets.norms)])
    # One line that fits half a projector's width (Vega never wraps a title; a two-line one is clipped at the top).
    norms_chart = uc.interval_chart(norm_df, "class", title="Centroid distance per class", width=300)
    out.chart(norms_chart, key="offset_norms")
    norms_note = ("The length of each class's offset: how far its synthetic centroid sits from its natural one "
                  "(unit vectors: at most 2). Intervals: normal bootstrap, images resampled within class and source.")
    out.numbers({c.name: [e] for c, e in zip(exp.classes, offsets.norms)} | {"all classes": [
        offsets.mean_pairwise_cosine]}, group_label="class", caption=norms_note)  # the page: the chart's tooltips
with right:
    cos_df = pd.DataFrame([{"class A": names[i], "class B": names[j], "cosine": float(offsets.cosines[i, j])}
                           for i in range(k) for j in range(k)])
    cosines_chart = class_matrix_chart(cos_df, names, "class A", "class B", "cosine",
                                       "Cosine between the classes' offsets",
                                       alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True), min_step=28,
                                       axis_titles=False)
    random_note = (f"Two random directions in {syn_x.shape[1]} dimensions have |cosine| below "
                   f"{offsets.random_level:.2f} about 95% of the time.")
    out.chart(cosines_chart, caption=random_note, key="offset_cosines", width="content")
proj_all = pd.DataFrame({"projection": np.concatenate([project(syn_x, offsets.direction),
                                                       project(nat_x, offsets.direction)]),
                         "source": ["synthetic"] * len(syn_x) + ["natural"] * len(nat_x)})
projection_chart = uc.histogram_by_source(proj_all, "projection", "Every image projected on the mean offset direction",
                                          "projection on the mean synthetic-minus-natural offset")
projection_note = ("The direction is the mean of the classes' offsets, fitted on these same images, so some "
                   "separation is built in; with one shared direction the two histograms barely overlap, with "
                   "class-specific offsets they do.")
out.chart(projection_chart, caption=projection_note, key="projection")

# 4. Conformity.
out.heading("Conformity: how typical is each image of its own set?", 1)
conf = pd.DataFrame({"conformity": np.concatenate([per_image_conformity(syn_x, syn_y),
                                                   per_image_conformity(nat_x, nat_y)]),
                     "source": ["synthetic"] * len(syn_x) + ["natural"] * len(nat_x)})
conformity_chart = uc.histogram_by_source(conf, "conformity", "Cosine of each image with its class-and-source "
                                          "centroid", "conformity (1 = identical to the set's mean)")
conformity_note = (f"{GEOMETRY_STATS['conformity']} Synthetic sets pushed to the right are sets of variations of one "
                   f"picture (see the Diversity page). Sets of different sizes: conformity rises a little as n falls.")
out.chart(conformity_chart, caption=conformity_note, key="conformity")

# 5. Norms before normalisation.
out.heading("Embedding norms before normalisation", 1)
st.caption("CLIP compares directions only: every embedding here is scaled to length 1. The length the encoder "
           "returned is thrown away by the cache, so it is measured here by running the image encoder again "
           "(once; the norms are then kept in the cache).")
cache = ui.cache()
ckey = clip_key(all_clip_models()[exp.spec.clip])
shas = [s for c in exp.classes for s in c.synthetic.shas] + [s for c in exp.classes for s in c.natural.shas]
have = cached_norms(cache, ckey, [norm_cache_key(s) for s in shas])
if len(have) < len(shas):
    todo = len(shas) - len(have)
    measure = st.empty()  # the button goes once it has done its job
    if measure.button(f"Measure the norms ({todo} images to embed again with CLIP)", key="measure_norms"):
        measure.empty()
        # Clicking Cancel reruns the page, which stops this loop at its next progress update; every finished batch
        # of norms is already in the cache, so the next click measures only the rest.
        cancel = st.empty()
        cancel.button("Cancel", key="measure_norms_cancel",
                      help="Stop after the current batch; the norms measured so far stay in the cache.")
        bar = st.progress(0.0, text="Embedding images without normalising...")
        loaders = [ld for c in exp.classes for ld in c.synthetic.loaders] + [ld for c in exp.classes
                                                                              for ld in c.natural.loaders]
        try:
            embedding_norms(cache, ckey, shas, loaders, lambda: ui.clip(exp.spec.clip),
                            progress=lambda f: bar.progress(f, text=f"Embedding images without normalising "
                                                                    f"({100 * f:.0f}%)"))
            text_norms(cache, ckey, [c.prompt for c in exp.classes], lambda: ui.clip(exp.spec.clip))
        except (ModelUnavailableError, ValueError, OSError) as exc:
            st.error(md_literal(exc))
        bar.empty()
        cancel.empty()
        have = cached_norms(cache, ckey, [norm_cache_key(s) for s in shas])
if len(have) == len(shas):
    norms = np.array([have[norm_cache_key(s)] for s in shas])
    norm_df = pd.DataFrame({"norm": norms, "source": ["synthetic"] * len(syn_x) + ["natural"] * len(nat_x)})
    length_chart = uc.histogram_by_source(norm_df, "norm", "Length of the image embedding before normalisation", "norm")
    out.chart(length_chart, key="norms")
    prompt_norms = text_norms(cache, ckey, [c.prompt for c in exp.classes], lambda: ui.clip(exp.spec.clip))
    medians = (f"Median image norm: synthetic **{np.median(norms[:len(syn_x)]):.2f}**, natural "
               f"**{np.median(norms[len(syn_x):]):.2f}** ({len(syn_x)} and {len(nat_x)} images); prompt text "
               f"norms: {', '.join(f'{md_literal(c.name)} {v:.2f}' for c, v in zip(exp.classes, prompt_norms))}.")
    out.text(medians)
    meaning = ("The norm carries no meaning for cosine similarity; a different norm for one source says the "
               "encoder responds differently to those images (e.g. smoother, more saturated pictures).")
    out.caption(meaning)
else:
    out.note("Not measured for this report (the page's *Measure the norms* button embeds the images again).")

uc.finish_report(out, exp, PAGE, defaults={
    "intervals": "normal bootstrap: estimate +- 1.96 SD over 200 resamples (seed 0), images resampled within class "
                 "(and source, for the offsets).",
    "conformity and offsets": "conformity against each image's own class-and-source centroid; the synthetic "
                              "direction is the mean of the classes' offsets, fitted on these same images."})
