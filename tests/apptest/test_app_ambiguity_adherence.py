"""The Ambiguity and Adherence pages through Streamlit's AppTest, with the offline tiny-random models.

Random-weight CLIP makes every zero-shot answer chance: these tests check the mechanics (runs, cache, URL, charts,
messages); tests/test_ambiguity.py and tests/test_adherence.py check the semantics with constructed embeddings.
"""

from __future__ import annotations

import re
from dataclasses import replace
from unittest import mock

import app_support
import pytest
from app_support import chart_rows, charts
from streamlit.testing.v1 import AppTest

from core.pipeline.registry import GENERATORS, TINY_RANDOM
from core.present.charts import HISTOGRAM_TITLE, RANK_TITLE, SHARES_TITLE
from core.present.markup import md_literal

TIMEOUT = 180
N = 4
TINY = {"generator": TINY_RANDOM, "clip": TINY_RANDOM, "n": str(N)}
AMBIGUITY = {**TINY, "prompt": "a photo of a crane", "preset": "crane"}
CLASSES = "tench, golf ball, parachute"  # few class names: each costs 7 text embeddings on 2 CPU cores
ADHERENCE = {**TINY, "prompt": "a photo of a tench", "ref": "folder:imagenette224", "ref_class": "tench",
             "classes": CLASSES}


def open_page(page: str, params: dict | None = None) -> AppTest:
    return app_support.open_page(page, params, TIMEOUT)


def press(at: AppTest, label: str) -> AppTest:
    return next(b for b in at.button if b.label == label).click().run()


def ensure_generated(at: AppTest) -> AppTest:
    """Generate when the cache lacks the run (tests may run alone or in any order)."""
    if any("not in the cache" in w.value or "are in the cache" in w.value for w in at.warning):
        at = press(at, "Generate")
    return at


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


NO_WORK = (mock.patch("core.pipeline.models.load_pipeline", side_effect=AssertionError("generator loaded")),
           mock.patch("core.pipeline.generate.generate_missing", side_effect=AssertionError("generation ran")),
           mock.patch("core.pipeline.embed.encode_preprocessed",
                      side_effect=AssertionError("an image was embedded again")),
           mock.patch("core.pipeline.embed.embed_texts", side_effect=AssertionError("a text was embedded again")))


# -- Ambiguity -------------------------------------------------------------------------------------------------------
def test_home_links_both_pages():
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    assert {"ambiguity", "adherence"} <= {link.proto.page for link in at.get("page_link")}  # url paths


def test_ambiguity_page_without_a_link_offers_the_crane_preset():
    at = open_page("pages/ambiguity.py")
    assert not at.exception
    assert at.info[0].value.startswith("Pick a preset")
    assert at.text_input(key="amb_prompt").value == "a photo of a crane"
    assert "crane bird" in at.text_area(key="amb_senses").value
    at.selectbox(key="amb_preset").set_value("bass").run()  # a preset refills the prompt and the senses
    assert at.text_input(key="amb_prompt").value == "a photo of a bass"
    assert at.text_area(key="amb_senses").value.splitlines()[1].startswith("guitar | bass guitar")


def test_ambiguity_variants_shares_calibration_and_clusters():
    at = ensure_generated(open_page("pages/ambiguity.py", AMBIGUITY))
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    done = [s.value for s in at.success if "generated" in s.value]
    if done:
        counts = re.fullmatch(r"(\d+) images generated, (\d+) reused from the cache\.", done[0])
        assert counts and int(counts[1]) + int(counts[2]) == 3 * N  # bare + one variant per sense
    rows = chart_rows(at, SHARES_TITLE)
    assert {r["variant"] for r in rows} == {"a photo of a crane", "a photo of a crane, the bird",
                                            "a photo of a crane, the construction machine"}
    assert {r["sense"] for r in rows} == {"bird", "construction machine"} and all(r["n"] == N for r in rows)
    for variant in {r["variant"] for r in rows}:
        assert sum(r["share"] for r in rows if r["variant"] == variant) == pytest.approx(1.0)
    md = texts(at.markdown)
    assert "'a photo of a crane': CLIP assigns" in md and "nats" in md
    assert "Zero-shot sense accuracy on 2 labelled photos" in md  # the shared ImageNet crane photos
    assert re.search(r"k-means .* \*\*k = \d\*\*", md) and "**Cluster 1**" in md
    assert len(at.get("image")) >= N + 2  # the grid by sense, the calibration photos, the exemplars
    captions = " ".join(c.value for c in at.caption)
    assert "zero-shot over 7 templates" in captions and "lab's own choice" in captions
    assert at.query_params["preset"] == "crane" and "crane bird" in at.query_params["senses"]
    assert at.query_params["cal"] == "folder:imagenet_samples_ambiguous"


def test_ambiguity_reopens_from_the_cache_without_generating_or_embedding():
    ensure_generated(open_page("pages/ambiguity.py", AMBIGUITY))
    with NO_WORK[0], NO_WORK[1], NO_WORK[2], NO_WORK[3]:
        at = open_page("pages/ambiguity.py", {**AMBIGUITY, "styles": "the-sense", "cal": "none"})
    assert not at.exception, at.exception
    assert not at.success and not at.warning and not at.error
    assert SHARES_TITLE in charts(at)


def test_ambiguity_tampered_links_get_messages_not_tracebacks():
    at = open_page("pages/ambiguity.py", {**AMBIGUITY, "n": "lots", "styles": "the-sense,shouting",
                                          "preset": "nope"})
    assert not at.exception
    warnings = texts(at.warning)
    assert "'n'" in warnings and "shouting" in warnings and "nope" in warnings
    at = open_page("pages/ambiguity.py", {**AMBIGUITY, "senses": "bird | crane bird"})
    assert not at.exception and "at least two senses" in texts(at.error)
    ensure_generated(open_page("pages/ambiguity.py", AMBIGUITY))
    at = open_page("pages/ambiguity.py", {**AMBIGUITY, "show": "9", "k": "zero", "cal": "folder:nowhere"})
    assert not at.exception, at.exception
    warnings = texts(at.warning)
    # The link's value is quoted as text (core.present.markup.md_literal: a link is user text).
    assert "'show'" in warnings and "'k'" in warnings and md_literal("folder:nowhere") in warnings


def test_ambiguity_keeps_its_run_across_page_switches():
    at = ensure_generated(open_page("pages/ambiguity.py", AMBIGUITY))
    at.query_params.clear()  # navigating in the browser drops the URL's params; the session must remember
    at.switch_page("pages/home.py").run()
    with NO_WORK[0], NO_WORK[1]:
        at.switch_page("pages/ambiguity.py").run()
    assert not at.exception and SHARES_TITLE in charts(at)
    assert at.query_params["prompt"] == "a photo of a crane" and at.query_params["preset"] == "crane"


# -- Adherence -------------------------------------------------------------------------------------------------------
def test_adherence_scores_ranks_and_a_guidance_sweep():
    at = ensure_generated(open_page("pages/adherence.py", ADHERENCE))
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    md = texts(at.markdown)
    assert re.search(r"Mean CLIPScore of the generated images \d\.\d{3} \[.*\] \(n=4\) vs natural photos", md)
    assert "2.5 x max(cos(image, prompt), 0)" in " ".join(c.value for c in at.caption)
    rows = chart_rows(at, HISTOGRAM_TITLE)
    assert {r["source"] for r in rows} == {"synthetic", "natural"} and len(rows) == 2 * N
    ranks = chart_rows(at, RANK_TITLE)
    assert {r["rank"] for r in ranks} == {1, 2, 3}
    assert at.query_params["intended"] == "tench" and at.query_params["classes"] == CLASSES
    # Least adherent first: the grid's captions are "seed i · score", scores increasing.
    captions = [c for im in at.get("image") for c in im.captions if c.startswith("seed ")][:N]
    scores = [float(c.split(" · ")[1]) for c in captions]
    assert len(scores) == N and scores == sorted(scores), captions

    # The guidance sweep: two values, one of them the run's own 7.5 (reused from the cache).
    at.text_input(key="adh_sweep_values-guidance").set_value("1, 7.5")
    at = press(at, "Run sweep")
    assert not at.exception, at.exception
    assert any(s.value == f"{N} images generated, {N} reused from the cache." for s in at.success) or \
        any(s.value == f"0 images generated, {2 * N} reused from the cache." for s in at.success)
    rows = chart_rows(at, "Adherence and diversity against guidance")
    assert {r["guidance"] for r in rows} == {1.0, 7.5}
    assert {r["metric"] for r in rows} == {"mean CLIPScore", "Vendi score", "mean pairwise cosine"}
    assert at.query_params["sweep"] == "guidance" and at.query_params["sweep_values"] == "1, 7.5"
    assert "**guidance 1** · 4 images" in texts(at.markdown)


def test_adherence_reopens_run_and_sweep_from_the_cache():
    params = {**ADHERENCE, "sweep": "guidance", "sweep_values": "1, 7.5"}
    at = open_page("pages/adherence.py", params)
    if at.warning:  # this test alone: make the run and the sweep first
        at = press(ensure_generated(at), "Run sweep")
    with NO_WORK[0], NO_WORK[1], NO_WORK[2], NO_WORK[3]:
        at = open_page("pages/adherence.py", params)
    assert not at.exception, at.exception
    assert not at.success and not at.warning and not at.error
    assert {HISTOGRAM_TITLE, RANK_TITLE, "Adherence and diversity against guidance"} <= set(charts(at))


def test_guidance_sweep_is_disabled_for_a_model_that_ignores_guidance(monkeypatch):
    monkeypatch.setitem(GENERATORS, TINY_RANDOM, replace(GENERATORS[TINY_RANDOM], supports_guidance=False))
    at = ensure_generated(open_page("pages/adherence.py", {**ADHERENCE, "sweep": "guidance",
                                                           "sweep_values": "1, 7.5"}))
    assert not at.exception, at.exception
    assert "ignores classifier-free guidance" in texts(at.warning)  # the link's sweep cannot run
    assert "ignores classifier-free guidance" in texts(at.info)
    assert next(b for b in at.button if b.label == "Run sweep").disabled


def test_adherence_tampered_links_get_messages_not_tracebacks():
    at = open_page("pages/adherence.py", {**ADHERENCE, "first_seed": "x", "ref": "nowhere", "intended": "unicorn",
                                          "sweep": "temperature"})
    assert not at.exception, at.exception
    warnings = texts(at.warning)
    assert "'first_seed'" in warnings and "nowhere" in warnings and "unicorn" in warnings
    assert "temperature" in warnings
