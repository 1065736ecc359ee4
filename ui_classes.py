"""Streamlit glue shared by the three class-list pages (Synthetic vs Natural, Train on synthetic, CLIP geometry):
the experiment form, URL <-> settings, loading (synthetic images through ui.runs, natural photos, embeddings with
progress), the "how many images" table, cached thumbnails and the charts these pages draw.

The logic lives in core (core.classes, core.compare, core.probe, core.geometry); this module only wires it to
widgets. Pages import this and `ui`, never each other.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import ui
from core import config
from core.charts import data_uri
from core.classes import (
    CLASS_TEMPLATES,
    DEFAULT_CLASS_TEMPLATE,
    MAX_NATURAL,
    MIN_PER_CLASS,
    NATURAL_SEED,
    ClassData,
    ClassListSpec,
    Experiment,
    default_classes,
    text_embeddings,
    validate_spec,
)
from core.diversity import THUMB_SIZE, embed_set, natural_set, synthetic_set
from core.generate import MAX_IMAGES
from core.models import ModelUnavailableError, clip_key
from core.natural import DownloadError, NaturalFolder, download_reference_set, open_rgb, reference_sources
from core.registry import CLIP_MODELS, DEFAULT_CLIP, GENERATORS
from core.stats import Estimate

SHARED_URL_KEY = "class_experiment_params"  # the experiment, shared by the three pages of this session
SOURCE_DOMAIN = ["synthetic", "natural", "prompt text"]
SOURCE_RANGE = ["#d62728", "#1f77b4", "#2ca02c"]
LAB_DEFAULTS_NOTE = ("Defaults (template, N, natural photos per class, generator steps/guidance/size from its preset, "
                     "CLIP model, k = 5, folds, splits, seeds) are the lab's own choice; the paper's settings are "
                     "unknown.")


# -- URL <-> session -------------------------------------------------------------------------------------------------

def restore_url(page_key: str) -> None:
    """A URL without an experiment (a page switch drops the query string): bring back this page's last settings,
    else the experiment another of the three pages ran in this session."""
    if "classes" in st.query_params:
        return
    saved = st.session_state.get(f"{page_key}_url") or st.session_state.get(SHARED_URL_KEY)
    if saved:
        st.query_params.from_dict(saved)


def remember_url(page_key: str) -> None:
    params = st.query_params.to_dict()
    st.session_state[f"{page_key}_url"] = params
    if "classes" in params:
        st.session_state[SHARED_URL_KEY] = {k: params[k] for k in ClassListSpec.PARAMS if k in params}


def url_choice(name: str, options: list, default):
    """The URL's value of `name` if it is one of `options`; a tampered value gets a warning and the default."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    for option in options:
        if str(option) == raw:
            return option
    st.warning(f"The link's '{name}' is {raw!r}, not one of {', '.join(map(str, options))}: {default} is used.")
    return default


def url_number(name: str, default: float, low: float, high: float, kind=float):
    raw = st.query_params.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        st.warning(f"The link's '{name}' is {raw!r}, not a number from {low:g} to {high:g}: {default} is used.")
        return default
    return value


def index_of(options: list, value, fallback) -> int:
    return options.index(value) if value in options else options.index(fallback)


# -- the form and the loading ---------------------------------------------------------------------------------------

def _default_source(sources: dict[str, tuple[str, NaturalFolder]]) -> str:
    """Imagenette if downloaded, else the first extra folder that exists, else Imagenette (offers the download)."""
    if sources["imagenette"][1].root.is_dir():
        return "imagenette"
    for sid, (_, folder) in sources.items():
        if sid.startswith("folder:") and folder.root.is_dir():
            return sid
    return "imagenette"


def _classes_of(folder: NaturalFolder) -> list[str]:
    try:
        return folder.classes()
    except (FileNotFoundError, ValueError):
        return []


def experiment(page_key: str, page_params: tuple[str, ...] = (), min_classes: int = 1) -> Experiment:
    """Draw the experiment form, read the settings (URL or form), make or fetch the synthetic images, sample the
    natural photos, embed everything (with progress when something is new) and return the experiment. Stops the
    page (with a message saying what to do) when there is nothing to analyse yet."""
    restore_url(page_key)
    url_spec, url_problems = ClassListSpec.from_params(st.query_params.to_dict())
    for problem in url_problems:
        st.warning(problem)

    sources = reference_sources(config.cache_dir(), config.natural_roots())
    source_ids = list(sources)
    wanted_source = url_spec.source if url_spec else st.query_params.get("ref", _default_source(sources))
    if wanted_source not in sources:
        st.warning(f"The link names an unknown natural-photo source '{wanted_source}'; pick one below.")
        wanted_source = _default_source(sources)
    source_id = st.selectbox("Natural photos from", source_ids, index=index_of(source_ids, wanted_source,
                                                                              _default_source(sources)),
                             format_func=lambda k: sources[k][0])
    folder = sources[source_id][1]
    if source_id == "imagenette" and not folder.root.is_dir():
        st.info("Imagenette (fast.ai's 10-class ImageNet subset, 160 px, about 100 MB) is not downloaded yet.")
        if st.button("Download Imagenette"):
            bar = st.progress(0.0)
            try:
                download_reference_set(folder.root.parent, progress=lambda f, msg: bar.progress(f, text=msg))
                st.rerun()
            except DownloadError as exc:
                st.error(str(exc))
        st.stop()
    available = _classes_of(folder)
    if not available:
        st.warning(f"{sources[source_id][0]} has no class folders yet. Lay photos out as <folder>/<class>/<image> "
                   f"or choose another source.")
        st.stop()
    if url_spec and url_spec.source != source_id:
        url_spec = None  # another source was chosen: its classes differ, the form decides

    base = url_spec or ClassListSpec(default_classes(available), source_id)
    gen_keys, clip_keys, templates = list(GENERATORS), list(CLIP_MODELS), list(CLASS_TEMPLATES)
    with st.form(f"{page_key}-experiment"):
        chosen = st.multiselect("Classes", available, default=[c for c in base.classes if c in available],
                                format_func=lambda c: c.replace("_", " "))
        c1, c2, c3 = st.columns(3)
        template = c1.selectbox("Prompt template", templates, index=index_of(templates, base.template,
                                                                           DEFAULT_CLASS_TEMPLATE),
                                format_func=lambda k: CLASS_TEMPLATES[k].label)
        n = c2.number_input("Synthetic images per class (N)", 1, MAX_IMAGES, int(min(max(base.n, 1), MAX_IMAGES)))
        n_natural = c3.number_input("Natural photos per class", 1, MAX_NATURAL,
                                    int(min(max(base.n_natural, 1), MAX_NATURAL)))
        c4, c5, c6 = st.columns(3)
        generator = c4.selectbox("Generator", gen_keys, index=index_of(gen_keys, base.generator, gen_keys[0]),
                                 format_func=lambda k: GENERATORS[k].label, key="generator")
        clip_choice = c5.selectbox("CLIP model", clip_keys, index=index_of(clip_keys, base.clip, DEFAULT_CLIP),
                                   format_func=lambda k: CLIP_MODELS[k].label, key="clip")
        first_seed = c6.number_input("First seed", 0, 2**31 - 1, int(max(base.first_seed, 0)))
        submitted = st.form_submit_button("Generate missing images and analyse", type="primary")
    ui.remember_selection(generator, clip_choice)

    spec = url_spec
    if submitted:
        spec = ClassListSpec(tuple(chosen), source_id, template, int(n), int(n_natural), generator, clip_choice,
                             int(first_seed))
    if spec is None:
        st.info("Choose the classes and press **Generate missing images and analyse**. Images already in the "
                "cache are reused; only missing ones are generated.")
        st.stop()
    problems = validate_spec(spec, available, min_classes)
    if problems:
        for problem in problems:
            st.error(problem)
        st.stop()
    if submitted:
        extra = {k: st.query_params[k] for k in page_params if k in st.query_params}
        st.query_params.from_dict({**spec.to_params(), **extra})
    remember_url(page_key)
    return _load(spec, folder, generate=submitted, min_classes=min_classes)


def _load(spec: ClassListSpec, folder: NaturalFolder, generate: bool, min_classes: int) -> Experiment:
    runs = ui.runs(spec.requests(), generate=generate)
    preset = GENERATORS[spec.generator]
    first = runs[0].settings
    st.caption(f"**Generator:** {preset.label} · {first.model_id} @ {first.revision[:12]} · {first.steps} steps · "
               f"guidance {first.guidance:g} · {first.width} px · seeds {spec.first_seed}-"
               f"{spec.first_seed + spec.n - 1}"
               f" · **CLIP:** {CLIP_MODELS[spec.clip].label} · natural photos: a fixed sample (seed {NATURAL_SEED})"
               f" of at most {spec.n_natural} per class. {LAB_DEFAULTS_NOTE}")
    fallback = spec.fallback_classes()
    if fallback:
        st.caption(f"The template needs a hypernym or definition the lab's table does not have for "
                   f"{', '.join(fallback)}: those prompts fall back to 'a photo of a {{class}}'.")
    missing = sum(run.missing for run in runs)
    if missing:
        st.warning(f"{missing} of {spec.n * len(runs)} synthetic images are not in the cache yet. Press **Generate "
                   f"missing images and analyse** to make them (cached ones are reused).")

    cache = ui.cache()
    clip_preset = CLIP_MODELS[spec.clip]
    ckey = clip_key(clip_preset)
    prompts = spec.prompts()
    notes, loaded = [], []
    bar = st.progress(0.0, text="Embedding images with CLIP (cached embeddings are read, new ones computed)...")
    try:
        for i, (name, run) in enumerate(zip(spec.classes, runs)):
            syn = synthetic_set(run.images)
            syn = replace(syn, labels=[f"{name} · seed {im.seed}" for im in run.images])
            nat = natural_set(folder.images(name), n=spec.n_natural, seed=NATURAL_SEED)
            if len(syn) < MIN_PER_CLASS or len(nat) < MIN_PER_CLASS:
                notes.append(f"'{name}' is left out: it has {len(syn)} synthetic image(s) in the cache and "
                             f"{len(nat)} natural photo(s); every analysis needs at least {MIN_PER_CLASS} of each.")
                continue
            syn_emb = embed_set(cache, ckey, syn, lambda: ui.clip(spec.clip))
            nat_emb = embed_set(cache, ckey, nat, lambda: ui.clip(spec.clip))
            loaded.append((name, syn, nat, syn_emb, nat_emb))
            bar.progress((i + 1) / len(runs), text=f"Embedded {name} ({i + 1} of {len(runs)} classes)")
        texts = text_embeddings(cache, ckey, [prompts[name] for name, *_ in loaded], lambda: ui.clip(spec.clip))
    except (ModelUnavailableError, ValueError, OSError) as exc:
        bar.empty()
        st.error(str(exc))
        st.stop()
    bar.empty()
    for note in notes:
        st.warning(note)
    classes = [ClassData(name, prompts[name], syn, nat, syn_emb, nat_emb, text)
               for (name, syn, nat, syn_emb, nat_emb), text in zip(loaded, texts)]
    if len(classes) < min_classes:
        st.warning(f"This analysis needs at least {min_classes} class(es) with images; {len(classes)} have them. "
                   f"Press **Generate missing images and analyse**, or choose more classes.")
        st.stop()
    exp = Experiment(spec, classes, notes)
    counts_table(exp)
    return exp


def counts_table(exp: Experiment) -> None:
    counts = pd.DataFrame(exp.counts())
    total_syn, total_nat = int(counts["synthetic images"].sum()), int(counts["natural photos"].sum())
    with st.expander(f"Images behind every number: {total_syn} synthetic + {total_nat} natural in "
                     f"{len(exp.classes)} classes"):
        st.dataframe(counts, hide_index=True)


# -- small helpers the pages share -----------------------------------------------------------------------------------

@st.cache_data(show_spinner="Making thumbnails...", max_entries=64)
def thumbnail_jpegs(cache_root: str, shas: tuple[str, ...], files: tuple[str, ...],
                    size: int = THUMB_SIZE) -> list[bytes]:
    """Small JPEG thumbnails (made once, kept in the disk cache; memoised here so a rerun makes no query)."""
    from core.cache import Cache

    cache = Cache(Path(cache_root))
    return [cache.thumbnail(sha, size, lambda p=Path(f): open_rgb(p)) for sha, f in zip(shas, files)]


def thumbs(image_set, size: int = THUMB_SIZE) -> list[bytes]:
    return thumbnail_jpegs(str(ui.cache().root), tuple(image_set.shas), tuple(str(f) for f in image_set.files), size)


def thumb_uris(image_set, size: int = THUMB_SIZE) -> list[str]:
    """For chart tooltips: Vega shows a field named `image` holding a data URI as a picture."""
    return [data_uri(j) for j in thumbs(image_set, size)]


def fmt(e: Estimate, digits: int = 2, scale: float = 1.0) -> str:
    if not np.isfinite(e.value):
        return f"n/a ({e.note})" if e.note else "n/a"
    if not np.isfinite(e.low):
        return f"{e.value * scale:.{digits}f}"
    return f"{e.value * scale:.{digits}f} [{e.low * scale:.{digits}f}, {e.high * scale:.{digits}f}]"


def estimate_rows(rows: list[tuple[str, Estimate]], key: str = "class") -> pd.DataFrame:
    return pd.DataFrame([{key: label, "statistic": e.name, "value": e.value, "95% low": e.low, "95% high": e.high,
                          "n": e.n, "note": e.note} for label, e in rows])


# -- charts (pure: data in, Altair chart out) ------------------------------------------------------------------------

def source_scale(with_text: bool = True) -> alt.Scale:
    """Fixed colours per source on every page; without the prompts where a chart has only images."""
    n = 3 if with_text else 2
    return alt.Scale(domain=SOURCE_DOMAIN[:n], range=SOURCE_RANGE[:n])


def category_axis() -> alt.Axis:
    """Every category labelled (Vega drops every other label when it guesses they overlap)."""
    return alt.Axis(labelOverlap=False, labelLimit=180)


def shared_map(points: pd.DataFrame, method: str) -> alt.LayerChart:
    """Images and prompt texts in one 2-D projection: colour = source, shape = class. Image points show their
    thumbnail on hover (a field named `image`); prompt points show the prompt."""
    colour = alt.Color("source:N", scale=source_scale(), title="source")
    shape = alt.Shape("class:N", title="class")
    x = alt.X("x:Q", title=f"{method} 1", axis=alt.Axis(labels=False))
    y = alt.Y("y:Q", title=f"{method} 2", axis=alt.Axis(labels=False))
    images = alt.Chart(points[points["source"] != "prompt text"]).mark_point(filled=True, opacity=0.75, size=60) \
        .encode(x=x, y=y, color=colour, shape=shape, tooltip=["label:N", "class:N", "source:N", "image"])
    texts = alt.Chart(points[points["source"] == "prompt text"]).mark_point(
        filled=True, size=260, stroke="black", strokeWidth=1).encode(
        x=x, y=y, color=colour, shape=shape, tooltip=["label:N", "class:N", "source:N"])
    return alt.layer(images, texts).properties(
        title=f"Synthetic images, natural photos and prompts in CLIP space ({method})", height=480).interactive()


def interval_chart(df: pd.DataFrame, y: str, colour: str | None = None, title: str = "",
                   facet: str | None = None, width: int = 260, reference: float | None = None) -> alt.Chart:
    """Point estimate and 95% interval per row. Columns: value, low, high, n, `y` (and `colour`, `facet`).
    `reference`: a dashed vertical line (e.g. chance)."""
    base = alt.Chart(df).encode(y=alt.Y(f"{y}:N", title=None, axis=category_axis(), sort=None))
    enc = {}
    if colour:
        sources = colour == "source"
        enc["color"] = alt.Color(f"{colour}:N", scale=source_scale(False) if sources else alt.Undefined,
                                 legend=None if colour == y else alt.Undefined)
        if colour != y:
            enc["yOffset"] = alt.YOffset(f"{colour}:N")
    bars = base.mark_rule(strokeWidth=3).encode(x=alt.X("low:Q", title=None, scale=alt.Scale(zero=False)),
                                                x2="high:Q", **enc)
    tooltip = [f"{y}:N"] + ([f"{colour}:N"] if colour and colour != y else []) + [
        alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
        alt.Tooltip("high:Q", format=".3f"), "n:Q"]
    dots = base.mark_point(filled=True, size=80).encode(x="value:Q", tooltip=tooltip, **enc)
    layers = [bars, dots]
    if reference is not None:
        layers.append(alt.Chart(pd.DataFrame({"x": [reference]})).mark_rule(strokeDash=[4, 4], color="gray")
                      .encode(x="x:Q"))
    chart = alt.layer(*layers).properties(width=width, height=alt.Step(16 if colour and colour != y else 22))
    if facet:
        return chart.facet(facet=alt.Facet(f"{facet}:N", title=None), columns=3, title=title).resolve_scale(
            x="independent")
    return chart.properties(title=title)


def histogram_by_source(df: pd.DataFrame, field: str, title: str, x_title: str, bins: int = 30) -> alt.Chart:
    """Overlaid histograms, each source normalised to its own total (the sources differ in size)."""
    return alt.Chart(df).transform_joinaggregate(total="count()", groupby=["source"]).transform_calculate(
        share="1 / datum.total").mark_bar(opacity=0.55, binSpacing=0).encode(
        x=alt.X(f"{field}:Q", bin=alt.Bin(maxbins=bins), title=x_title),
        y=alt.Y("sum(share):Q", stack=None, title="share of the source's images"),
        color=alt.Color("source:N", scale=source_scale(False)),
        tooltip=["source:N", alt.Tooltip("sum(share):Q", format=".2f", title="share")],
    ).properties(title=title, height=260)


def image_grid(jpegs: list[bytes], captions: list[str], per_row: int = 8) -> None:
    for row in range(0, len(jpegs), per_row):
        for col, jpeg, caption in zip(st.columns(per_row), jpegs[row:row + per_row], captions[row:row + per_row]):
            col.image(jpeg, caption=caption, width="stretch")
