"""Train on synthetic: classifiers trained on synthetic images, tested on held-out natural photos."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import ui
import ui_classes as uc
from core.probe import (
    CLASSIFIERS,
    KNN_K,
    TEST_FRACTION,
    gap_sentence,
    learning_curve,
    relative_diversity,
    train_on,
)

PAGE = "train_on_synthetic"
PAGE_PARAMS = ("clf", "share", "cm")
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
                      index=clf_keys.index(uc.url_choice("clf", clf_keys, "probe")))
share_pct = c2.select_slider("Synthetic share of the mixed training set (%)", SHARES,
                             value=uc.url_choice("share", SHARES, 50))
st.query_params["clf"], st.query_params["share"] = classifier, str(share_pct)
uc.remember_url(PAGE)

# 1. The three training sets, both classifiers.
st.header("Synthetic vs natural training data")
results = {}
for clf in clf_keys:
    for label, share in (("synthetic only", 1.0), ("natural only", 0.0), (f"mix ({share_pct}% synthetic)",
                                                                           share_pct / 100)):
        results[(clf, label)] = result_of(share, syn_x, syn_y, nat_x, nat_y, per_class, clf)
for clf in clf_keys:
    st.markdown(("**" if clf == classifier else "") + gap_sentence(results[(clf, "synthetic only")],
                                                                   results[(clf, "natural only")], k)
                + ("**" if clf == classifier else ""))
summary = pd.DataFrame([{"classifier": CLASSIFIERS[clf], "trained on": label,
                         "synthetic images": r.n_train_synthetic, "natural photos": r.n_train_natural,
                         "accuracy on natural photos (%)": uc.fmt(r.accuracy, 1, 100.0),
                         "test photos": r.accuracy.n}
                        for (clf, label), r in results.items()])
st.dataframe(summary, hide_index=True)
acc_df = pd.DataFrame([{"training data": label, "classifier": CLASSIFIERS[clf], "value": r.accuracy.value,
                        "low": r.accuracy.low, "high": r.accuracy.high, "n": r.accuracy.n}
                       for (clf, label), r in results.items()])
st.altair_chart(uc.interval_chart(acc_df, "training data", colour="classifier", reference=1 / k,
                                  title=f"Accuracy on held-out natural photos (dashed: chance, {1 / k:.2f})"),
                key="accuracy")
st.caption(f"Each training set has up to {per_class} images per class, only their source differs. Test: "
           f"{int(TEST_FRACTION * 100)}% of each class's natural photos, held out with a fixed split (seed 0), the "
           f"same for every row; the natural training images come from the other half. Linear probe: logistic "
           f"regression (L2, C = 1) on standardised embeddings; k-NN: k = {KNN_K}, cosine. Intervals: percentile "
           f"bootstrap over test photos (200 resamples). {uc.LAB_DEFAULTS_NOTE}")

# 2. Per class and the confusion matrix, for the chosen classifier.
st.header(f"Per class: {CLASSIFIERS[classifier]}")
labels = ["synthetic only", "natural only", f"mix ({share_pct}% synthetic)"]
per_class_df = pd.DataFrame([{"class": names[i], "training data": label,
                              "accuracy": float(results[(classifier, label)].per_class[i]),
                              "test photos": int(results[(classifier, label)].per_class_n[i])}
                             for label in labels for i in range(k)])
left, right = st.columns(2)
with left:
    st.altair_chart(alt.Chart(per_class_df).mark_bar().encode(
        y=alt.Y("class:N", title=None, axis=uc.category_axis()), x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        yOffset="training data:N", color=alt.Color("training data:N", sort=labels),
        tooltip=["class:N", "training data:N", alt.Tooltip("accuracy:Q", format=".2f"), "test photos:Q"],
    ).properties(title="Accuracy per class on natural photos", height=alt.Step(12)), key="per_class")
with right:
    cm_keys = ["synthetic", "natural", "mix"]
    cm_key = st.selectbox("Confusion matrix of", cm_keys, index=cm_keys.index(uc.url_choice("cm", cm_keys,
                                                                                            "synthetic")),
                          format_func=dict(zip(cm_keys, labels)).get)
    cm_label = dict(zip(cm_keys, labels))[cm_key]
    st.query_params["cm"] = cm_key
    uc.remember_url(PAGE)
    confusion = results[(classifier, cm_label)].confusion
    cm_df = pd.DataFrame([{"true class": names[i], "predicted": names[j], "photos": int(confusion[i, j])}
                          for i in range(k) for j in range(k)])
    st.altair_chart(alt.Chart(cm_df).mark_rect().encode(
        x=alt.X("predicted:N", sort=names, axis=uc.category_axis()),
        y=alt.Y("true class:N", sort=names, axis=uc.category_axis()),
        color=alt.Color("photos:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["true class:N", "predicted:N", "photos:Q"]).properties(
        title=f"Confusion matrix: trained on {cm_label}", width=alt.Step(28), height=alt.Step(28)),
        key="confusion", width="content")

# 3. Learning curve.
st.header("Learning curve")
curve = curve_of(syn_x, syn_y, nat_x, nat_y, per_class, classifier)
curve_df = pd.DataFrame([{"images per class": n, "training data": f"{cond} only", "accuracy": e.value,
                          "low": e.low, "high": e.high, "test photos": e.n} for n, cond, e in curve])
base = alt.Chart(curve_df).encode(x=alt.X("images per class:Q", scale=alt.Scale(type="log", base=2)),
                                  color=alt.Color("training data:N", sort=labels))
st.altair_chart((base.mark_line(point=True).encode(
    y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
    tooltip=["images per class:Q", "training data:N", alt.Tooltip("accuracy:Q", format=".2f"),
             alt.Tooltip("low:Q", format=".2f"), alt.Tooltip("high:Q", format=".2f"), "test photos:Q"])
    + base.mark_errorbar().encode(y=alt.Y("low:Q", title="accuracy"), y2="high:Q")).properties(
    title=f"Accuracy on the held-out natural photos vs training images per class ({CLASSIFIERS[classifier]})",
    height=300), key="curve")
st.caption("Natural-only points stop at the size of the natural training half. If the synthetic curve flattens "
           "below the natural one, more synthetic images of the same kind do not close the gap.")


# 4. Diversity vs accuracy (click a class).
@st.fragment
def diversity_vs_accuracy() -> None:
    st.header("Diversity vs accuracy")
    on_syn = results[(classifier, "synthetic only")]
    rows = []
    for i, c in enumerate(exp.classes):
        rel, n = relative_diversity_of(c.syn_emb, c.nat_emb)
        rows.append({"class": c.name, "relative diversity": rel, "accuracy": float(on_syn.per_class[i]),
                     "images compared": n, "test photos": int(on_syn.per_class_n[i])})
    df = pd.DataFrame(rows)
    pick = alt.selection_point(name=CLASS_SELECTION, fields=["class"], on="click", clear="dblclick")
    chart = alt.Chart(df).mark_circle(size=160).encode(
        x=alt.X("relative diversity:Q", title="synthetic Vendi / natural Vendi (1 = as diverse as the photos)",
                scale=alt.Scale(zero=False)),
        y=alt.Y("accuracy:Q", title="accuracy of the synthetic-trained classifier", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("class:N", legend=None),
        stroke=alt.condition(pick, alt.value("black"), alt.value(None)),
        tooltip=["class:N", alt.Tooltip("relative diversity:Q", format=".2f"),
                 alt.Tooltip("accuracy:Q", format=".2f"), "images compared:Q", "test photos:Q"],
    ).add_params(pick).properties(title="One point per class: diversity of its synthetic set vs its accuracy "
                                        "(click a point)", height=340)
    labels_layer = alt.Chart(df).mark_text(dx=10, align="left").encode(x="relative diversity:Q", y="accuracy:Q",
                                                                       text="class:N")
    event = st.altair_chart(chart + labels_layer, key="diversity_accuracy", on_select="rerun")
    picked = (event or {}).get("selection", {}).get(CLASS_SELECTION) or []
    if len(df) >= 3 and df["relative diversity"].notna().all():
        r = float(np.corrcoef(df["relative diversity"], df["accuracy"])[0, 1])
        st.caption(f"Pearson r = {r:.2f} over {len(df)} classes (a hint, not a test: few classes, and each "
                   f"accuracy rests on {int(df['test photos'].min())}+ test photos). The paper's lens: classes "
                   f"whose synthetic images are less diverse should transfer worse. Vendi of the first n synthetic "
                   f"images over Vendi of n natural photos drawn with seed 0 (Vendi grows with n).")
    chosen = next((p["class"] for p in picked if p.get("class") in exp.names), None)
    if chosen is None:
        st.info("Click a point to see that class's images.")
        return
    c = exp.classes[exp.names.index(chosen)]
    st.subheader(f"{chosen}: synthetic images (prompt '{c.prompt}')")
    uc.image_grid(uc.thumbs(c.synthetic, 160), c.synthetic.labels)
    st.subheader(f"{chosen}: natural photos")
    nat_jpegs = uc.thumbs(c.natural, 160)[:16]
    uc.image_grid(nat_jpegs, c.natural.labels[:16])


diversity_vs_accuracy()
