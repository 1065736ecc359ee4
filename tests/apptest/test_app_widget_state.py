"""Widgets whose starting value comes from the URL keep every change the user makes (AppTest, tiny-random models).

The bug these guard against: a widget whose default (`index=`/`value=`) is read from st.query_params on every run,
and whose identity depends on that default (no `key=`), becomes a new widget once the page has written the user's
choice to the URL. The next change is then made to the old widget, which no longer exists, and the new one starts
from the URL: every second change is dropped. Each test changes one control twice, running the page after each
change, and checks that the page and the URL follow the second change too.
"""

from __future__ import annotations

from typing import Callable

import app_support
import pytest
from streamlit.testing.v1 import AppTest

from core.pipeline.registry import TINY_RANDOM
from core.present.markup import md_literal

TIMEOUT = 180
N = 4
TINY = {"generator": TINY_RANDOM, "clip": TINY_RANDOM, "n": str(N)}
DIVERSITY = {**TINY, "prompt": "a photo of a tench"}
ADHERENCE = {**TINY, "prompt": "a photo of a tench", "ref": "folder:imagenette224", "ref_class": "tench",
             "classes": "tench, golf ball, parachute"}
AMBIGUITY = {**TINY, "prompt": "a photo of a crane", "preset": "crane"}
IMAGENETTE_SOURCE, AMBIGUOUS_SOURCE = "folder:imagenette224", "folder:imagenet_samples_ambiguous"


def open_page(page: str, params: dict) -> AppTest:
    """The page from a link, its run generated if the cache lacks it (tests may run alone or in any order)."""
    at = app_support.open_page(page, params, TIMEOUT)
    if any("not in the cache" in w.value or "are in the cache" in w.value for w in at.warning):
        at = next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def change(at: AppTest, widget, value) -> AppTest:
    widget.set_value(value)
    at.run()
    assert not at.exception, at.exception
    return at


def change_twice(at: AppTest, widget: Callable[[AppTest], object], param: str, steps: list[tuple],
                 where: str = "markdown") -> AppTest:
    """Change the control `widget(at)` to each step's value in turn: (value, shown) or (value, shown, absent).
    After each change the control shows the value, the URL's `param` holds it and, where given, the text `shown`
    is among the page's `where` elements and `absent` is not."""
    for value, shown, *absent in steps:
        at = change(at, widget(at), value)
        assert widget(at).value == value and at.query_params[param] == str(value)
        page_text = texts(getattr(at, where))
        assert shown is None or shown in page_text, shown
        assert not absent or absent[0] not in page_text, absent
    return at


def control(kind: str, label: str) -> Callable[[AppTest], object]:
    """A finder of the control labelled `label`, looked up afresh on each run (a rerun replaces the elements)."""
    return lambda at: labelled(at, kind, label)


def type_and_press(at: AppTest, label: str, text: str, button: str) -> AppTest:
    """Type `text` into the text input labelled `label`, then press the button labelled `button`."""
    labelled(at, "text_input", label).set_value(text)
    at = next(b for b in at.button if b.label == button).click().run()
    assert not at.exception, at.exception
    return at


def labelled(at: AppTest, kind: str, label: str):
    """The widget by its label, as a user finds it (not by key: the tests must not depend on the fix's keys)."""
    found = [w for w in getattr(at, kind) if w.label == label]
    assert len(found) == 1, f"{len(found)} {kind} widgets labelled {label!r}"
    return found[0]


# -- Diversity -------------------------------------------------------------------------------------------------------
reference_source = control("selectbox", "Compare with natural photos from")
reference_class = control("selectbox", "Class")
projection = control("radio", "Projection")


def test_diversity_reference_source_takes_two_changes_in_a_row():
    at = open_page("pages/diversity.py", DIVERSITY)
    assert reference_source(at).value == "none" and "ref" not in at.query_params
    at = change(at, reference_source(at), IMAGENETTE_SOURCE)
    assert reference_source(at).value == IMAGENETTE_SOURCE and at.query_params["ref"] == IMAGENETTE_SOURCE
    assert "photos of 'tench'" in texts(at.caption)  # the class guessed from the prompt
    at = change(at, reference_source(at), "none")
    assert reference_source(at).value == "none" and "ref" not in at.query_params
    assert "photos of 'tench'" not in texts(at.caption) and not [s for s in at.selectbox if s.label == "Class"]


@pytest.mark.parametrize("page", ["diversity", "adherence"])
def test_reference_class_takes_two_changes_in_a_row(page):
    link = {"diversity": {**DIVERSITY, "ref": IMAGENETTE_SOURCE, "ref_class": "tench"}, "adherence": ADHERENCE}[page]
    at = open_page(f"pages/{page}.py", link)
    assert reference_class(at).value == "tench"
    change_twice(at, reference_class, "ref_class",
                 [("church", "photos of 'church'"), ("golf_ball", "photos of 'golf_ball'")], where="caption")


def test_diversity_map_projection_takes_two_changes_in_a_row():
    at = open_page("pages/diversity.py", DIVERSITY)
    assert projection(at).value == "pca"
    change_twice(at, projection, "map", [("tsne", None), ("pca", None)])


def generate_with(at: AppTest, label: str, text: str) -> AppTest:
    return type_and_press(at, label, text, "Generate")


def run_line(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("**Run:**"))


def test_diversity_prompt_takes_two_generates_in_a_row():
    at = open_page("pages/diversity.py", DIVERSITY)
    for prompt in ("a photo of a church", "a photo of a golf ball"):
        at = generate_with(at, "Prompt", prompt)
        assert at.query_params["prompt"] == prompt and run_line(at).startswith(f"**Run:** {md_literal(prompt)} ·")
        assert len(at.get("image")) == N


def test_diversity_negative_prompt_takes_two_generates_in_a_row():
    at = open_page("pages/diversity.py", DIVERSITY)
    for negative in ("blurry", "a drawing"):
        at = generate_with(at, "Negative prompt (optional)", negative)
        assert at.query_params["negative_prompt"] == negative and f"negative: {md_literal(negative)}" in run_line(at)


def test_diversity_link_values_still_start_the_widgets_and_bad_ones_fall_back():
    at = open_page("pages/diversity.py", {**DIVERSITY, "ref": IMAGENETTE_SOURCE, "ref_class": "church",
                                          "map": "tsne"})
    assert reference_source(at).value == IMAGENETTE_SOURCE and reference_class(at).value == "church"
    assert projection(at).value == "tsne"
    at = open_page("pages/diversity.py", {**DIVERSITY, "ref": "nowhere", "map": "sideways"})
    assert reference_source(at).value == "none" and projection(at).value == "pca"


# -- Adherence -------------------------------------------------------------------------------------------------------
photo_source = control("selectbox", "Natural photos from")
intended_class = control("selectbox", "Intended class")
varied_setting = control("radio", "Vary")


def test_adherence_reference_source_takes_two_changes_in_a_row():
    at = open_page("pages/adherence.py", ADHERENCE)
    assert photo_source(at).value == IMAGENETTE_SOURCE
    change_twice(at, photo_source, "ref", [("none", None, "photos of 'tench'"),
                                           (IMAGENETTE_SOURCE, "photos of 'tench'")], where="caption")


def test_adherence_intended_class_takes_two_changes_in_a_row():
    at = open_page("pages/adherence.py", ADHERENCE)
    assert intended_class(at).value == "tench"
    change_twice(at, intended_class, "intended", [("golf ball", None), ("parachute", None)])


def run_sweep(at: AppTest, label: str, values: str) -> AppTest:
    return type_and_press(at, label, values, "Run sweep")


def test_adherence_sweep_setting_takes_two_changes_in_a_row_after_a_sweep():
    """The choice starts from the link's sweep, which changes only when a sweep runs: the changes after one."""
    at = open_page("pages/adherence.py", ADHERENCE)
    assert varied_setting(at).value == "guidance"
    at = change(at, varied_setting(at), "steps")
    at = run_sweep(at, "Steps values (comma-separated)", "2, 4")
    assert at.query_params["sweep"] == "steps"
    at = change(at, varied_setting(at), "guidance")
    assert varied_setting(at).value == "guidance"
    assert labelled(at, "text_input", "Guidance values (comma-separated)").value == "1, 2, 4, 7.5, 12"
    at = change(at, varied_setting(at), "generator")
    assert varied_setting(at).value == "generator"
    assert labelled(at, "text_input", "Model values (comma-separated)")
    assert at.query_params["sweep"] == "steps"  # the link keeps the sweep that ran until another one runs


def test_adherence_sweep_values_take_two_sweeps_in_a_row():
    at = open_page("pages/adherence.py", ADHERENCE)
    at = change(at, varied_setting(at), "steps")
    for values in ("2, 4", "3, 4"):  # few steps: each new value is 4 tiny images
        at = run_sweep(at, "Steps values (comma-separated)", values)
        assert at.query_params["sweep"] == "steps" and at.query_params["sweep_values"] == values
        assert varied_setting(at).value == "steps"
        assert labelled(at, "text_input", "Steps values (comma-separated)").value == values
        assert f"**steps {values.split(', ')[0]}** · {N} images" in texts(at.markdown)


# -- Ambiguity -------------------------------------------------------------------------------------------------------
shown_variant = control("selectbox", "Show the images of")
cluster_count = control("selectbox", "Number of clusters (k)")
calibration_folder = control("selectbox", "Labelled photos from")


def test_ambiguity_shown_variant_takes_two_changes_in_a_row():
    at = open_page("pages/ambiguity.py", AMBIGUITY)
    assert shown_variant(at).value == 0 and "show" not in at.query_params
    change_twice(at, shown_variant, "show",
                 [(1, "on the CLIP embeddings of 'a photo of a crane, the bird'"),
                  (2, "on the CLIP embeddings of 'a photo of a crane, the construction machine'")])


def test_ambiguity_cluster_count_takes_two_changes_in_a_row():
    at = open_page("pages/ambiguity.py", AMBIGUITY)
    assert cluster_count(at).value == "auto" and "k" not in at.query_params
    change_twice(at, cluster_count, "k", [("2", "**k = 2** (set by you)"), ("3", "**k = 3** (set by you)")])


def test_ambiguity_calibration_folder_takes_two_changes_in_a_row():
    at = open_page("pages/ambiguity.py", AMBIGUITY)
    assert calibration_folder(at).value == AMBIGUOUS_SOURCE
    change_twice(at, calibration_folder, "cal", [("none", None, "Zero-shot sense accuracy"),
                                                 (AMBIGUOUS_SOURCE, "Zero-shot sense accuracy on 2 labelled photos")])
