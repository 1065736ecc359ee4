"""Streamlit glue shared by the five lesson pages: a lesson from core.present.lessons becomes a presenter-friendly page.

Question (large) -> the experiment in one sentence -> "Settings used" (collapsed unless an error points there: every
setting and where it comes from; the generator and CLIP can be changed there, or through the `generator` / `clip` URL
parameters) -> one
button (absent when the cache already holds every image: the answer shows at once) -> the answer: one sentence,
the chart, what to look for, the images -> "Try it yourself" (the full page with the same settings, through
st.page_link's query_params).

The analyses are the full pages' own core functions and chart builders; this module only wires them to widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from app import form, ui
from app import report as ui_report
from core.analysis.adherence import score_reading, score_rows
from core.analysis.ambiguity import grouped_by_sense, senses_reading, share_rows
from core.analysis.classes import NATURAL_SEED
from core.analysis.diversity import diversity_reading, natural_set, synthetic_set, thumbnails
from core.analysis.stats import diversity_statistics
from core.analysis.zeroshot import assign, class_vectors, clip_scores, score_estimate
from core.pipeline import config
from core.pipeline.cache import Cache
from core.pipeline.embed import text_embeddings
from core.pipeline.generate import cached_alternatives
from core.pipeline.models import ModelUnavailableError, clip_key, generator_present, unavailable_models
from core.pipeline.natural import NaturalFolder, reference_sources
from core.pipeline.registry import CLIP_MODELS, GENERATORS
from core.present.charts import interval_chart, projector, score_histogram, statistics_chart, variant_shares_chart
from core.present.lessons import (
    FROM_PAPER,
    LAB_CHOICE,
    LESSONS,
    PAPER,
    PAPER_URL,
    Lesson,
    LessonExperiment,
    closeness_reading,
    closeness_rows,
    pick_natural_source,
    recognition_reading,
    recognition_rows,
    settings_table,
    summary_text,
    try_it_params,
    weakest_class,
)
from core.present.markup import md_list, md_literal
from core.present.report import report_file_stem

RUN_LABEL = "Run the experiment"
TRY_IT_LABEL = "Try it yourself"
STRIP_SIZE = 160  # px thumbnails
STRIP_PER_ROW = 8  # the same image size in every strip; 8 still read on a 1024 px projector
MODEL_PARAMS = {"generator": GENERATORS, "clip": CLIP_MODELS}

# Large type for a projector, scoped to the lesson pages: the <style> lives in this page's element tree, so it goes
# when the page does. Selectors are Streamlit 1.67's test ids.
STYLE = """<style>
[data-testid="stMain"] h1 { font-size: 2.2rem; line-height: 1.2; }
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li { font-size: 1.3rem; line-height: 1.5; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1rem; }
[data-testid="stMain"] [data-testid="stBaseButton-primary"] { font-size: 1.3rem; min-height: 3rem;
                                                               padding: 0.4rem 1.6rem; }
[data-testid="stMain"] [data-testid="stBaseButton-primary"] p { font-size: 1.3rem; }
[data-testid="stMain"] [data-testid="stPageLink"] p { font-size: 1.3rem; font-weight: 600; }
[data-testid="stMain"] [data-testid="stExpander"] p, [data-testid="stMain"] [data-testid="stExpander"] td,
[data-testid="stMain"] [data-testid="stExpander"] th { font-size: 1rem; }
</style>"""


# -- models: lesson default, the link, or the session's choice ---------------------------------------------------------
def _memory_key(name: str) -> str:
    return f"lesson_models_{name}"


def _choose_models(lesson: Lesson) -> tuple[dict[str, str], list[str], bool]:
    """({generator, clip}, warnings, whether anything differs from the lesson's default). The link's value wins, then
    the choice made on another lesson in this session, then the lesson's own. Reads only: ui.start_page() may rerun
    the script once, and the URL must still hold what the link said then (see _keep_models)."""
    chosen, notes = {}, []
    for name, registry in MODEL_PARAMS.items():
        default = getattr(lesson.experiment, name)
        raw = st.query_params.get(name)
        remembered = st.session_state.get(_memory_key(name))
        value = next((v for v in (raw, remembered) if v in registry), default)
        if raw is not None and raw not in registry:
            notes.append(f"The link's {name} '{raw}' is not one the lab knows ({', '.join(registry)}): "
                         f"{registry[value].label} is used.")
        chosen[name] = value
    return chosen, notes, chosen != {name: getattr(lesson.experiment, name) for name in MODEL_PARAMS}


def _keep_model(name: str, value: str, default: str) -> None:
    """Remember the choice for the other lessons and write it to the URL (a reload or a shared link keeps it)."""
    st.session_state[_memory_key(name)] = value
    if value == default:
        st.query_params.pop(name, None)
    else:
        st.query_params[name] = value


def _keep_models(lesson: Lesson, models: dict[str, str]) -> None:
    for name, value in models.items():
        _keep_model(name, value, getattr(lesson.experiment, name))


def _model_changed(name: str, widget_key: str, default: str) -> None:
    """The Settings box's callback (runs before the rerun, which then reads the URL)."""
    _keep_model(name, st.session_state[widget_key], default)


# -- natural photos --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Natural:
    source: str  # a core.pipeline.natural.reference_sources id (for the full pages' links)
    label: str
    folder: NaturalFolder


def _natural(exp: LessonExperiment) -> tuple[Natural | None, bool]:
    """(the natural-photo source holding every class the lesson needs, ready). Not ready: the page said why (and
    offered the Imagenette download)."""
    needed = exp.natural_classes()
    if not needed:
        return None, True
    sources = reference_sources(config.cache_dir(), config.natural_roots())
    available = {}
    for sid, (_, folder) in sources.items():
        try:
            available[sid] = folder.classes() if folder.root.is_dir() else []
        except (FileNotFoundError, ValueError):
            available[sid] = []
    source, problems = pick_natural_source(available, needed, st.query_params.get("ref"))
    for problem in problems:
        st.warning(md_literal(problem))
    if source is None:
        imagenette = sources["imagenette"][1]
        form.offer_imagenette(imagenette.root.parent, intro=(
            f"This lesson compares with real photos of {md_list(c.replace('_', ' ') for c in needed)}. Imagenette "
            f"(fast.ai's 10-class ImageNet subset, 160 px, about 100 MB) is not downloaded yet; or list your own "
            f"folders, laid out `<folder>/<class>/<image>`, in DDL_NATURAL_ROOTS."))
        return None, False
    label = "Imagenette" if source == "imagenette" else f"folder {sources[source][1].root.name}"
    return Natural(source, label, sources[source][1]), True


def _natural_set(natural: Natural, class_name: str, n: int):
    """The same fixed sample the full pages draw: n photos of the class, seed 0."""
    return natural_set(natural.folder.images(class_name), n=n, seed=NATURAL_SEED)


# -- the run: one click, or nothing when the cache has it ------------------------------------------------------------
def _runs(exp: LessonExperiment, requests, errors: list[str]) -> list[ui.Run] | None:
    """The lesson's runs when the cache holds every image (at once, no click), or after the click made the missing
    ones; None while the button waits, or after an error (shown, and added to `errors`). Before the click, ui.runs
    is asked only when it can answer without downloading: the weights are here, or every run has cached images of
    its recipe (e.g. from a demo pack made on a GPU machine): opening a lesson must never start a multi-GB
    download."""
    preset = GENERATORS[exp.generator]
    present = generator_present(preset)
    total = sum(r.n for r in requests)
    stored = ui.cache().all_settings()
    answerable = present or all(cached_alternatives(r, preset, stored) for r in requests)
    runs = ui.runs(requests, generate=False) if answerable else None
    missing = sum(r.missing for r in runs) if runs is not None else total
    if missing == 0:
        st.caption(f"From the cache: these {total} images were made earlier with these settings (here, or on the "
                   f"machine a demo pack came from).")
        return runs
    slot = st.empty()
    with slot.container():
        clicked = st.button(RUN_LABEL, type="primary", key="lesson_run")
        reused = f", reusing {total - missing} from the cache" if total > missing else ""
        download = "" if present else f" The first run downloads {md_literal(preset.label)}'s weights."
        st.caption(f"One click makes {missing} image{'s' if missing != 1 else ''} with {md_literal(preset.label)}"
                   f"{reused}."
                   f"{download}")
    if not clicked:
        return None
    # Every model the run needs, checked before it starts (a missing CLIP used to show after the generation). The
    # button and the "Try it yourself" link stay; the models can be changed under "Settings used".
    missing_models = unavailable_models(preset, CLIP_MODELS[exp.clip])
    if missing_models:
        for problem in missing_models:
            st.error(md_literal(problem) + " Change the models under *Settings used* above, e.g. to tiny-random.")
        errors.extend(missing_models)
        return None
    slot.empty()
    runs = ui.runs(requests, generate=True)
    if sum(r.missing for r in runs):
        st.warning("Some images are still missing (the run was cancelled?). Press the button again: finished "
                   "images are kept.")
        return None
    return runs


# -- the answers: one function per lesson, each the full page's own analysis -----------------------------------------
@dataclass
class Answer:
    reading: str  # one sentence, honest about the interval
    chart: object  # an Altair chart
    table: pd.DataFrame  # the numbers behind the chart
    strips: list[tuple[str, list[bytes], list[str]]] = field(default_factory=list)  # (heading, jpegs, captions)
    focus: str | None = None  # the class "Try it yourself" opens, where the full page shows one


@dataclass(frozen=True)
class Context:
    """What every answer reads: the lesson, its experiment (models included), its runs and natural photos."""

    lesson: Lesson
    exp: LessonExperiment
    runs: list
    natural: Natural | None
    cache: Cache
    out: ui_report.Output  # the page's output: drawn and recorded in the lesson's report

    @property
    def ckey(self) -> str:
        return clip_key(CLIP_MODELS[self.exp.clip])

    def get_clip(self):
        """CLIP, loaded only when an image or a text is not in the cache yet."""
        return ui.clip(self.exp.clip)


@st.cache_data(show_spinner="Computing statistics...", max_entries=32)
def _statistics(embeddings: np.ndarray):
    return diversity_statistics(embeddings)


@st.cache_data(show_spinner="Measuring the geometry (bootstrap intervals)...", max_entries=16)
def _closeness(classes: tuple, syn: list, nat: list, texts: np.ndarray) -> pd.DataFrame:
    return closeness_rows(list(classes), {"synthetic": syn, "natural": nat}, texts)


def _strip(ctx: Context, images, captions: list[str], heading: str):
    return heading, thumbnails(ctx.cache, images, STRIP_SIZE), captions


def _ambiguity(ctx: Context) -> Answer:
    req = ctx.exp.ambiguity_request()
    variants, names = req.variants(), [s.name for s in req.senses]
    sets = [synthetic_set(r.images) for r in ctx.runs]
    sense_vectors = class_vectors(ctx.cache, ctx.ckey, [s.text for s in req.senses], ctx.get_clip)
    assignments = [assign(ui.embed(ctx.cache, ctx.ckey, s, ctx.get_clip), sense_vectors) for s in sets]
    shares = share_rows(variants, assignments, names)
    jpegs = thumbnails(ctx.cache, sets[0], STRIP_SIZE)
    strips = [(f"'{md_literal(variants[0].prompt)}' drawn as **{md_literal(sense)}**: {len(members)} of "
               f"{len(sets[0])} images",
               [jpegs[i] for i in members], [sets[0].labels[i] for i in members])
              for sense, members in grouped_by_sense(assignments[0], names)]
    return Answer(senses_reading(variants[0].prompt, assignments[0], names), variant_shares_chart(shares),
                  shares, strips)


def _synthetic_and_natural(ctx: Context):
    synthetic = synthetic_set(ctx.runs[0].images)
    natural = _natural_set(ctx.natural, ctx.exp.natural_class, len(synthetic))
    return (synthetic, ui.embed(ctx.cache, ctx.ckey, synthetic, ctx.get_clip),
            natural, ui.embed(ctx.cache, ctx.ckey, natural, ctx.get_clip))


def _adherence(ctx: Context) -> Answer:
    synthetic, syn_emb, natural, nat_emb = _synthetic_and_natural(ctx)
    prompt_vector = text_embeddings(ctx.cache, ctx.ckey, [ctx.exp.prompt], ctx.get_clip)[0]
    syn_scores, nat_scores = clip_scores(syn_emb, prompt_vector), clip_scores(nat_emb, prompt_vector)
    table = score_rows({"synthetic": (synthetic.labels, syn_scores), "natural": (natural.labels, nat_scores)})
    reading = score_reading(score_estimate("mean CLIPScore", syn_scores), score_estimate("mean CLIPScore", nat_scores))
    return Answer(reading, score_histogram(table), table, [
        _strip(ctx, synthetic, [f"{s:.3f}" for s in syn_scores], "Generated, with each image's CLIPScore"),
        _strip(ctx, natural, [f"{s:.3f}" for s in nat_scores], "Real photos, with each photo's CLIPScore")])


def _diversity(ctx: Context) -> Answer:
    synthetic, syn_emb, natural, nat_emb = _synthetic_and_natural(ctx)
    stats = {"synthetic": _statistics(syn_emb), "natural": _statistics(nat_emb)}
    shown = [(source, e) for source, estimates in stats.items() for e in estimates
             if e.name in ctx.lesson.statistics]
    table = pd.DataFrame([{"source": source, "statistic": e.name, "value": e.value, "95% low": e.low,
                           "95% high": e.high, "n": e.n} for source, e in shown])
    # One panel under the other, each as wide as the column (Streamlit stretches them), taller for a projector.
    chart = statistics_chart(shown, panel_height=80)
    return Answer(diversity_reading(stats["synthetic"], stats["natural"]), chart, table, [
        _strip(ctx, synthetic, synthetic.labels, f"Generated: '{md_literal(ctx.exp.prompt)}'"),
        _strip(ctx, natural, ["" for _ in natural.labels], f"Real photos ({md_literal(ctx.natural.label)})")])


def _per_class(ctx: Context) -> tuple[list, list]:
    """One (n, d) array per class for each source: the generated images and the fixed natural sample."""
    syn, nat = [], []
    for name, run in zip(ctx.exp.classes, ctx.runs):
        syn.append(ui.embed(ctx.cache, ctx.ckey, synthetic_set(run.images), ctx.get_clip))
        nat.append(ui.embed(ctx.cache, ctx.ckey, _natural_set(ctx.natural, name, ctx.exp.n), ctx.get_clip))
    return syn, nat


def _concept(ctx: Context) -> Answer:
    syn, nat = _per_class(ctx)
    candidates = ctx.exp.candidates
    vectors = class_vectors(ctx.cache, ctx.ckey, [c.replace("_", " ") for c in candidates], ctx.get_clip)
    rows = recognition_rows(ctx.exp.classes, {"synthetic": syn, "natural": nat}, vectors, candidates)
    chart = interval_chart(rows, "class", colour="source", reference=1 / len(candidates), width=440)
    return Answer(recognition_reading(rows, len(candidates)), chart, rows,
                  focus=_folder_name(ctx, weakest_class(rows)))


def _folder_name(ctx: Context, display: str | None) -> str | None:
    return next((c for c in ctx.exp.classes if c.replace("_", " ") == display), None)


def _geometry(ctx: Context) -> Answer:
    syn, nat = _per_class(ctx)
    spec = ctx.exp.class_spec(ctx.natural.source)
    prompts = spec.prompts()
    texts = text_embeddings(ctx.cache, ctx.ckey, [prompts[c] for c in ctx.exp.classes], ctx.get_clip)
    rows = _closeness(tuple(ctx.exp.classes), syn, nat, texts)
    chart = interval_chart(rows, "class", colour="source", width=440)
    return Answer(closeness_reading(rows), chart, rows)


ANSWERS: dict[str, Callable[[Context], Answer]] = {
    "ambiguity": _ambiguity, "adherence": _adherence, "diversity": _diversity, "concept": _concept,
    "geometry": _geometry,
}


def _show_answer(ctx: Context) -> Answer | None:
    try:
        with st.spinner("Embedding with CLIP (cached embeddings are read, new ones computed)..."):
            answer = ANSWERS[ctx.lesson.key](ctx)
    except (ModelUnavailableError, ValueError, OSError) as exc:
        st.error(md_literal(exc))
        return None
    chart = projector(answer.chart, ctx.lesson.chart_title)
    out = ctx.out
    out.text(f"**{md_literal(answer.reading)}**")  # may quote a prompt or a folder
    out.chart(chart, ctx.lesson.chart_title, key="lesson_chart", width="stretch")
    out.heading("What to look for")
    out.text("\n".join(f"- {bullet}" for bullet in ctx.lesson.look_for))
    for heading, jpegs, captions in answer.strips:
        out.images(jpegs, captions, title_md=heading, per_row=STRIP_PER_ROW)
    numbers = st.expander("The numbers behind the chart")
    if {"value", "95% low", "95% high", "n"} <= set(answer.table.columns):  # estimates: value [low, high] with n
        out.numbers(answer.table, "The numbers behind the chart", table=answer.table, dataframe=True, where=numbers)
    else:
        out.table(answer.table, "The numbers behind the chart", where=numbers)
    return answer


# -- the page ----------------------------------------------------------------------------------------------------------
def _settings(lesson: Lesson, exp: LessonExperiment, natural: Natural | None, chosen: bool, expanded: bool) -> None:
    """The settings box: collapsed, or open when an error on the page points to the model switch inside it."""
    with st.expander("Settings used", expanded=expanded):
        left, right = st.columns(2)
        for column, (name, registry), label in zip((left, right), MODEL_PARAMS.items(), ("Generator", "CLIP model")):
            widget = f"lesson_{name}_input"
            st.session_state[widget] = getattr(exp, name)  # the URL / session decides; the box shows it
            column.selectbox(label, list(registry), key=widget, format_func=lambda k, r=registry: r[k].label,
                             on_change=_model_changed,
                             args=(name, widget, getattr(lesson.experiment, name)))
        st.caption("The lesson's defaults are real models (their effects are the point). 'tiny-random' needs no "
                   "download: an offline test model whose images are noise.")
        rows = settings_table(lesson, exp, natural.label if natural else "", chosen)
        st.table(pd.DataFrame([{"setting": s.name, "value": s.value, "where it comes from": s.origin}
                               for s in rows]).set_index("setting"))


def show(key: str) -> None:
    """The whole lesson page for LESSONS[key]."""
    lesson = LESSONS[key]
    models, notes, chosen = _choose_models(lesson)
    ui.remember_selection(models["generator"], models["clip"])  # the sidebar shows what the lesson uses
    ui.start_page()
    _keep_models(lesson, models)
    st.html(STYLE)
    st.caption(f"Lesson {lesson.number} of {len(LESSONS)} · {lesson.finding}")
    st.title(lesson.question)
    for note in notes:
        st.warning(md_literal(note))
    exp = lesson.experiment.with_models(models["generator"], models["clip"])
    natural, ready = _natural(exp)
    st.markdown(summary_text(lesson, exp, natural.label if natural else "Imagenette"))
    # Before the run: a model that cannot be had stops the page with its message, and this is where to change it.
    # The box is filled once the run is decided, so that it opens by itself after an error (it was left collapsed,
    # the model switch hidden, under a message that pointed to it).
    settings_box = st.container()
    answer, out, runs, errors = None, None, [], []
    if ready:
        errors = exp.problems(natural.folder.classes() if natural else None)
        for problem in errors:
            st.error(md_literal(problem))
        if not errors:
            runs = _runs(exp, exp.requests(natural.source if natural else "imagenette"), errors)
            if runs is not None:
                out = ui_report.start(lesson.question, f"Lesson {lesson.number}: {lesson.finding}", lesson.url_path)
                answer = _show_answer(Context(lesson, exp, runs, natural, ui.cache(), out))
                if answer is None:  # the analysis failed (e.g. CLIP could not be loaded): said above
                    errors.append("the answer")
    with settings_box:
        _settings(lesson, exp, natural, chosen, expanded=bool(errors))
    focus = answer.focus if answer else None
    params = try_it_params(lesson, exp, natural.source if natural else "imagenette", focus)
    shown = f" for '{focus.replace('_', ' ')}'" if focus else ""
    st.page_link(lesson.full_page, label=TRY_IT_LABEL, icon="🔬", query_params=params)
    st.caption(f"Opens the {lesson.full_page_title} page{shown} with this lesson's settings: change anything there, "
               f"the images made here are reused.")
    st.caption(f"The finding: {PAPER}, [arXiv 2311.00056]({PAPER_URL}). The paper names it; this experiment and every "
               f"setting listed under 'Settings used' are the {LAB_CHOICE}.")
    if answer is not None:
        rows = settings_table(lesson, exp, natural.label if natural else "", chosen)
        out.settings({row.name: row.value for row in rows})  # the page: its 'Settings used' table
        out.provenance([run.settings for run in runs], CLIP_MODELS[exp.clip], clip_key(CLIP_MODELS[exp.clip]))
        out.lab_defaults({row.name: f"{row.value} ({row.origin})" for row in rows if row.origin != FROM_PAPER})
        out.note(f"Finding: {PAPER}, arXiv 2311.00056 ({PAPER_URL}).")  # the page: the caption above, with its link
        out.offer(report_file_stem(lesson.url_path, exp.generator))
