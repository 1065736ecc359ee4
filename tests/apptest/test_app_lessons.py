"""The five lesson pages through Streamlit's AppTest, with the offline tiny-random models (chosen through the URL)
and the shared Imagenette photos.

Each lesson: its question and the run button on an empty cache; one click makes the images and the chart, whose
rows equal what core computes from the same cached images; the "Try it yourself" link, opened on the full page,
shows the same numbers from the cache without generating. Random-weight CLIP makes the numbers chance-level: the
tests check that they are the right numbers, tests/test_lessons.py checks the helpers' meaning.
"""

from __future__ import annotations

import contextlib
import shutil
from unittest import mock
from urllib.parse import parse_qsl

import app_support
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.analysis.adherence import score_rows
from core.analysis.ambiguity import share_rows
from core.analysis.classes import NATURAL_SEED
from core.analysis.diversity import embed_set, natural_set, synthetic_set
from core.analysis.stats import diversity_statistics, wilson_interval
from core.analysis.zeroshot import assign, class_vectors, clip_scores
from core.pipeline.cache import Cache
from core.pipeline.config import DeviceSpec
from core.pipeline.embed import text_embeddings
from core.pipeline.generate import cached_images, resolve_settings
from core.pipeline.models import clip_key
from core.pipeline.natural import NaturalFolder
from core.pipeline.registry import CLIP_MODELS, GENERATORS, TINY_RANDOM
from core.present.charts import HISTOGRAM_TITLE, SHARES_TITLE
from core.present.lessons import LESSONS, closeness_rows, recognition_rows, try_it_params, weakest_class
from core.present.markup import md_literal

TIMEOUT = 300
TINY = {"generator": TINY_RANDOM, "clip": TINY_RANDOM}
SOURCE = "folder:imagenette224"
RUN = "Run the experiment"


@pytest.fixture(scope="module")
def natural_roots(imagenette_dir):
    """Imagenette only: with the ambiguous names' folder too, the Ambiguity page would calibrate on its photos, which
    the lessons do not."""
    return [imagenette_dir]


def open_page(page: str, params: dict | None = None) -> AppTest:
    return app_support.open_page(page, params, TIMEOUT)


def open_lesson(key: str, params: dict | None = TINY) -> AppTest:
    return open_page(LESSONS[key].page, params)


def run_button(at: AppTest):
    return next((b for b in at.button if b.label == RUN), None)


def ran(key: str) -> AppTest:
    """The lesson with its answer: one click when the cache lacks the images (tests may run alone or in any
    order), else shown at once."""
    at = open_lesson(key)
    assert not at.exception, at.exception
    if run_button(at) is not None:
        at = run_button(at).click().run()
        assert not at.exception, at.exception
        assert any("images generated" in s.value for s in at.success)
    assert not at.error, [e.value for e in at.error]
    return at


def chart(at: AppTest, title: str) -> tuple[dict, pd.DataFrame]:
    """(Vega-Lite spec, the data rows of its main dataset) of the chart titled `title`."""
    for spec, proto in app_support.vega_charts(at):
        if app_support.chart_title(spec) == title:
            return spec, max(app_support.chart_frames(proto), key=len)
    raise AssertionError(f"No chart titled {title!r}")


def try_it(at: AppTest) -> tuple[str, dict[str, str]]:
    link = next(link for link in at.get("page_link") if link.proto.label == "Try it yourself")
    return link.proto.page, dict(parse_qsl(link.proto.query_string, keep_blank_values=True))


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


@contextlib.contextmanager
def no_generation(images_embedded: bool = True, texts_embedded: bool = False):
    """Fail if a generator loads or an image is generated (or, when asked, an image or a text is embedded)."""
    guards = [("app.ui.load_pipeline", "a generator was loaded"),
              ("core.pipeline.engine.generate_missing", "generation ran")]
    if images_embedded:
        guards.append(("core.pipeline.embed.encode_preprocessed", "an image was embedded again"))
    if texts_embedded:
        guards.append(("core.pipeline.embed.embed_texts", "a text was embedded again"))
    with contextlib.ExitStack() as stack:
        for target, message in guards:
            stack.enter_context(mock.patch(target, side_effect=AssertionError(message)))
        yield


# -- what core computes from the same cached images (a CLIP that must not be needed) ---------------------------------
def _no_clip():
    raise AssertionError("core needed CLIP: the lesson should have cached every embedding")


class Cached:
    """The lesson's images, natural photos and embeddings, read from the cache exactly as core reads them."""

    def __init__(self, key: str, app_cache, imagenette_dir, tiny_folder):
        self.lesson = LESSONS[key]
        self.exp = self.lesson.experiment.with_models(TINY_RANDOM, TINY_RANDOM)
        self.cache = Cache(app_cache)
        self.ckey = clip_key(CLIP_MODELS[TINY_RANDOM])
        self.folder = NaturalFolder(imagenette_dir)
        cpu = DeviceSpec("cpu", "float32")
        self.sets = []
        for req in self.exp.requests(SOURCE):
            images = cached_images(resolve_settings(req, tiny_folder, cpu), req.prompt, req.seeds, self.cache)
            assert len(images) == req.n
            self.sets.append(synthetic_set(images))

    def embed(self, images):
        return embed_set(self.cache, self.ckey, images, _no_clip)

    def natural(self, class_name: str):
        return natural_set(self.folder.images(class_name), n=self.exp.n, seed=NATURAL_SEED)


@pytest.fixture
def cached(app_cache, imagenette_dir, tiny_folder):
    return lambda key: Cached(key, app_cache, imagenette_dir, tiny_folder)


# -- every lesson on an empty cache: the question and the button, nothing generated on opening -------------------------
def test_each_lesson_asks_its_question_and_waits_for_one_click(tmp_path, monkeypatch, tiny_folder):
    fresh = tmp_path / "empty-cache"
    shutil.copytree(tiny_folder, fresh / "models" / tiny_folder.name)
    monkeypatch.setenv("DDL_CACHE_DIR", str(fresh))
    for key, lesson in LESSONS.items():
        with no_generation():
            at = open_lesson(key)
        assert not at.exception, (key, at.exception)
        assert not at.error and not at.warning, (key, texts(at.error), texts(at.warning))
        assert at.main.title[0].value == lesson.question
        assert at.main.caption[0].value == f"Lesson {lesson.number} of 5 · {lesson.finding}"
        button = run_button(at)
        assert button is not None and button.proto.type == "primary"
        total = sum(r.n for r in lesson.experiment.requests())
        assert f"One click makes {total} images with tiny-random" in texts(at.caption)
        assert not [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]  # no answer before the click
        page, params = try_it(at)
        assert page == lesson.full_page.removeprefix("pages/").removesuffix(".py")
        assert params["generator"] == TINY_RANDOM and params["clip"] == TINY_RANDOM
        # The URL keeps the models, so a reload or a shared link runs the same experiment.
        assert at.query_params["generator"] == TINY_RANDOM and at.query_params["clip"] == TINY_RANDOM
    assert Cache(fresh).count_images() == 0


def test_models_that_cannot_be_had_are_named_before_the_run_and_the_way_out_stays(tmp_path, monkeypatch):
    """Offline, with the lesson's real models not downloaded: one click names both the generator and CLIP at once
    (no run first), and the Run button and "Try it yourself" stay on the page."""
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = open_lesson("ambiguity", {"generator": "sd-turbo", "clip": "ViT-B-32/laion2b"})
    assert not at.exception, at.exception
    with mock.patch("app.ui.runs", side_effect=AssertionError("the run started")):
        at = run_button(at).click().run()
    assert not at.exception, at.exception
    errors = texts(at.error)
    assert "Generator:" in errors and "CLIP:" in errors and "Settings used" in errors
    assert run_button(at) is not None
    assert any(link.proto.label == "Try it yourself" for link in at.get("page_link"))
    # The message sends the presenter to "Settings used": it opens by itself, its model switch in view.
    settings = next(e for e in at.expander if e.label == "Settings used")
    assert settings.proto.expanded
    assert [s.key for s in settings.selectbox] == ["lesson_generator_input", "lesson_clip_input"]


def test_settings_used_starts_collapsed_when_nothing_went_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "empty-cache"))
    at = open_lesson("ambiguity", {"generator": "sd-turbo", "clip": "ViT-B-32/laion2b"})
    assert not at.exception and not at.error
    assert not next(e for e in at.expander if e.label == "Settings used").proto.expanded


# -- one lesson after another: the click, the chart's numbers, the full page's numbers ---------------------------------
def test_ambiguity_lesson_shares_match_core_and_the_ambiguity_page(cached):
    lesson = LESSONS["ambiguity"]
    at = ran("ambiguity")
    _, rows = chart(at, lesson.chart_title)
    data = cached("ambiguity")
    req = data.exp.ambiguity_request()
    sense_vectors = class_vectors(data.cache, data.ckey, [s.text for s in req.senses], _no_clip)
    expected = share_rows(req.variants(), [assign(data.embed(s), sense_vectors) for s in data.sets],
                          [s.name for s in req.senses])
    assert len(rows) == 3 * 2 and list(rows["n"]) == [6] * 6
    columns = ["variant", "sense", "share", "low", "high"]  # the chart's names for the interval
    expected = expected.rename(columns={"95% low": "low", "95% high": "high"})
    pd.testing.assert_frame_equal(rows[columns], expected[columns], check_dtype=False)
    assert "'a photo of a crane': CLIP assigns" in texts(at.markdown)
    assert len(at.get("image")) == 6  # the bare prompt's images, grouped by sense

    page, params = try_it(at)
    assert (page, params) == ("ambiguity", try_it_params(lesson, data.exp, SOURCE))
    with no_generation(texts_embedded=True):
        full = open_page(lesson.full_page, params)
    assert not full.exception, full.exception
    assert not full.success and not full.warning and not full.error
    _, page_rows = chart(full, SHARES_TITLE)
    pd.testing.assert_frame_equal(page_rows[columns], rows[columns])


def test_adherence_lesson_scores_match_core_and_the_adherence_page(cached):
    lesson = LESSONS["adherence"]
    at = ran("adherence")
    _, rows = chart(at, lesson.chart_title)
    data = cached("adherence")
    prompt = text_vector(data, data.exp.prompt)
    natural = data.natural("tench")
    expected = score_rows({"synthetic": (data.sets[0].labels, clip_scores(data.embed(data.sets[0]), prompt)),
                           "natural": (natural.labels, clip_scores(data.embed(natural), prompt))})
    assert len(rows) == 16 and set(rows["source"]) == {"synthetic", "natural"}
    pd.testing.assert_frame_equal(rows[["source", "label", "CLIPScore"]], expected[["source", "label", "CLIPScore"]])
    assert "Mean CLIPScore of the generated images" in texts(at.markdown)
    assert len(at.get("image")) == 16

    page, params = try_it(at)
    assert page == "adherence" and params["ref"] == SOURCE and params["ref_class"] == "tench"
    with no_generation():  # its confusable-class section may embed class names: texts, not images
        full = open_page(lesson.full_page, params)
    assert not full.exception, full.exception
    assert not full.success and not full.error
    _, page_rows = chart(full, HISTOGRAM_TITLE)
    pd.testing.assert_frame_equal(page_rows[["source", "label", "CLIPScore"]], rows[["source", "label", "CLIPScore"]])


def text_vector(data: Cached, text: str) -> np.ndarray:

    return text_embeddings(data.cache, data.ckey, [text], _no_clip)[0]


def test_diversity_lesson_statistics_match_core_and_the_diversity_page(cached):
    lesson = LESSONS["diversity"]
    at = ran("diversity")
    _, rows = chart(at, lesson.chart_title)
    data = cached("diversity")
    expected = {"synthetic": diversity_statistics(data.embed(data.sets[0])),
                "natural": diversity_statistics(data.embed(data.natural("tench")))}
    got = {(r["source"], r["statistic"]): (r["value"], r["low"], r["high"], r["n"]) for _, r in rows.iterrows()}
    assert set(got) == {(s, name) for s in ("synthetic", "natural") for name in lesson.statistics}
    for source, estimates in expected.items():
        for e in estimates:
            if e.name in lesson.statistics:
                assert got[(source, e.name)] == (pytest.approx(e.value), pytest.approx(e.low),
                                                 pytest.approx(e.high), 8)
    assert "Synthetic Vendi" in texts(at.markdown)

    page, params = try_it(at)
    assert page == "diversity"
    with no_generation():
        full = open_page(lesson.full_page, params)
    assert not full.exception, full.exception
    assert not full.success and not full.warning and not full.error
    table = app_support.table_elements(full)[0].value
    for _, r in table[table["statistic"].isin(lesson.statistics)].iterrows():
        assert got[(r["source"], r["statistic"])][0] == pytest.approx(r["value"])


def test_concept_lesson_recognition_matches_core_and_the_adherence_rank_of_its_weakest_class(cached):
    lesson = LESSONS["concept"]
    at = ran("concept")
    _, rows = chart(at, lesson.chart_title)
    data = cached("concept")
    names = [c.replace("_", " ") for c in data.exp.candidates]
    vectors = class_vectors(data.cache, data.ckey, names, _no_clip)
    expected = recognition_rows(data.exp.classes, {"synthetic": [data.embed(s) for s in data.sets],
                                                   "natural": [data.embed(data.natural(c)) for c in data.exp.classes]},
                                vectors, data.exp.candidates)
    pd.testing.assert_frame_equal(rows[list(expected.columns)], expected, check_dtype=False)
    assert list(expected["n"]) == [6] * 8
    assert "as their own class among 10 class names (chance 10%)" in texts(at.markdown)

    focus = weakest_class(expected)
    page, params = try_it(at)
    assert page == "adherence" and params["intended"] == focus and params["prompt"] == f"a photo of a {focus}"
    with no_generation():  # the page also scores the prompt (a text the lesson never needed)
        full = open_page(lesson.full_page, params)
    assert not full.exception, full.exception
    assert not full.success and not full.error
    ranks = next(d.value for d in app_support.table_elements(full) if "statistic" in d.value.columns)
    top1 = ranks[ranks["statistic"] == "top-1 (intended class ranked first)"].set_index("source")
    mine = expected[expected["class"] == focus].set_index("source")
    for source in ("synthetic", "natural"):
        assert top1.loc[source, "value"] == pytest.approx(mine.loc[source, "value"])
        assert top1.loc[source, "n"] == mine.loc[source, "n"] == 6


def test_concept_lesson_chart_draws_each_share_with_its_wilson_interval():
    """Lesson 4 shows intervals, as the other lessons do: a rule from the Wilson interval's low to its high end
    behind each share, of non-zero width wherever there are images (a Wilson interval never has zero width)."""
    lesson = LESSONS["concept"]
    spec, rows = chart(ran("concept"), lesson.chart_title)
    layers = spec["layer"]
    rules = [la for la in layers if (la["mark"]["type"] if isinstance(la["mark"], dict) else la["mark"]) == "rule"
             and la.get("encoding", {}).get("x2")]
    assert [(r["encoding"]["x"]["field"], r["encoding"]["x2"]["field"]) for r in rules] == [("low", "high")]
    drawn = rows[rows["n"] > 0]
    assert len(drawn) == 8
    assert (drawn["low"] < drawn["high"]).all()
    assert ((drawn["low"] <= drawn["value"]) & (drawn["value"] <= drawn["high"])).all()
    assert (drawn["low"] >= 0).all() and (drawn["high"] <= 1).all()  # shares: the interval stays in [0, 1]
    for r in drawn.itertuples():  # the Wilson interval of recognised / n, as core.analysis.stats computes it
        assert (r.low, r.high) == pytest.approx(wilson_interval(r.recognised, r.n))


def test_geometry_lesson_closeness_matches_core_and_the_clip_geometry_page(cached):
    lesson = LESSONS["geometry"]
    at = ran("geometry")
    _, rows = chart(at, lesson.chart_title)
    data = cached("geometry")
    prompts = [r.prompt for r in data.exp.requests(SOURCE)]
    expected = closeness_rows(data.exp.classes, {"synthetic": [data.embed(s) for s in data.sets],
                                                 "natural": [data.embed(data.natural(c)) for c in data.exp.classes]},
                              text_embeddings(data.cache, data.ckey, prompts, _no_clip))
    pd.testing.assert_frame_equal(rows[list(expected.columns)], expected, check_dtype=False)
    assert "classes the generated images' centre sits closer to the prompt" in texts(at.markdown)

    page, params = try_it(at)
    assert page == "clip_geometry" and params["classes"] == ",".join(data.exp.classes)
    with no_generation(texts_embedded=True):
        full = open_page(lesson.full_page, params)
    assert not full.exception, full.exception
    assert not full.success and not full.warning and not full.error
    per_class = next(d.value for d in app_support.table_elements(full)
                     if "cos(prompt, centroid) (synthetic)" in d.value.columns)
    for _, r in expected.iterrows():
        shown = per_class.set_index("class").loc[r["class"].replace(" ", "_"), f"cos(prompt, centroid) ({r['source']})"]
        assert shown == f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"


# -- the cache, the models, bad links ----------------------------------------------------------------------------------
def test_a_cached_lesson_answers_at_once_without_a_click_or_a_model():
    ran("diversity")
    with no_generation(texts_embedded=True):
        at = open_lesson("diversity")
    assert not at.exception, at.exception
    assert run_button(at) is None and not at.success and not at.warning and not at.error
    assert "From the cache: these 8 images were made earlier" in texts(at.caption)
    chart(at, LESSONS["diversity"].chart_title)
    assert [h.value for h in at.subheader if h.value == "What to look for"]
    assert at.markdown  # the bullets
    bullets = next(m.value for m in at.markdown if m.value.startswith("- "))
    assert bullets.count("\n- ") + 1 == len(LESSONS["diversity"].look_for)


def test_models_chosen_in_settings_go_to_the_url_and_to_the_next_lesson():
    at = open_lesson("adherence", {})  # the lesson's own real models
    assert not at.exception and not at.error  # not downloaded here: the button says so, nothing is looked up
    assert "The first run downloads SD-Turbo" in texts(at.caption)
    assert "generator" not in at.query_params
    at.selectbox(key="lesson_generator_input").set_value(TINY_RANDOM).run()
    at.selectbox(key="lesson_clip_input").set_value(TINY_RANDOM).run()
    assert not at.exception
    assert at.query_params["generator"] == TINY_RANDOM and at.query_params["clip"] == TINY_RANDOM
    assert "your choice" in at.table[0].value.loc["Generator", "where it comes from"]
    at.query_params.clear()  # the browser drops the query string on a page switch; the session remembers
    at.switch_page(LESSONS["concept"].page).run()
    assert not at.exception
    assert at.query_params["generator"] == TINY_RANDOM
    assert try_it(at)[1]["generator"] == TINY_RANDOM


def test_the_lessons_default_model_missing_offline_gets_a_message_not_a_traceback():
    at = open_lesson("ambiguity", {})
    at = run_button(at).click().run()
    assert not at.exception, at.exception
    message = texts(at.error)
    assert "stabilityai/sd-turbo" in message and "tiny-random" in message  # what, and a way out
    # The way out stays in view: the button, the link, and the model switch in an open "Settings used".
    assert run_button(at) is not None
    assert any(link.proto.label == "Try it yourself" for link in at.get("page_link"))
    assert next(e for e in at.expander if e.label == "Settings used").proto.expanded


def test_bad_links_get_messages_and_the_lesson_still_works():
    at = open_lesson("geometry", {"generator": "nope", "clip": TINY_RANDOM, "ref": "folder:nowhere"})
    assert not at.exception, at.exception
    warnings = texts(at.warning)
    assert "'nope'" in warnings and "SD-Turbo" in warnings  # the lesson's own generator instead
    assert md_literal("folder:nowhere") in warnings and md_literal(SOURCE) in warnings  # quoted as text
    assert "generator" not in at.query_params and at.query_params["clip"] == TINY_RANDOM
    assert at.title[0].value == LESSONS["geometry"].question


def test_without_natural_photos_the_lesson_offers_imagenette_instead_of_a_button(monkeypatch):
    monkeypatch.delenv("DDL_NATURAL_ROOTS")  # and the test cache holds no Imagenette download
    at = open_lesson("adherence")
    assert not at.exception and not at.error
    assert "Imagenette" in at.info[0].value and "DDL_NATURAL_ROOTS" in at.info[0].value
    assert [b.label for b in at.main.button] == ["Download Imagenette"]  # no run button without the comparison
    assert try_it(at)[1]["ref"] == "imagenette"  # the full page offers the same download


def test_home_links_every_lesson_and_keeps_the_findings():
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [s.value for s in at.subheader][:5] == ["Lack of diversity", "Ambiguity", "Adherence to prompt",
                                                   "Inability to represent the concept", "Geometry of CLIP embeddings"]
    links = {link.proto.page: link.proto.label for link in at.get("page_link")}
    for lesson in LESSONS.values():
        assert lesson.url_path in links and lesson.question in links[lesson.url_path]
    assert {"diversity", "ambiguity", "adherence", "clip_geometry", "synthetic_vs_natural"} <= set(links)
    assert GENERATORS  # the registry the lessons draw their models from
