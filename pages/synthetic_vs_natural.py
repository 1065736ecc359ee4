"""Synthetic vs Natural: can a probe tell them apart, how far apart are the two distributions, where do they sit
in one shared map, and which natural photos has the generator never drawn?"""

import numpy as np
import pandas as pd
import streamlit as st

import ui
import ui_classes as uc
from core.compare import (
    DISTANCE_RESAMPLES,
    DISTANCES,
    PRDC_K,
    distance_estimates,
    natural_coverage,
    nearest,
    single_threaded_blas,
)
from core.probe import FOLDS, separability, separability_reading
from core.stats import project_2d

PAGE = "synthetic_vs_natural"
PAGE_PARAMS = ("nn_class",)
NEIGHBOURS = 5


@st.cache_data(show_spinner="Cross-validating the probe...", max_entries=16)
def separability_of(syn, nat, syn_y, nat_y, names: tuple):
    return separability(syn, nat, syn_y, nat_y, list(names))


@st.cache_data(show_spinner="Computing distances with bootstrap intervals...", max_entries=64)
def distances_of(nat, syn):
    return distance_estimates(nat, syn, PRDC_K)


@st.cache_data(show_spinner="Projecting...", max_entries=16)
def projection_of(x):
    with single_threaded_blas():  # see core.compare.single_threaded_blas: faster on shared cores
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
names = exp.names
syn_x, syn_y = exp.stacked("synthetic")
nat_x, nat_y = exp.stacked("natural")

# 1. Separability ---------------------------------------------------------------------------------------------------
st.header("Can a probe tell them apart?")
try:
    sep = separability_of(syn_x, nat_x, syn_y, nat_y, tuple(names))
except ValueError as exc:
    st.error(str(exc))
    st.stop()
st.markdown(f"**{separability_reading(sep)}**")
c1, c2, c3 = st.columns(3)
c1.metric("ROC AUC (0.5 = chance, 1 = always right)", uc.fmt(sep.auc))
c2.metric("balanced accuracy", uc.fmt(sep.accuracy))
c3.metric("images (synthetic + natural)", f"{len(syn_x)} + {len(nat_x)}")
per_class = pd.DataFrame([{"class": name, "ROC AUC": uc.fmt(auc), "balanced accuracy": uc.fmt(acc), "n": auc.n}
                          for name, acc, auc in sep.per_class])
left, right = st.columns(2)
with left:
    scores = pd.DataFrame({"score": sep.scores, "source": np.where(sep.is_synthetic, "synthetic", "natural"),
                           "class": np.asarray(names)[sep.class_index]})
    st.altair_chart(uc.histogram_by_source(scores, "score", "Out-of-fold probe scores",
                                           "decision score (> 0: the probe says synthetic)"), key="scores")
with right:
    st.dataframe(per_class, hide_index=True)
st.caption(f"Logistic regression (L2, C = 1) on standardised CLIP embeddings; stratified {sep.folds}-fold "
           f"cross-validation (up to {FOLDS}; strata = class x source, random_state 0); classes weighted so both "
           f"sources count equally. Every image is scored by a probe that never saw it. Per class: the pooled "
           f"probe's scores restricted to that class. Intervals: percentile bootstrap over images (200 resamples).")

# 2. Distances ------------------------------------------------------------------------------------------------------
st.header("How far apart are the distributions?")
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
st.dataframe(wide, hide_index=True)
chart_df = table[np.isfinite(table["value"])].rename(columns={"95% low": "low", "95% high": "high"})
st.altair_chart(uc.interval_chart(chart_df, "class", title="Distances per class (95% intervals)",
                                  facet="statistic", width=220), key="distances")
with st.expander("What each distance means"):
    for name, meaning in DISTANCES.items():
        st.markdown(f"- **{name}**: {meaning}")
st.caption(f"CLIP features, L2-normalised. FD: Fréchet distance; CMMD: RBF kernel, sigma 10, x1000; precision / "
           f"recall / density / coverage: k = {PRDC_K} nearest neighbours, natural photos as 'real'. Intervals: "
           f"normal bootstrap (estimate +- 1.96 SD over {DISTANCE_RESAMPLES} resamples of both sets, seed 0; "
           f"fewer for very large sets, as the table says), clipped to each statistic's range. FD grows when n is "
           f"small; compare classes at equal n. {uc.LAB_DEFAULTS_NOTE}")


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
    st.altair_chart(uc.shared_map(points, method), key="map")
    st.caption(f"One {method} projection fitted on all {len(syn_x)} synthetic images, {len(nat_x)} natural photos "
               f"and {len(texts)} prompt texts together. Colour: source; shape: class; large outlined points: the "
               f"prompts. Hover a point to see its image. CLIP keeps texts in their own region (the modality gap, "
               f"see the CLIP geometry page).")


shared_map()


# 4. Nearest neighbours ---------------------------------------------------------------------------------------------
@st.fragment
def neighbours() -> None:
    st.header("Nearest natural photos")
    nat_labels = np.asarray(names)[nat_y]
    nat_items = [(c.name, label, jpeg) for c in exp.classes
                 for label, jpeg in zip(c.natural.labels, uc.thumbs(c.natural))]
    agreement = []
    for c in exp.classes:
        idx, _ = neighbours_of(c.syn_emb, nat_x, NEIGHBOURS)
        agreement.append({"class": c.name, "synthetic images": len(c.syn_emb),
                          f"share of their {NEIGHBOURS} nearest natural photos from the same class":
                          float(np.mean(nat_labels[idx] == c.name))})
    st.dataframe(pd.DataFrame(agreement), hide_index=True)
    chosen = st.selectbox("Class", names, index=uc.index_of(names, uc.url_choice("nn_class", names, names[0]),
                                                           names[0]), format_func=lambda c: c.replace("_", " "))
    st.query_params["nn_class"] = chosen
    uc.remember_url(PAGE)
    cls = exp.classes[names.index(chosen)]
    idx, sims = neighbours_of(cls.syn_emb, nat_x, NEIGHBOURS)
    st.subheader(f"Each synthetic '{chosen}' image and its {NEIGHBOURS} nearest natural photos (any class)")
    syn_jpegs = uc.thumbs(cls.synthetic)
    for i, (jpeg, label) in enumerate(zip(syn_jpegs, cls.synthetic.labels)):
        cols = st.columns(NEIGHBOURS + 1)
        cols[0].image(jpeg, caption=f"synthetic: {label}", width="stretch")
        for col, j, s in zip(cols[1:], idx[i], sims[i]):
            cname, nlabel, njpeg = nat_items[j]
            mark = "✓" if cname == chosen else "✗"
            col.image(njpeg, caption=f"{mark} {nlabel.split('/')[0]} · cos {s:.3f}", width="stretch")
    st.subheader(f"Natural '{chosen}' photos no synthetic image comes near")
    cov = coverage_of(cls.nat_emb, cls.syn_emb) if len(cls.nat_emb) > PRDC_K else None
    if cov is None:
        st.info(f"Needs more than k = {PRDC_K} natural photos of the class.")
        return
    st.markdown(f"**{int((~cov.covered).sum())} of {len(cls.nat_emb)} natural photos are uncovered**: no synthetic "
                f"'{chosen}' image falls within the distance of their {PRDC_K}th nearest natural neighbour (PRDC's "
                f"coverage = {cov.covered.mean():.2f}). The most isolated first: what the generator never draws.")
    top = cov.most_uncovered(8)
    nat_jpegs = uc.thumbs(cls.natural)
    uc.image_grid([nat_jpegs[i] for i in top],
                  [f"{cls.natural.labels[i].split('/')[-1]} · {cov.ratio[i]:.2f}x its radius" for i in top])
    st.caption("Ratio = distance to the nearest synthetic image / the photo's own k-NN radius among natural photos; "
               "above 1 = uncovered. Euclidean distances between L2-normalised CLIP embeddings.")


neighbours()
