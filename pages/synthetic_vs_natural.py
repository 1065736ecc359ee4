"""Synthetic vs Natural: can a probe tell them apart, how far apart are the two distributions, where do they sit
in one shared map, and which natural photos has the generator never drawn?"""

import numpy as np
import pandas as pd
import streamlit as st

from app import classes as uc
from app import ui
from core.analysis.compare import (
    BOUNDED_RANGES,
    DISTANCE_RESAMPLES,
    DISTANCES,
    PRDC_K,
    distance_estimates,
    natural_coverage,
    nearest,
    single_threaded_blas,
)
from core.analysis.probe import ALPHA, FOLDS, PERMUTATIONS, separability, separability_reading
from core.analysis.stats import project_2d
from core.present.literature import PRESETS, matching_presets
from core.present.markup import md_literal

PAGE = "synthetic_vs_natural"
PAGE_PARAMS = ("nn_class",)
NEIGHBOURS = 5


@st.cache_data(show_spinner="Cross-validating the probe and its permutation test (up to 200 refits)...", max_entries=16)
def separability_of(syn, nat, syn_y, nat_y, names: tuple):
    return separability(syn, nat, syn_y, nat_y, list(names))


@st.cache_data(show_spinner="Computing distances with bootstrap intervals...", max_entries=64)
def distances_of(nat, syn):
    return distance_estimates(nat, syn, PRDC_K)


@st.cache_data(show_spinner="Projecting...", max_entries=16)
def projection_of(x):
    with single_threaded_blas():  # see core.analysis.compare.single_threaded_blas: faster on shared cores
        return project_2d(x, "pca")


@st.cache_data(show_spinner=False, max_entries=64)
def neighbours_of(syn, nat_all, k):
    return nearest(syn, nat_all, k)


@st.cache_data(show_spinner=False, max_entries=64)
def coverage_of(nat, syn):
    return natural_coverage(nat, syn, PRDC_K)


ui.start_page()
st.title("Synthetic vs natural")
st.markdown("Why do classifiers trained only on synthetic images fail on natural photos? First: are the two even "
            "the same kind of data? A probe tries to tell them apart, four distances measure how far apart the "
            "distributions are, and nearest neighbours show what the generator never draws.")

exp = uc.experiment(PAGE, PAGE_PARAMS)
out = uc.report_for(exp, PAGE)  # draws each result once and records it in the report (drawn only when downloaded)
names = exp.names
syn_x, syn_y = exp.stacked("synthetic")
nat_x, nat_y = exp.stacked("natural")

# 1. Separability ---------------------------------------------------------------------------------------------------
out.heading("Can a probe tell them apart?", 1)
try:
    sep = separability_of(syn_x, nat_x, syn_y, nat_y, tuple(names))
except ValueError as exc:
    st.error(md_literal(exc))
    st.stop()
reading = f"**{md_literal(separability_reading(sep))}**"  # may name classes
out.text(reading)
c1, c2, c3 = st.columns(3)
c1.metric("ROC AUC (0.5 = chance, 1 = always right)", uc.fmt(sep.auc))
c2.metric("balanced accuracy", uc.fmt(sep.accuracy))
c3.metric("images (synthetic + natural)", f"{len(syn_x)} + {len(nat_x)}")
out.numbers([sep.auc, sep.accuracy], "All classes", digits=2)  # the page: the metrics above
per_class = pd.DataFrame([{"class": name, "ROC AUC": uc.fmt(auc), "balanced accuracy": uc.fmt(acc), "n": auc.n}
                          for name, acc, auc in sep.per_class])
left, right = st.columns(2)
with left:
    scores = pd.DataFrame({"score": sep.scores, "source": np.where(sep.is_synthetic, "synthetic", "natural"),
                           "class": np.asarray(names)[sep.class_index]})
    scores_chart = uc.histogram_by_source(scores, "score", "Out-of-fold probe scores",
                                          "decision score (> 0: the probe says synthetic)")
    out.chart(scores_chart, key="scores")
with right:  # st.table wraps: both columns in view in half the width
    out.numbers({name: [auc, acc] for name, acc, auc in sep.per_class}, "Per class", digits=2, group_label="class",
                table=per_class)
probe_note = (f"Logistic regression (L2, C = 1) on standardised CLIP embeddings; stratified {sep.folds}-fold "
              f"cross-validation (up to {FOLDS}; strata = class x source, random_state 0); classes weighted so both "
              f"sources count equally. Every image is scored by a probe that never saw it. Per class: the pooled "
              f"probe's scores restricted to that class. 'The sources differ' comes from a permutation test: the "
              f"source labels shuffled within each class and the whole cross-validated probe refitted (up to "
              f"{PERMUTATIONS} times, stopping once p cannot fall below {ALPHA}); the verdict needs p <= {ALPHA} "
              f"(one-sided). ROC AUC intervals: DeLong on the out-of-fold scores; they hold the fold models fixed, so "
              f"they leave out the refitting variance and are a little too narrow: the verdict does not use them. "
              f"Balanced accuracy: percentile bootstrap over images (200 resamples).")
out.caption(probe_note)

# 2. Distances ------------------------------------------------------------------------------------------------------
out.heading("How far apart are the distributions?", 1)
rows = []
for c in exp.classes:
    rows += [(c.name, e) for e in distances_of(c.nat_emb, c.syn_emb)]
rows += [("all classes", e) for e in distances_of(nat_x, syn_x)]
table = uc.estimate_rows(rows)
wide = table.assign(shown=[uc.fmt(e, 3) for _, e in rows]).pivot(index="class", columns="statistic",
                                                                   values="shown")
wide = wide.reindex(index=[*names, "all classes"], columns=list(DISTANCES)).reset_index()
wide["images (synthetic + natural)"] = [f"{len(c.syn_emb)} synthetic + {len(c.nat_emb)} natural"
                                        for c in exp.classes] + [f"{len(syn_x)} synthetic + {len(nat_x)} natural"]
notes = sorted({e.note.split("; ", 1)[1] for _, e in rows if "; " in e.note})
if notes:
    st.caption("Large sets: " + "; ".join(notes) + " (the bootstrap's cost grows with n).")
by_class = {label: [e for row_label, e in rows if row_label == label] for label in dict.fromkeys(r for r, _ in rows)}
out.numbers(by_class, group_label="class", table=wide)  # st.table wraps: every distance in view, no sideways scroll
chart_df = table[np.isfinite(table["value"])].rename(columns={"95% low": "low", "95% high": "high"})
distance_chart = uc.interval_chart(chart_df, "class", title="Distances per class (95% intervals)",
                                   facet="statistic", width=220, domains=BOUNDED_RANGES)
out.chart(distance_chart, key="distances")
if PRESETS["adamkiewicz2026"] in matching_presets(exp.spec, PAGE):
    prdc_note = ("Precision, recall, density and coverage on CLIP ViT-B/32 features are the measures of Adamkiewicz "
                 "et al. 2026 (When Pretty Isn't Useful, arXiv:2602.19946), whose generation settings this run uses; "
                 f"k = {PRDC_K} and the ViT-B/32 weights (LAION-2B) are the lab's own choice.")
    out.caption(prdc_note)
with st.expander("What each distance means"):
    out.text("\n".join(f"- **{name}**: {meaning}" for name, meaning in DISTANCES.items()))
distance_note = (f"CLIP features, L2-normalised. FD: Fréchet distance; CMMD: RBF kernel, sigma 10, x1000; precision "
                 f"/ recall / density / coverage: k = {PRDC_K} nearest neighbours, natural photos as 'real'. "
                 f"Intervals: normal bootstrap (estimate +- 1.96 SD over {DISTANCE_RESAMPLES} resamples of both sets, "
                 f"seed 0; fewer for very large sets, as the table says), clipped to each statistic's range (the cell "
                 f"says when). FD and CMMD (as published) grow when n is small: compare classes at equal n, or read "
                 f"'CMMD (unbiased)', which has no sample-size bias. {uc.LAB_DEFAULTS_NOTE}")
out.caption(distance_note)


# 3. The shared map -------------------------------------------------------------------------------------------------
@st.fragment
def shared_map() -> None:
    st.header("One map: images and prompts")
    texts = exp.texts()
    coords, method = projection_of(np.concatenate([syn_x, nat_x, texts]))
    syn_uris = [u for c in exp.classes for u in uc.thumb_uris(c.synthetic)]
    nat_uris = [u for c in exp.classes for u in uc.thumb_uris(c.natural)]
    labels = ([lab for c in exp.classes for lab in c.synthetic.labels]
              + [lab for c in exp.classes for lab in c.natural.labels] + [c.prompt for c in exp.classes])
    points = pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1],
        "source": ["synthetic"] * len(syn_x) + ["natural"] * len(nat_x) + ["prompt text"] * len(texts),
        "class": [names[i] for i in syn_y] + [names[i] for i in nat_y] + names,
        "label": labels, "image": syn_uris + nat_uris + [""] * len(texts)})
    map_note = (f"One {method} projection fitted on all {len(syn_x)} synthetic images, {len(nat_x)} natural photos "
                f"and {len(texts)} prompt texts together. Colour: source; shape: class; large outlined points: the "
                f"prompts. Hover a point to see its image. CLIP keeps texts in their own region (the modality gap, "
                f"see the CLIP geometry page).")
    # The thumbnails serve only the hover (a picture has none): the report's copy leaves them out, megabytes less.
    out.chart(uc.shared_map(points, method), "One map: images and prompts", map_note, key="map",
              lighter=uc.shared_map(points.assign(image=""), method))


shared_map()


# 4. Nearest neighbours ---------------------------------------------------------------------------------------------
@st.fragment
def neighbours() -> None:
    # Keyed blocks: choosing another class reruns this fragment alone, which replaces them (and the link).
    out.heading("Nearest natural photos", 1, key="nn_heading")
    nat_labels = np.asarray(names)[nat_y]
    nat_items = [(c.name, label, jpeg) for c in exp.classes
                 for label, jpeg in zip(c.natural.labels, uc.thumbs(c.natural))]
    agreement = []
    for c in exp.classes:
        idx, _ = neighbours_of(c.syn_emb, nat_x, NEIGHBOURS)
        agreement.append({"class": c.name, "synthetic images": len(c.syn_emb),
                          f"share of their {NEIGHBOURS} nearest natural photos from the same class":
                          float(np.mean(nat_labels[idx] == c.name))})
    agreement = pd.DataFrame(agreement)
    out.table(agreement, key="nn_agreement")
    chosen = st.selectbox("Class", names, key=uc.bound(PAGE, "nn_class", uc.url_choice("nn_class", names, names[0]),
                                                       ",".join(names)),
                          format_func=lambda c: c.replace("_", " "))
    st.query_params["nn_class"] = chosen
    uc.remember_url(PAGE)
    cls = exp.classes[names.index(chosen)]
    idx, sims = neighbours_of(cls.syn_emb, nat_x, NEIGHBOURS)
    pairs_title = f"Each synthetic '{chosen}' image and its {NEIGHBOURS} nearest natural photos (any class)"
    shown, captions = [], []  # a row per synthetic image: the image, then its nearest natural photos
    for i, (jpeg, label) in enumerate(zip(uc.thumbs(cls.synthetic), cls.synthetic.labels)):
        shown.append(jpeg)
        captions.append(f"synthetic: {label}")
        for j, s in zip(idx[i], sims[i]):
            cname, nlabel, njpeg = nat_items[j]
            mark = "✓" if cname == chosen else "✗"
            shown.append(njpeg)
            captions.append(f"{mark} {nlabel.split('/')[0]} · cos {s:.3f}")
    out.images(shown, captions, pairs_title, f"Class shown: {md_literal(chosen)} (the link's nn_class).",
               per_row=NEIGHBOURS + 1, key="nn_pairs")
    out.follow_url()
    uncovered_title = f"Natural '{chosen}' photos no synthetic image comes near"
    out.heading(uncovered_title, 3, key="nn_uncovered_heading")
    cov = coverage_of(cls.nat_emb, cls.syn_emb) if len(cls.nat_emb) > PRDC_K else None
    if cov is None:
        too_few = f"Needs more than k = {PRDC_K} natural photos of the class."
        st.info(too_few)
        out.note(too_few, key="nn_cover").note("", key="nn_uncovered")
        return
    cover_line = (f"**{int((~cov.covered).sum())} of {len(cls.nat_emb)} natural photos are uncovered**: no synthetic "
                  f"'{md_literal(chosen)}' image falls within the distance of their {PRDC_K}th nearest natural "
                  f"neighbour (PRDC's "
                  f"coverage = {cov.covered.mean():.2f}). The most isolated first: what the generator never draws.")
    out.text(cover_line, key="nn_cover")
    top = cov.most_uncovered(8)
    nat_jpegs = uc.thumbs(cls.natural)
    uncovered = ([nat_jpegs[i] for i in top],
                 [f"{cls.natural.labels[i].split('/')[-1]} · {cov.ratio[i]:.2f}x its radius" for i in top])
    ratio_note = ("Ratio = distance to the nearest synthetic image / the photo's own k-NN radius among natural photos; "
                  "above 1 = uncovered. Euclidean distances between L2-normalised CLIP embeddings.")
    out.images(*uncovered, caption=ratio_note, key="nn_uncovered")


neighbours()

uc.finish_report(out, exp, PAGE, settings={
    "probe": f"logistic regression, L2, C = 1, up to {FOLDS} stratified folds (random_state 0)",
    "PRDC k": PRDC_K, "distance bootstrap resamples": DISTANCE_RESAMPLES, "map": "PCA",
    "nearest neighbours": NEIGHBOURS}, defaults={
    "probe": f"logistic regression (L2, C = 1) on standardised embeddings, stratified cross-validation with up to "
             f"{FOLDS} folds (random_state 0); verdict: permutation test, up to {PERMUTATIONS} refits, one-sided "
             f"alpha {ALPHA}; AUC intervals: DeLong on out-of-fold scores.",
    "distances": f"PRDC k = {PRDC_K} (Naeem et al.'s default); CMMD sigma 10 (Jayasumana et al.); intervals: normal "
                 f"bootstrap over {DISTANCE_RESAMPLES} resamples of both sets (seed 0), clipped to each range.",
    "map and neighbours": f"PCA of all images and prompts together; the {NEIGHBOURS} nearest natural photos by "
                          f"cosine; the 8 most isolated uncovered photos."})
