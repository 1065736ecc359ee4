"""Train on synthetic: classifiers trained on synthetic images, tested on held-out natural photos."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app import classes as uc
from app import ui
from core.analysis.filtering import (
    LOGIT_SCALE,
    MIN_KEEP,
    class_texts,
    clip_filter,
    confidences,
    default_threshold,
    filter_reading,
    per_class_rows,
    same_size_random,
)
from core.analysis.probe import (
    CLASSIFIERS,
    KNN_K,
    TEST_FRACTION,
    gap_sentence,
    learning_curve,
    relative_diversity,
    train_on,
)
from core.analysis.zeroshot import text_embeddings
from core.pipeline.local import all_clip_models
from core.pipeline.models import ModelUnavailableError, clip_key
from core.present.charts import (
    class_matrix_chart,
    diversity_vs_accuracy_chart,
    learning_curve_chart,
    per_class_accuracy_chart,
)
from core.present.literature import PRESETS
from core.present.markup import md_literal

PAGE = "train_on_synthetic"
PAGE_PARAMS = ("clf", "share", "cm", "cf", "cf_t")
SHARES = list(range(0, 101, 10))
CLASS_SELECTION = "class_pick"


@st.cache_data(show_spinner="Training and testing the classifiers...", max_entries=64)
def result_of(share: float, syn_x, syn_y, nat_x, nat_y, per_class: int, classifier: str):
    return train_on(share, syn_x, syn_y, nat_x, nat_y, per_class, classifier)


@st.cache_data(show_spinner="Computing the learning curve...", max_entries=16)
def curve_of(syn_x, syn_y, nat_x, nat_y, per_class: int, classifier: str):
    return learning_curve(syn_x, syn_y, nat_x, nat_y, per_class, classifier)


@st.cache_data(show_spinner=False, max_entries=64)
def relative_diversity_of(syn, nat):
    return relative_diversity(syn, nat)


ui.start_page()
st.title("Train on synthetic")
st.markdown("The paper's test: train a classifier only on generated images, then ask it to classify real photos. "
            "Here a linear probe and a k-NN classifier on CLIP embeddings are trained on synthetic images, on as "
            "many natural photos, or on a mix, and always tested on the same held-out natural photos.")

exp = uc.experiment(PAGE, PAGE_PARAMS, min_classes=2)
out = uc.report_for(exp, PAGE)  # draws each result once and records it in the report (drawn only when downloaded)
names = exp.names
syn_x, syn_y = exp.stacked("synthetic")
nat_x, nat_y = exp.stacked("natural")
per_class = int(max(len(c.syn_emb) for c in exp.classes))
k = len(names)
if min(len(c.nat_emb) for c in exp.classes) < 2:
    st.error("Every class needs at least 2 natural photos: half are held out for testing.")
    st.stop()

# Controls (in the URL).
c1, c2 = st.columns(2)
clf_keys = list(CLASSIFIERS)
classifier = c1.radio("Classifier", clf_keys, format_func=CLASSIFIERS.get, horizontal=True,
                      key=uc.bound(PAGE, "clf", uc.url_choice("clf", clf_keys, "probe")))
share_pct = c2.select_slider("Synthetic share of the mixed training set (%)", SHARES,
                             key=uc.bound(PAGE, "share", uc.url_choice("share", SHARES, 50)))
st.query_params["clf"], st.query_params["share"] = classifier, str(share_pct)
uc.remember_url(PAGE)

# 1. The three training sets, both classifiers.
out.heading("Synthetic vs natural training data", 1)
results = {}
for clf in clf_keys:
    for label, share in (("synthetic only", 1.0), ("natural only", 0.0), (f"mix ({share_pct}% synthetic)",
                                                                           share_pct / 100)):
        results[(clf, label)] = result_of(share, syn_x, syn_y, nat_x, nat_y, per_class, clf)
gaps = [("**" if clf == classifier else "") + gap_sentence(results[(clf, "synthetic only")],
                                                           results[(clf, "natural only")], k)
        + ("**" if clf == classifier else "") for clf in clf_keys]
for gap in gaps:
    out.text(gap)
summary = pd.DataFrame([{"classifier": CLASSIFIERS[clf], "trained on": label,
                         "synthetic images": r.n_train_synthetic, "natural photos": r.n_train_natural,
                         "accuracy on natural photos (%)": uc.fmt(r.accuracy, 1, 100.0),
                         "test photos": r.accuracy.n}
                        for (clf, label), r in results.items()])
out.numbers({f"{CLASSIFIERS[clf]} · {label}": [uc.scaled(r.accuracy, 100.0, f"accuracy (%), trained on "
                                               f"{r.n_train_synthetic} synthetic + {r.n_train_natural} natural")]
             for (clf, label), r in results.items()}, "Accuracy on the held-out natural photos", digits=1,
            group_label="classifier · training data", table=summary)  # st.table wraps: every column in view
acc_df = pd.DataFrame([{"training data": label, "classifier": CLASSIFIERS[clf], "value": r.accuracy.value,
                        "low": r.accuracy.low, "high": r.accuracy.high, "n": r.accuracy.n}
                       for (clf, label), r in results.items()])
accuracy_chart = uc.interval_chart(acc_df, "training data", colour="classifier", reference=1 / k,
                                   title=f"Accuracy on held-out natural photos (dashed: chance, {1 / k:.2f})")
accuracy_note = (f"Each training set has up to {per_class} images per class, only their source differs. Test: "
                 f"{int(TEST_FRACTION * 100)}% of each class's natural photos, held out with a fixed split (seed 0), "
                 f"the same for every row; the natural training images come from the other half. Linear probe: "
                 f"logistic regression (L2, C = 1) on standardised embeddings; k-NN: k = {KNN_K}, cosine. Intervals: "
                 f"Wilson (continuity-corrected), the share of test photos classified correctly. "
                 f"{uc.LAB_DEFAULTS_NOTE}")
out.chart(accuracy_chart, caption=accuracy_note, key="accuracy")

# 2. Per class and the confusion matrix, for the chosen classifier.
out.heading(f"Per class: {CLASSIFIERS[classifier]}", 1)
labels = ["synthetic only", "natural only", f"mix ({share_pct}% synthetic)"]
per_class_df = pd.DataFrame([{"class": names[i], "training data": label,
                              "accuracy": float(results[(classifier, label)].per_class[i]),
                              "test photos": int(results[(classifier, label)].per_class_n[i])}
                             for label in labels for i in range(k)])
left, right = st.columns([3, 2])  # the confusion matrix needs less: the per-class title keeps one line
per_class_chart = per_class_accuracy_chart(per_class_df, labels)
with left:
    out.chart(per_class_chart, key="per_class")
    out.table(per_class_df, on_page=False)  # the page: the bars' tooltips
with right:
    cm_keys = ["synthetic", "natural", "mix"]
    cm_key = st.selectbox("Confusion matrix of", cm_keys, key=uc.bound(PAGE, "cm", uc.url_choice("cm", cm_keys,
                                                                                                 "synthetic")),
                          format_func=dict(zip(cm_keys, labels)).get)
    cm_label = dict(zip(cm_keys, labels))[cm_key]
    st.query_params["cm"] = cm_key
    uc.remember_url(PAGE)
    confusion = results[(classifier, cm_label)].confusion
    cm_df = pd.DataFrame([{"true class": names[i], "predicted": names[j], "photos": int(confusion[i, j])}
                          for i in range(k) for j in range(k)])
    # Cells large enough to read from the back of a room; the labels beside them at full length.
    confusion_chart = class_matrix_chart(cm_df, names, "predicted", "true class", "photos",
                                         f"Confusion matrix ({cm_label})", alt.Scale(scheme="blues"), min_step=44,
                                         legend=alt.Legend(orient="bottom"), value_format="d")
    out.chart(confusion_chart, caption="Held-out natural photos by true and predicted class.", key="confusion",
              width="content")

# 3. Learning curve.
out.heading("Learning curve", 1)
curve = curve_of(syn_x, syn_y, nat_x, nat_y, per_class, classifier)
curve_df = pd.DataFrame([{"images per class": n, "training data": f"{cond} only", "accuracy": e.value,
                          "low": e.low, "high": e.high, "test photos": e.n} for n, cond, e in curve])
curve_chart = learning_curve_chart(curve_df, labels, f"Learning curve ({CLASSIFIERS[classifier]})")
curve_note = ("Natural-only points stop at the size of the natural training half. If the synthetic curve flattens "
              "below the natural one, more synthetic images of the same kind do not close the gap.")
out.chart(curve_chart, caption=curve_note, key="curve")
out.numbers(curve_df.rename(columns={"accuracy": "value", "low": "95% low", "high": "95% high", "test photos": "n"}),
            "Accuracy (training data · images per class)", labels=["training data", "images per class"])  # the tooltips


# 4. Diversity vs accuracy (click a class).
@st.fragment
def diversity_vs_accuracy() -> None:
    # Keyed blocks: a click reruns this fragment alone, which replaces them.
    out.heading("Diversity vs accuracy", 1, key="div_heading")
    on_syn = results[(classifier, "synthetic only")]
    rows = []
    for i, c in enumerate(exp.classes):
        rel, n = relative_diversity_of(c.syn_emb, c.nat_emb)
        rows.append({"class": c.name, "relative diversity": rel, "accuracy": float(on_syn.per_class[i]),
                     "images compared": n, "test photos": int(on_syn.per_class_n[i])})
    df = pd.DataFrame(rows)
    chart = diversity_vs_accuracy_chart(df, CLASS_SELECTION)
    # A little padding at the top: Vega drew this chart's title 6 px above its drawing, where it was clipped.
    event = out.chart(chart.properties(padding={"top": 8, "left": 5, "right": 5, "bottom": 5}),
                      "Diversity of each class's synthetic set vs its accuracy", key="diversity_accuracy",
                      on_select="rerun", lighter=chart)
    picked = (event or {}).get("selection", {}).get(CLASS_SELECTION) or []
    out.table(df, key="div_table", on_page=False)  # the page: the points' tooltips
    correlation = ""
    if len(df) >= 3 and df["relative diversity"].notna().all():
        r = float(np.corrcoef(df["relative diversity"], df["accuracy"])[0, 1])
        correlation = (f"Pearson r = {r:.2f} over {len(df)} classes (a hint, not a test: few classes, and each "
                       f"accuracy rests on {int(df['test photos'].min())}+ test photos). The paper's lens: classes "
                       f"whose synthetic images are less diverse should transfer worse. Vendi of the first n "
                       f"synthetic images over Vendi of n natural photos drawn with seed 0 (Vendi grows with n).")
    (out.caption if correlation else out.note)(correlation, key="div_correlation")
    chosen = next((p["class"] for p in picked if p.get("class") in exp.names), None)
    if chosen is None:
        st.info("Click a point to see that class's images.")
        out.note("", key="div_synthetic").note("", key="div_natural")
        return
    c = exp.classes[exp.names.index(chosen)]
    shown = {f"{chosen}: synthetic images (prompt '{c.prompt}')": (uc.thumbs(c.synthetic, 160), c.synthetic.labels),
             f"{chosen}: natural photos": (uc.thumbs(c.natural, 160)[:16], c.natural.labels[:16])}
    for (title, (jpegs, captions)), key in zip(shown.items(), ("div_synthetic", "div_natural")):
        out.images(jpegs, captions, title, key=key)  # the title names a class and its prompt: plain text


diversity_vs_accuracy()


# 5. The CLIP filter of He et al. (ICLR 2023).
def clip_filter_section() -> dict:
    """Draws the section (and its part of the report); returns its settings."""
    st.header("CLIP filter (He et al., ICLR 2023)")
    on = st.toggle("Filter the synthetic images with CLIP before training",
                   key=uc.bound(PAGE, "cf", uc.url_choice("cf", ["on", "off"], "off") == "on"),
                   help="He et al. keep a generated image only when CLIP, choosing among the task's class names, "
                        "is confident it shows its own class. The preset 'He et al. 2023' above turns this on.")
    if on:
        st.query_params["cf"] = "on"
    else:
        st.query_params.pop("cf", None)
    uc.remember_url(PAGE)
    if not on:
        st.caption("Off. Turn it on to see which generated images CLIP rejects and whether a classifier trained on "
                   "the rest does better on the natural photos.")
        return {"CLIP filter": "off"}
    out.heading("CLIP filter (He et al., ICLR 2023)", 1, on_page=False)  # the page's stands above the toggle
    uc.cite_presets(out, [PRESETS["he2023"]], on_page=True)
    default = default_threshold(k)
    threshold = st.slider("Threshold on the confidence", 0.0, 1.0, step=0.01, format="%.3f",
                          key=uc.bound(PAGE, "cf_t", float(uc.url_number("cf_t", default, 0.0, 1.0)), f"k{k}"),
                          help=f"Default 1/K = {default:.3f} for K = {k} classes: the authors' script sets "
                               f"threshold = 1/class_num.")
    if abs(threshold - default) > 1e-9:
        st.query_params["cf_t"] = f"{threshold:g}"
    else:
        st.query_params.pop("cf_t", None)
    uc.remember_url(PAGE)
    cache = ui.cache()
    try:
        texts = text_embeddings(cache, clip_key(all_clip_models()[exp.spec.clip]), class_texts(names),
                                lambda: ui.clip(exp.spec.clip))
    except (ModelUnavailableError, ValueError, OSError) as exc:
        st.error(md_literal(exc))
        return {"CLIP filter": "on", "threshold": threshold}
    result = clip_filter(confidences(syn_x, texts, syn_y, LOGIT_SCALE), syn_y, threshold)
    filter_line = f"**{md_literal(filter_reading(result, k))}**"
    out.text(filter_line)
    c1, c2, c3 = st.columns(3)
    c1.metric("kept", f"{int(result.kept.sum())} of {len(syn_x)}")
    c2.metric("filtered out", int(result.dropped.sum()))
    c3.metric("threshold", f"{threshold:.3f}" + (" (1/K)" if abs(threshold - default) <= 1e-9 else ""))
    filtered = pd.DataFrame(per_class_rows(result, syn_y, names))
    filter_note = (f"Confidence = softmax over the {k} texts 'a photo of a {{class}}.' of {LOGIT_SCALE:g} x cosine "
                   f"(CLIP's logit scale), at the image's own class; an image passes when its confidence is above "
                   f"the threshold. The authors' script then keeps exactly 800 per class; the lab keeps every image "
                   f"that passes and tops a class up to its {MIN_KEEP} most confident when fewer pass (the lab's own "
                   f"choice, so every class can still be learned).")
    out.table(filtered, caption=filter_note)

    # Accuracy on the natural photos: unfiltered vs filtered, and a random subset of the filtered set's size.
    random_mask = same_size_random(syn_y, result.kept)
    rows, accuracies = [], {}
    for label, mask in (("all synthetic images (unfiltered)", np.ones(len(syn_y), bool)),
                        ("CLIP-filtered", result.kept),
                        ("random subset, same size per class", random_mask)):
        r = result_of(1.0, syn_x[mask], syn_y[mask], nat_x, nat_y, per_class, classifier)
        rows.append({"training set": label, "synthetic images": int(mask.sum()),
                     "accuracy on natural photos (%)": uc.fmt(r.accuracy, 1, 100.0), "test photos": r.accuracy.n,
                     "value": r.accuracy.value})
        accuracies[label] = [uc.scaled(r.accuracy, 100.0, f"accuracy (%), {int(mask.sum())} synthetic images")]
    acc = pd.DataFrame(rows)
    delta = 100 * (acc["value"][1] - acc["value"][0])
    comparison = (f"Trained on the CLIP-filtered images, the {CLASSIFIERS[classifier]} classifies "
                  f"{100 * acc['value'][1]:.0f}% of the held-out natural photos correctly, against "
                  f"{100 * acc['value'][0]:.0f}% unfiltered ({delta:+.0f} points); a random subset of the same size "
                  f"gets {100 * acc['value'][2]:.0f}%.")
    out.text(comparison)
    comparison_note = ("Same held-out natural photos, same classifier and split as above; only the synthetic "
                       "training images differ. The random subset separates 'the filter picks better images' from "
                       "'fewer images'.")
    out.numbers(accuracies, caption=comparison_note, digits=1, group_label="training set",
                table=acc.drop(columns="value"), dataframe=True)

    out.heading("Filtered out, per class", 3, page_level=2)
    for i, c in enumerate(exp.classes):
        rows_i = np.flatnonzero(syn_y == i)
        dropped = [j for j in rows_i if result.dropped[j]]
        if not dropped:
            out.caption(f"{md_literal(c.name)}: nothing filtered out.")
            continue
        line = f"**{md_literal(c.name)}**: {len(dropped)} of {len(rows_i)} filtered out"
        out.text(line)
        jpegs = uc.thumbs(c.synthetic)
        shown = dropped[:16]
        images = ([jpegs[j - rows_i[0]] for j in shown],
                  [f"{c.synthetic.labels[j - rows_i[0]].split(' · ', 1)[-1]} · conf {result.confidence[j]:.2f}"
                   for j in shown])
        out.images(*images)
    return {"CLIP filter": "on", "threshold": threshold, "logit scale": LOGIT_SCALE, "top-up to": MIN_KEEP}


filter_settings = clip_filter_section()
uc.finish_report(out, exp, PAGE, presets=(PRESETS["he2023"],) if filter_settings["CLIP filter"] == "on" else (),
                 settings={"classifier": classifier, "mixed training set: synthetic share (%)": share_pct,
                           "confusion matrix of": cm_label, **filter_settings, "k-NN k": KNN_K,
                           "test fraction": TEST_FRACTION},
                 defaults={"classifier": "linear probe unless k-NN is chosen: logistic regression (L2, C = 1) on "
                                         f"standardised embeddings; k-NN k = {KNN_K}, cosine.",
                           "training sets": f"mix 50% synthetic unless changed; up to {per_class} images per class; "
                                            f"{int(TEST_FRACTION * 100)}% of each class's natural photos held out "
                                            f"(split seed 0), the same for every training set.",
                           "intervals": "Wilson (continuity-corrected) over the test photos."})
