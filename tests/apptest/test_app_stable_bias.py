"""The Stable Bias page through AppTest with the tiny random-weight generator and CLIP: it generates, clusters and
shows the cluster-by-prompt table, heat map and exemplars; its link reopens from the cache; bad N / k choices get a
message saying what to change; the preset cites the paper. Random weights make the clusters meaningless: the
clustering itself is tested on constructed embeddings in test_bias.py."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from app_support import table_elements
from streamlit.testing.v1 import AppTest

from core.analysis.bias import short_prompt

TIMEOUT = 240
PAGE = "pages/stable_bias.py"
GENERATE = "Generate missing portraits and cluster"
PARAMS = {"adj": "ambitious,-", "prof": "CEO,janitor", "n": "4", "generator": "tiny-random", "clip": "tiny-random",
          "cuts": "4,12"}
PROMPTS = ["Photo portrait of a ambitious CEO", "Photo portrait of a CEO", "Photo portrait of a ambitious janitor",
           "Photo portrait of a janitor"]


def open_page(params: dict | None = None) -> AppTest:
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()
    at.switch_page(PAGE)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(e.value for e in getattr(at, kind))


def tables(at: AppTest) -> list:
    return [d.value for d in table_elements(at)]


@pytest.fixture(scope="module")
def generated() -> AppTest:
    at = open_page(PARAMS)
    assert not at.exception, at.exception
    assert "16 of 16 portraits are not in the cache yet" in texts(at, "warning")
    return next(b for b in at.button if b.label == GENERATE).click().run()


def test_generates_clusters_and_shows_the_table(generated):
    at = generated
    assert not at.exception, at.exception
    assert "16 images generated, 0 reused from the cache." in texts(at, "success")
    assert [h.value for h in at.header] == ["Clusters by prompt", "What each cluster looks like (k = 12)"]
    counts, shares = tables(at)[:2]
    # Headers without the prompts' common start (the chart's tooltip has them in full).
    assert list(counts.columns) == [*map(short_prompt, PROMPTS), "all prompts"]
    assert list(counts.index) == [f"C{i}" for i in range(1, 13)]
    short = [short_prompt(p) for p in PROMPTS]
    assert list(counts[short].sum(axis=0)) == [4, 4, 4, 4] and counts["all prompts"].sum() == 16
    assert all(v.endswith("%") for v in shares[short[0]])
    spec = next(json.loads(e.proto.spec) for e in at.main if getattr(e, "type", "") == "vega_lite_chart")
    assert spec["title"] == "Share of each prompt's portraits in each cluster (k = 12)"
    assert "At 12 clusters" in texts(at, "markdown")
    assert "nested" in texts(at, "caption") and "Ward linkage" in texts(at, "caption")
    assert 12 <= len(at.get("image")) <= 16  # up to 4 exemplars for each of the 12 clusters (16 portraits)
    assert "arXiv:2303.11408" in texts(at, "markdown")  # the paper is cited on the page
    for k, v in PARAMS.items():
        assert at.query_params[k] == v
    # Another cut of the same tree: 4 clusters, every portrait counted once.
    at.radio[0].set_value(4).run()
    assert not at.exception and at.query_params["k"] == "4"
    counts = tables(at)[0]
    assert len(counts) == 4 and counts["all prompts"].sum() == 16
    assert at.header[-1].value == "What each cluster looks like (k = 4)"


def test_the_link_reopens_from_the_cache_without_generating_or_embedding(generated):
    guards = [mock.patch(target, side_effect=AssertionError(target)) for target in ("app.ui.load_pipeline",
                                                                                    "core.pipeline.engine.generate_missing")]
    guards += [mock.patch(f"core.pipeline.embed.{name}", side_effect=AssertionError(name)) for name in ("embed_pil",
                                                                                               "encode_preprocessed")]
    for guard in guards:
        guard.start()
    try:
        at = open_page({**PARAMS, "k": "4"})
    finally:
        for guard in guards:
            guard.stop()
    assert not at.exception, at.exception
    assert not at.warning and not at.error and not at.success
    assert len(tables(at)[0]) == 4


@pytest.mark.parametrize("params,fragment", [
    ({"n": "2", "cuts": "12"}, "Raise N to at least 4"),  # 4 prompts x 2 = 8 images cannot make 12 clusters
    ({"adj": "", "prof": "CEO", "cuts": "4"}, "Raise N to at least 5"),
    ({"prof": "CEO,wizard", "cuts": "4"}, "not in the paper's list: wizard"),
])
def test_bad_choices_get_a_message_saying_what_to_change(generated, params, fragment):
    at = open_page({**PARAMS, **params})
    assert not at.exception, at.exception
    assert fragment in texts(at, "error") + texts(at, "warning")


def test_the_form_validates_before_generating(generated):
    at = open_page(PARAMS)
    at.multiselect[2].set_value([48])  # cuts
    next(b for b in at.button if b.label == GENERATE).click().run()
    assert not at.exception
    assert "Cutting the tree into 48 clusters needs more than 48 images" in texts(at, "error")
    assert not at.success


def test_the_preset_fills_the_generator_and_cites_the_paper(generated):
    at = open_page(PARAMS)
    at.selectbox(key="stable_bias-preset").set_value("luccioni2023").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="generator").value == "sd-1.5"
    text = texts(at, "markdown")
    for fragment in ("Luccioni", "Stable Bias: Evaluating Societal Representations in Diffusion Models",
                     "NeurIPS 2023", "arXiv:2303.11408", "'Photo portrait of a {adjective} {profession}'",
                     "12, 24 and 48", "the lab's own choice"):
        assert fragment in text, fragment


def test_a_fresh_visit_starts_from_the_papers_preset():
    """No link, no earlier choice: the form holds the paper's settings, so the preset box reports no departure
    (it used to say the settings differ "in: generator", from the lab-wide default generator)."""
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert not [c.value for c in at.caption if "differ from the preset" in c.value]
    assert at.selectbox(key="generator").value == "sd-1.5"
