"""The Synthetic vs natural, Train on synthetic and CLIP geometry pages through AppTest, with the offline
tiny-random models and the shared Imagenette photos (2 classes, 6 synthetic images and 8 natural photos each).

Random-weight CLIP makes every number chance-level: these tests check the mechanics (sections, n, intervals,
URL, cache, clicks, messages); the statistics' meaning is tested on constructed data in test_compare/probe/
geometry."""

from __future__ import annotations

from unittest import mock

import pytest
from app_support import chart_frames, charts, table_elements
from streamlit.testing.v1 import AppTest

TIMEOUT = 240
PARAMS = {"classes": "tench,church", "n": "6", "n_nat": "8", "generator": "tiny-random", "clip": "tiny-random",
          "ref": "folder:imagenette224"}
SVN, TRAIN, GEOMETRY = "pages/synthetic_vs_natural.py", "pages/train_on_synthetic.py", "pages/clip_geometry.py"
GENERATE = "Generate missing images and analyse"


def open_page(path: str, params: dict | None = None) -> AppTest:
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()  # st.navigation registers the url paths
    at.switch_page(path)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def press_generate(at: AppTest) -> AppTest:
    return next(b for b in at.button if b.label == GENERATE).click().run()


@pytest.fixture(scope="module")
def generated() -> AppTest:
    """The first page, run from its URL, then Generate: the images every other test reads from the cache."""
    at = open_page(SVN, PARAMS)
    assert not at.exception, at.exception
    assert any("not in the cache" in w.value for w in at.warning)
    return press_generate(at)


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(e.value for e in getattr(at, kind))


def chart_rows(spec: dict) -> list[dict]:
    """The rows of every dataset of a chart from `charts`."""
    return [row for frame in chart_frames(spec["_proto"]) for row in frame.to_dict("records")]


def test_synthetic_vs_natural_generates_and_shows_every_section(generated):
    at = generated
    assert not at.exception, at.exception
    assert "12 images generated, 0 reused from the cache." in texts(at, "success")
    assert [h.value for h in at.header] == ["Can a probe tell them apart?", "How far apart are the distributions?",
                                           "One map: images and prompts", "Nearest natural photos"]
    assert "ROC AUC" in texts(at, "markdown") and "n = 28 images" in texts(at, "markdown")
    # The counts behind every number.
    counts = table_elements(at)[0].value
    assert list(counts["synthetic images"]) == [6, 6] and list(counts["natural photos"]) == [8, 8]
    # Distances: one row per class and one pooled, every statistic with an interval, n in the table.
    distances = next(d.value for d in table_elements(at) if "FD (CLIP)" in d.value.columns)
    assert list(distances["class"]) == ["tench", "church", "all classes"]
    assert list(distances.columns[1:7]) == ["FD (CLIP)", "CMMD", "precision", "recall", "density", "coverage"]
    assert all("[" in v for v in distances["CMMD"])
    assert list(distances["images (synthetic + natural)"]) == ["6 synthetic + 8 natural"] * 2 + [
        "12 synthetic + 16 natural"]
    specs = charts(at)
    assert "Out-of-fold probe scores" in specs and "Distances per class (95% intervals)" in specs
    map_spec = next(s for t, s in specs.items() if t.startswith("Synthetic images, natural photos and prompts"))
    rows = chart_rows(map_spec)
    assert {r["source"] for r in rows} == {"synthetic", "natural", "prompt text"}
    assert sum(r["source"] == "prompt text" for r in rows) == 2 and len(rows) == 12 + 16 + 2
    assert all(r["image"].startswith("data:image/jpeg;base64,") for r in rows if r["source"] != "prompt text")
    # Nearest neighbours: 6 synthetic images x (itself + 5 neighbours), then up to 8 uncovered photos.
    assert len(at.get("image")) == 6 * 6 + 8
    assert any("natural photos are uncovered" in m.value for m in at.markdown)
    for k, v in PARAMS.items():
        assert at.query_params[k] == v
    assert at.query_params["nn_class"] == "tench"


def test_pages_reopen_from_the_cache_without_generating_or_embedding(generated):
    import contextlib

    import core.pipeline.embed

    guards = [("app.ui", "load_pipeline"), ("core.pipeline.engine", "generate_missing"),
              ("core.pipeline.embed", "embed_pil"), ("core.pipeline.embed", "embed_texts"),
              ("core.pipeline.embed", "encode_preprocessed")]
    with contextlib.ExitStack() as stack:
        for module, name in guards:
            if module != "core.pipeline.embed" or hasattr(core.pipeline.embed, name):  # encode_preprocessed: newer only
                stack.enter_context(mock.patch(f"{module}.{name}", side_effect=AssertionError(f"{name} ran")))
        for path in (SVN, TRAIN, GEOMETRY):
            at = open_page(path, PARAMS)
            assert not at.exception, (path, at.exception)
            assert not at.warning and not at.error and not at.success, (path, texts(at, "warning"))


def test_train_on_synthetic_page(generated):
    at = open_page(TRAIN, PARAMS)
    assert not at.exception, at.exception
    summary = next(d.value for d in table_elements(at) if "trained on" in d.value.columns)
    assert len(summary) == 6 and set(summary["test photos"]) == {8}  # 4 held-out photos x 2 classes
    assert list(summary["synthetic images"][:3]) == [12, 0, 6] and list(summary["natural photos"][:3]) == [0, 8, 6]
    gap = [m.value for m in at.markdown if "held-out natural photos correctly" in m.value]
    assert len(gap) == 2 and "chance is 50%" in gap[0] and "points" in gap[0]
    specs = charts(at)
    assert any(t.startswith("Accuracy on held-out natural photos") for t in specs)
    assert any(t.startswith("Confusion matrix") for t in specs)
    assert any(t.startswith("Learning curve (") for t in specs)
    assert at.info[-1].value == "Click a point to see that class's images."
    # The share slider and the classifier live in the URL.
    at.select_slider[0].set_value(30).run()
    at.radio[0].set_value("knn").run()
    assert not at.exception
    assert at.query_params["share"] == "30" and at.query_params["clf"] == "knn"
    assert "mix (30% synthetic)" in list(next(d.value for d in table_elements(at) if "trained on" in d.value.columns)
                                         ["trained on"])
    # Clicking a class in the diversity-vs-accuracy chart shows its images.
    at.session_state["diversity_accuracy"] = {"selection": {"class_pick": [{"class": "church"}]}}
    at.run()
    assert not at.exception
    # Titles that name a class and its prompt are plain text (st.text): user text is never Markdown.
    assert [s.value for s in at.main.text][-2:] == ["church: synthetic images (prompt 'a photo of a church')",
                                              "church: natural photos"]
    assert len(at.get("image")) == 6 + 8


def test_clip_geometry_page_click_and_norms(generated):
    at = open_page(GEOMETRY, PARAMS)
    assert not at.exception, at.exception
    overall = at.table[0].value
    assert list(overall.index) == ["modality gap", "cos(image, own prompt)", "cos(prompt, centroid)",
                                          "conformity"]
    assert all("[" in v for v in list(overall["synthetic"]) + list(overall["natural"]))
    assert "n = 12 synthetic images and 16 natural photos" in texts(at, "caption")
    assert "offsets have mean pairwise cosine" in texts(at, "markdown")
    specs = charts(at)
    for title in ("Every image projected on the mean offset direction",
                  "Cosine of each image with its class-and-source centroid", "Cosine between the classes' offsets"):
        assert title in specs, title
    at.session_state["prompt_closeness"] = {"selection": {"geometry_class": [{"class": "tench"}]}}
    at.run()
    assert not at.exception
    assert "Selected: tench" in [s.value for s in at.subheader]
    assert "tench: images along the mean offset" in charts(at)
    # Norms before normalisation: measured on request, then kept.
    button = next(b for b in at.button if b.label.startswith("Measure the norms"))
    assert "(28 images" in button.label
    button.click().run()
    assert not at.exception, at.exception
    assert "Length of the image embedding before normalisation" in charts(at)
    assert "Median image norm" in texts(at, "markdown")
    # Its job done, the button goes at once (and so does its Cancel), not only on the next visit.
    assert not any(b.label.startswith("Measure the norms") or b.label == "Cancel" for b in at.button)
    again = open_page(GEOMETRY, PARAMS)
    assert not any(b.label.startswith("Measure the norms") for b in again.button)


def test_tampered_links_get_messages_not_tracebacks(generated):
    at = open_page(SVN, {**PARAMS, "classes": "tench,unicorn", "n": "lots", "generator": "nope", "clip": "bad",
                         "template": "zzz", "nn_class": "x"})
    assert not at.exception
    warnings = texts(at, "warning")
    assert "'n'" in warnings and "'nope'" in warnings and "'bad'" in warnings and "'zzz'" in warnings
    assert "no class 'unicorn'" in texts(at, "error")
    at = open_page(TRAIN, {**PARAMS, "share": "250", "clf": "svm", "cm": "?"})
    assert not at.exception
    warnings = texts(at, "warning")
    assert "'share'" in warnings and "'clf'" in warnings and "'cm'" in warnings
    assert summary_ok(at)


def summary_ok(at: AppTest) -> bool:
    return any("trained on" in d.value.columns for d in table_elements(at))


def test_bad_choices_in_the_form_get_errors_with_a_fix(generated):
    at = open_page(SVN, PARAMS)
    at.multiselect[0].set_value([])
    press_generate(at)
    assert not at.exception and "Choose at least 1 class" in texts(at, "error")
    at = open_page(SVN, PARAMS)
    at.number_input[0].set_value(1)
    press_generate(at)
    assert not at.exception and "a class with one image" in texts(at, "error")
    at = open_page(TRAIN, {**PARAMS, "classes": "tench"})
    assert not at.exception and "Choose at least 2 classes" in texts(at, "error")


def test_switching_pages_keeps_the_experiment(generated):
    at = open_page(SVN, PARAMS)
    at.query_params.clear()  # the browser drops the query string on a page switch; the session remembers
    at.switch_page(TRAIN).run()
    assert not at.exception and summary_ok(at)
    assert at.query_params["classes"] == "tench,church"
    at.select_slider[0].set_value(70).run()
    at.query_params.clear()
    at.switch_page("pages/home.py").run()
    labels = [link.proto.label for link in at.get("page_link")]
    assert {"Open the synthetic vs natural page", "Open the train on synthetic page",
            "Open the geometry of clip embeddings page"} <= set(labels)
    at.query_params.clear()
    at.switch_page(TRAIN).run()
    assert at.query_params["share"] == "70" and at.query_params["classes"] == "tench,church"
    at.query_params.clear()
    at.switch_page(GEOMETRY).run()
    assert not at.exception and at.query_params["classes"] == "tench,church"
    assert "Choose the classes" not in texts(at, "info") and table_elements(at)


# -- presets from papers (core.present.literature) and He et al.'s CLIP filter
# ----------------------------------------------

def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def form_values(at: AppTest) -> dict:
    number = {n.label.split(" (")[0]: n.value for n in at.number_input}
    return {"template": next(s.value for s in at.selectbox if s.label == "Prompt template"),
            "generator": at.selectbox(key="generator").value, "clip": at.selectbox(key="clip").value,
            "steps": number["Steps"], "guidance": number["Guidance"], "n": number["Synthetic images per class"]}


@pytest.mark.parametrize("page", [SVN, GEOMETRY])
def test_choosing_a_preset_fills_the_form_and_cites_the_paper(generated, page):
    at = open_page(page, PARAMS)
    key = f"{page.split('/')[-1][:-3]}-preset"
    assert form_values(at)["steps"] is None and "arXiv:" not in markdown_text(at)  # no preset: no citation
    at.selectbox(key=key).set_value("adamkiewicz2026").run()
    assert not at.exception, at.exception
    values = form_values(at)
    assert {k: values[k] for k in ("template", "generator", "steps", "guidance", "clip")} == {
        "template": "name", "generator": "sd-1.5", "steps": 50, "guidance": 2.0, "clip": "ViT-B-32/laion2b"}
    assert values["n"] == 6  # the user's N stays
    text = markdown_text(at)
    for fragment in ("Adamkiewicz", "2026", "When Pretty Isn't Useful", "arXiv:2602.19946", "guidance** = 2.0",
                     "steps** = 50", "not re-checked", "the lab's own choice", "SD-Turbo and SDXL-Turbo ignore it"):
        assert fragment in text, fragment
    for preset, template, fragment in (("sariyildiz2023-c", "name", "prompt** = 'c'"),
                                       ("sariyildiz2023-ch", "wn-hypernym", "WordNet 3.0"),
                                       ("sariyildiz2023-cd", "wn-definition", "prompt** = 'c, d_c'"),
                                       ("sariyildiz2023-chb", "wn-background", "Places365")):
        at.selectbox(key=key).set_value(preset).run()
        assert not at.exception, at.exception
        assert form_values(at)["template"] == template
        text = markdown_text(at)
        assert "Sarıyıldız" in text and "arXiv:2212.08420" in text and "CVPR 2023" in text and fragment in text
    at.selectbox(key=key).set_value("none").run()
    assert "arXiv:" not in markdown_text(at)


def test_a_background_preset_runs_and_a_link_reopens_with_its_citation(generated):
    at = open_page(SVN, PARAMS)
    at.selectbox(key="synthetic_vs_natural-preset").set_value("sariyildiz2023-chb").run()
    at.selectbox(key="generator").set_value("tiny-random")
    at.selectbox(key="clip").set_value("tiny-random")
    press_generate(at)
    assert not at.exception, at.exception
    assert "12 images generated, 0 reused from the cache." in texts(at, "success")
    assert at.query_params["template"] == "wn-background"
    assert "Backgrounds b: airfield, alley" in texts(at, "caption")
    counts = table_elements(at)[0].value
    assert list(counts["prompt"]) == ["tench, cyprinid inside <Places365 scene>",
                                      "church, place of worship inside <Places365 scene>"]
    assert list(counts["synthetic images"]) == [6, 6]
    rows = chart_rows(next(s for t, s in charts(at).items() if t.startswith("Synthetic images, natural photos")))
    assert {r["label"] for r in rows if r["source"] == "synthetic" and r["class"] == "tench"} == {
        f"tench · seed {s} · {'airfield' if s < 4 else 'alley'}" for s in range(6)}
    # A shared link with these settings shows the preset's citation without choosing it.
    again = open_page(SVN, {**PARAMS, "template": "wn-background"})
    assert not again.exception and not again.warning
    assert "arXiv:2212.08420" in markdown_text(again) and "c, h_c inside b" in markdown_text(again)


def test_clip_filter_shows_what_it_drops_and_both_accuracies(generated):
    at = open_page(TRAIN, PARAMS)
    assert "Filter the synthetic images with CLIP" in at.toggle[0].label and not at.toggle[0].value
    at.selectbox(key="train_on_synthetic-preset").set_value("he2023").run()
    assert not at.exception, at.exception
    assert at.query_params["cf"] == "on" and at.toggle[0].value
    assert "CLIP filter (He et al., ICLR 2023)" in [h.value for h in at.header]
    text = markdown_text(at)
    for fragment in ("He, Shuyang Sun", "ICLR 2023", "arXiv:2210.07574", "select_glide_ims_by_clip.py",
                     "threshold** = 1/K"):
        assert fragment in text, fragment
    assert at.slider[0].value == pytest.approx(0.5)  # 1/K, K = 2 classes
    per_class = next(d.value for d in table_elements(at) if "filtered out" in d.value.columns)
    assert list(per_class["generated"]) == [6, 6]
    assert (per_class["kept"] + per_class["filtered out"]).tolist() == [6, 6]
    assert all(k >= 2 for k in per_class["kept"])  # topped up to 2 at least
    accuracy = next(d.value for d in table_elements(at) if "training set" in d.value.columns)
    assert list(accuracy["training set"]) == ["all synthetic images (unfiltered)", "CLIP-filtered",
                                              "random subset, same size per class"]
    assert accuracy["synthetic images"][0] == 12 and accuracy["synthetic images"][1] == per_class["kept"].sum()
    assert all("[" in v for v in accuracy["accuracy on natural photos (%)"]) and set(accuracy["test photos"]) == {8}
    assert any("Trained on the CLIP-filtered images" in m.value for m in at.markdown)
    dropped = int(per_class["filtered out"].sum())
    assert len(at.get("image")) == dropped
    # Threshold 1: nothing passes, every class keeps its 2 most confident, 4 of 6 filtered out per class.
    at.slider[0].set_value(1.0).run()
    assert not at.exception and at.query_params["cf_t"] == "1"
    per_class = next(d.value for d in table_elements(at) if "filtered out" in d.value.columns)
    assert list(per_class["kept"]) == [2, 2] and list(per_class["topped up"]) == [2, 2]
    assert len(at.get("image")) == 8
    # Threshold 0: every image passes, nothing is shown as filtered out.
    at.slider[0].set_value(0.0).run()
    per_class = next(d.value for d in table_elements(at) if "filtered out" in d.value.columns)
    assert list(per_class["filtered out"]) == [0, 0] and len(at.get("image")) == 0
    assert "tench: nothing filtered out." in texts(at, "caption")
