"""Streamlit glue shared by the three class-list pages (Synthetic vs Natural, Train on synthetic, CLIP geometry):
the experiment form, URL <-> settings, loading (synthetic images through ui.runs, natural photos, embeddings with
progress), the "how many images" table, cached thumbnails and the charts these pages draw.

The logic lives in core (core.analysis.classes, core.analysis.compare, core.analysis.probe, core.analysis.geometry);
this module only wires it to widgets. Pages import this and `ui`, never each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from app import form, ui
from app import report as ui_report
from core.analysis.classes import (
    BACKGROUND_BLOCK,
    CLASS_TEMPLATES,
    DEFAULT_CLASS_TEMPLATE,
    DEFAULT_NATURAL,
    MAX_NATURAL,
    MIN_PER_CLASS,
    NATURAL_SEED,
    PLACES365_BACKGROUNDS,
    ClassData,
    ClassListData,
    ClassListSpec,
    background_for,
    default_classes,
    format_user_lexicon,
    parse_user_lexicon,
    prompt_ensemble,
    validate_spec,
)
from core.analysis.classes import (
    URL_PARAMS as CLASS_URL_PARAMS,
)
from core.analysis.diversity import natural_set, synthetic_set
from core.analysis.stats import Estimate
from core.pipeline import config
from core.pipeline.cache import THUMB_SIZE, data_uri, key_of
from core.pipeline.embed import text_embeddings
from core.pipeline.generate import MAX_IMAGES
from core.pipeline.local import all_clip_models, generator_preset
from core.pipeline.models import ModelUnavailableError, clip_key
from core.pipeline.natural import NaturalFolder, open_rgb, reference_sources
from core.pipeline.registry import GENERATORS

# The class-list pages call these chart builders as uc.*; their home is core.present.charts.
from core.present.charts import category_axis as category_axis
from core.present.charts import full_legend as full_legend
from core.present.charts import histogram_by_source as histogram_by_source
from core.present.charts import interval_chart as interval_chart
from core.present.charts import shared_map as shared_map
from core.present.literature import ORIGIN_LAB, PRESETS, SOURCES, Preset, matching_presets, presets_for
from core.present.markup import md_list, md_literal
from core.present.report import LAB_CHOICES, generation_defaults, report_file_stem

SHARED_URL_KEY = "class_experiment_params"  # the experiment, shared by the three pages of this session
MAX_STEPS = max(p.max_steps for p in GENERATORS.values())
LAB_DEFAULTS_NOTE = ("Defaults (template, N, natural photos per class, generator steps/guidance/size from its preset, "
                     "CLIP model, k = 5, folds, splits, seeds) are the lab's own choice, except what a paper's preset "
                     "above sets (it says where each value comes from); Marwood et al.'s own settings are unknown.")


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
    """This page's settings (app.form.remember_url), and the experiment for the other two class-list pages."""
    form.remember_url(page_key)
    params = st.query_params.to_dict()
    if "classes" in params:
        st.session_state[SHARED_URL_KEY] = {k: params[k] for k in CLASS_URL_PARAMS if k in params}


def url_choice(name: str, options: list, default):
    """The URL's value of `name` if it is one of `options`; a tampered value gets a warning and the default."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    for option in options:
        if str(option) == raw:
            return option
    st.warning(f"The link's '{name}' is {md_literal(repr(raw))}, not one of {md_list(options)}: "
               f"{md_literal(default)} is used.")
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
        st.warning(f"The link's '{name}' is {md_literal(repr(raw))}, not a number from {low:g} to {high:g}: "
                   f"{default} is used.")
        return default
    return value


def bound(page_key: str, name: str, value, variant: str = "") -> str:
    """The key of a widget whose value lives in the URL parameter `name`: its state starts at `value` (the URL's, or
    the default) and from then on belongs to the widget, which the page writes back to the URL. (An unkeyed widget
    whose default is the URL's value gets a new identity whenever the URL changes, and so drops every second change
    the user makes.) `variant`: part of the key that changes with the widget's options (e.g. the class list), so a
    stale value is never offered options it is not among. A preset clears these keys (`_apply_preset`) so the
    widgets start again from the URL it wrote."""
    key = f"{page_key}-url-{name}" + (f"-{variant}" if variant else "")
    if key not in st.session_state:
        st.session_state[key] = value
    return key


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


def experiment(page_key: str, page_params: tuple[str, ...] = (), min_classes: int = 1) -> LoadedClassList:
    """Draw the experiment form, read the settings (URL or form), make or fetch the synthetic images, sample the
    natural photos, embed everything (with progress when something is new) and return the experiment. Stops the
    page (with a message saying what to do) when there is nothing to analyse yet."""
    restore_url(page_key)
    url_spec, url_problems = ClassListSpec.from_params(st.query_params.to_dict())
    for problem in url_problems:
        st.warning(md_literal(problem))

    sources = reference_sources(config.cache_dir(), config.natural_roots())
    source_ids = list(sources)
    wanted_source = url_spec.source if url_spec else st.query_params.get("ref", _default_source(sources))
    if wanted_source not in sources:
        st.warning(f"The link names an unknown natural-photo source '{md_literal(wanted_source)}'; pick one below.")
        wanted_source = _default_source(sources)
    source_id = st.selectbox("Natural photos from", source_ids, index=ui.pick(source_ids, wanted_source,
                                                                              _default_source(sources)),
                             format_func=lambda k: sources[k][0])
    folder = sources[source_id][1]
    if source_id == "imagenette" and not folder.root.is_dir():
        form.offer_imagenette(folder.root.parent)
        st.stop()
    available = _classes_of(folder)
    if not available:
        st.warning(f"{md_literal(sources[source_id][0])} has no class folders yet. Lay photos out as "
                   f"`<folder>/<class>/<image>` "
                   f"or choose another source.")
        st.stop()
    if url_spec and url_spec.source != source_id:
        url_spec = None  # another source was chosen: its classes differ, the form decides

    base = url_spec or ClassListSpec(default_classes(available), source_id)
    preset = preset_picker(page_key, base)
    if preset is not None:
        base = preset.apply(base)
    templates = list(CLASS_TEMPLATES)
    with st.form(f"{page_key}-experiment"):
        chosen = st.multiselect("Classes", available, default=[c for c in base.classes if c in available],
                                format_func=lambda c: c.replace("_", " "))
        c1, c2, c3 = st.columns(3)
        template = c1.selectbox("Prompt template", templates, index=ui.pick(templates, base.template,
                                                                           DEFAULT_CLASS_TEMPLATE),
                                format_func=lambda k: CLASS_TEMPLATES[k].label)
        n = c2.number_input("Synthetic images per class (N)", 1, MAX_IMAGES, int(min(max(base.n, 1), MAX_IMAGES)))
        n_natural = c3.number_input("Natural photos per class", 1, MAX_NATURAL,
                                    int(min(max(base.n_natural, 1), MAX_NATURAL)))
        c4, c5, c6 = st.columns(3)
        generator, _ = form.generator_picker(base.generator, container=c4)
        clip_choice = form.clip_picker(base.clip, container=c5)
        first_seed = c6.number_input("First seed", 0, 2**31 - 1, int(max(base.first_seed, 0)))
        c7, c8 = st.columns(2)
        # Empty = the generator's own default (its preset), as before these fields existed: old links keep their
        # cache keys. A paper's preset fills them.
        steps = c7.number_input("Steps (empty: the generator's default)", 1, MAX_STEPS,
                                ui.in_range(base.steps, 1, MAX_STEPS, None), placeholder="generator's default")
        guidance = c8.number_input("Guidance (empty: the generator's default)", 0.0, 30.0,
                                   ui.in_range(base.guidance, 0.0, 30.0, None), step=0.5,
                                   placeholder="generator's default")
        lexicon_text = st.text_area(
            "Hypernyms and definitions for other classes (one per line: `class: hypernym | definition`)",
            format_user_lexicon(base.lexicon), height=68,
            help="The hypernym and definition templates know the 10 Imagenette classes (the lab's glosses; WordNet "
                 "3.0 for Sariyildiz et al.'s templates). For any other class type e.g. `axolotl: salamander | a "
                 "larval salamander of Mexican lakes`. A class with nothing here falls back to the template's "
                 "fallback prompt, and the page says which.")
        submitted = st.form_submit_button("Generate missing images and analyse", type="primary")
    ui.remember_selection(generator, clip_choice)

    spec = url_spec
    if submitted:
        st.session_state.pop(applied_preset_key(page_key), None)  # the form now holds the values; the URL keeps them
        lexicon, lexicon_problems = parse_user_lexicon(lexicon_text)
        for problem in lexicon_problems:
            st.warning(md_literal(problem))
        spec = ClassListSpec(tuple(chosen), source_id, template, int(n), int(n_natural), generator, clip_choice,
                             int(first_seed), steps=None if steps is None else int(steps),
                             guidance=None if guidance is None else float(guidance), lexicon=lexicon)
    if spec is None:
        st.info("Choose the classes and press **Generate missing images and analyse**. Images already in the "
                "cache are reused; only missing ones are generated.")
        st.stop()
    form.stop_on(validate_spec(spec, available, min_classes))
    if submitted:
        form.write_url(spec.to_params(), page_key, keep=page_params)
    remember_url(page_key)
    return _load(spec, folder, generate=submitted, min_classes=min_classes)


# -- presets from papers (core.present.literature)
# ---------------------------------------------------------------------------

NO_PRESET = "none"


def applied_preset_key(page_key: str) -> str:
    """Where the page's chosen preset waits for its form: cleared when the form is submitted (the form then holds
    the values), by this module's form and by pages with their own form (Stable Bias)."""
    return f"{page_key}-applied-preset"


def literature_matches(spec, page_key: str) -> bool:
    """Whether `spec` has the values of a preset this page offers (the preset box then shows its citation)."""
    return bool(matching_presets(spec, page_key))


def _apply_preset(page_key: str) -> None:
    """on_change of the preset box (runs before the script): remember the preset for the form's defaults, set the
    keyed model boxes and the page's own URL parameters (e.g. the CLIP filter on Train on synthetic)."""
    chosen = st.session_state.get(f"{page_key}-preset", NO_PRESET)
    if chosen == NO_PRESET or chosen not in PRESETS:
        st.session_state.pop(applied_preset_key(page_key), None)
        return
    preset = PRESETS[chosen]
    st.session_state[applied_preset_key(page_key)] = chosen
    values = preset.form_values
    if "generator" in values:
        st.session_state["generator"] = values["generator"]
    if "clip" in values:
        st.session_state["clip"] = values["clip"]
    for name, value in preset.page_values.items():
        if value:
            st.query_params[name] = value
        else:
            st.query_params.pop(name, None)
        prefix = f"{page_key}-url-{name}"
        for key in [k for k in st.session_state if k == prefix or str(k).startswith(prefix + "-")]:
            del st.session_state[key]  # the widget starts again from the URL the preset wrote


def preset_picker(page_key: str, base) -> Preset | None:
    """A box of the papers' settings this page offers, with the chosen (or matching) preset's citation and where
    each of its values comes from. Returns the preset to apply to the form's defaults, if one was just chosen."""
    offered = presets_for(page_key)
    options = [NO_PRESET, *offered]
    st.selectbox("Settings from a paper", options, key=f"{page_key}-preset", on_change=_apply_preset,
                 args=(page_key,), format_func=lambda k: "(none: the form's own values)" if k == NO_PRESET
                 else offered[k].label,
                 help="Fills the form (and this page's controls) with a paper's published settings and cites it. "
                      "Press the button below to run them.")
    applied = st.session_state.get(applied_preset_key(page_key))
    preset = offered.get(applied) if applied else None
    shown = [preset] if preset else matching_presets(base, page_key)
    for p in shown:
        show_citation(p, base if p is not preset else None)
    return preset


def show_citation(preset: Preset, spec=None) -> None:
    """The preset's source and, for each value, where it comes from (markdown, so no table index shifts)."""
    with st.container(border=True):
        st.markdown(f"**{preset.label}**  \n{preset.citation()}")
        st.markdown("\n".join(f"- {s.line()}" for s in preset.settings))
        if spec is not None and preset.form:
            differs = preset.differences(spec)
            if differs:
                st.caption(f"These settings differ from the preset in: {', '.join(differs)}.")


@dataclass
class LoadedClassList(ClassListData):
    """The experiment as the pages get it, with what its report needs besides: the generation settings of every
    run behind its images (model revision, scheduler, library versions) and the lines the page showed about them."""

    generation: list = field(default_factory=list)  # core.pipeline.generate.GenerationSettings, one per run
    captions: list[str] = field(default_factory=list)  # the run line (generator, revision, CLIP...) and notes


def _load(spec: ClassListSpec, folder: NaturalFolder, generate: bool, min_classes: int) -> LoadedClassList:
    groups = spec.class_requests()
    flat = [req for _, reqs in groups for req in reqs]
    all_runs = iter(ui.runs(flat, generate=generate))
    runs_by_class = [(name, [next(all_runs) for _ in reqs]) for name, reqs in groups]
    preset = generator_preset(spec.generator)
    first = runs_by_class[0][1][0].settings
    captions = [  # shown under the form, and the report's opening lines
        f"**Generator:** {md_literal(preset.label)} · {md_literal(first.model_id)} @ {first.revision[:12]} · "
        f"{first.steps} steps"
        f"{'' if spec.steps is not None else ' (its default)'} · guidance {first.guidance:g}"
        f"{'' if spec.guidance is not None else ' (its default)'} · {first.width} px · seeds "
        f"{spec.first_seed}-{spec.first_seed + spec.n - 1}"
        f" · **CLIP:** {md_literal(all_clip_models()[spec.clip].label)} · natural photos: a fixed sample "
        f"(seed {NATURAL_SEED})"
        f" of at most {spec.n_natural} per class. {LAB_DEFAULTS_NOTE}"]
    template = CLASS_TEMPLATES[spec.template]
    if template.needs_background:
        captions.append(f"Backgrounds b: {', '.join(PLACES365_BACKGROUNDS)} (Places365 scene names), one per block "
                        f"of {BACKGROUND_BLOCK} consecutive seeds in this order; each class's prompt text below is "
                        f"the mean of its prompts' CLIP embeddings.")
    fallback = spec.fallback_classes()
    if fallback:
        source = ("WordNet table (the 10 Imagenette classes)" if template.lexicon == "wordnet"
                  else "table (the 10 Imagenette classes)")
        captions.append(f"The template needs a hypernym or definition that the lab's {source} does not have for "
                        f"{md_list(fallback)}: those prompts fall back to '{md_literal(template.fallback)}'. To use "
                        f"the full template, type e.g. “{md_literal(fallback[0])}: hypernym \\| definition” in the "
                        f"form's 'Hypernyms and "
                        f"definitions' box.")
    for caption in captions:
        st.caption(caption)
    missing = sum(run.missing for _, runs in runs_by_class for run in runs)
    if missing:
        st.warning(f"{missing} of {spec.n * len(groups)} synthetic images are not in the cache yet. Press "
                   f"**Generate missing images and analyse** to make them (cached ones are reused).")

    cache = ui.cache()
    clip_preset = all_clip_models()[spec.clip]
    ckey = clip_key(clip_preset)
    prompts = spec.prompts()
    notes, loaded = [], []
    bar = st.progress(0.0, text="Embedding images with CLIP (cached embeddings are read, new ones computed)...")
    try:
        for i, (name, runs) in enumerate(runs_by_class):
            images = [im for run in runs for im in run.images]
            syn = synthetic_set(images)
            syn = replace(syn, labels=[f"{name} · seed {im.seed}" + (f" · {background_for(im.seed)}"
                                                                    if template.needs_background else "")
                                       for im in images])
            nat = natural_set(folder.images(name), n=spec.n_natural, seed=NATURAL_SEED)
            if len(syn) < MIN_PER_CLASS or len(nat) < MIN_PER_CLASS:
                notes.append(f"'{md_literal(name)}' is left out: it has {len(syn)} synthetic image(s) in the cache and "
                             f"{len(nat)} natural photo(s); every analysis needs at least {MIN_PER_CLASS} of each.")
                continue
            syn_emb = ui.embed(cache, ckey, syn, lambda: ui.clip(spec.clip))
            nat_emb = ui.embed(cache, ckey, nat, lambda: ui.clip(spec.clip))
            loaded.append((name, syn, nat, syn_emb, nat_emb, [run.request.prompt for run in runs]))
            bar.progress((i + 1) / len(runs_by_class),
                         text=f"Embedded {md_literal(name)} ({i + 1} of {len(runs_by_class)} classes)")
        texts = []
        for *_, class_prompts in loaded:
            vectors = text_embeddings(cache, ckey, class_prompts, lambda: ui.clip(spec.clip))
            texts.append(vectors[0] if len(vectors) == 1 else prompt_ensemble(vectors))
    except (ModelUnavailableError, ValueError, OSError) as exc:
        bar.empty()
        st.error(md_literal(exc))
        st.stop()
    bar.empty()
    for note in notes:
        st.warning(note)
    classes = [ClassData(name, prompts[name], syn, nat, syn_emb, nat_emb, text)
               for (name, syn, nat, syn_emb, nat_emb, _), text in zip(loaded, texts)]
    if len(classes) < min_classes:
        st.warning(f"This analysis needs at least {min_classes} class(es) with images; {len(classes)} have them. "
                   f"Press **Generate missing images and analyse**, or choose more classes.")
        st.stop()
    exp = LoadedClassList(spec, classes, notes, [run.settings for _, runs in runs_by_class for run in runs],
                           captions)
    counts_table(exp)
    return exp


def counts_table(exp: ClassListData) -> None:
    counts = pd.DataFrame(exp.counts())
    total_syn, total_nat = int(counts["synthetic images"].sum()), int(counts["natural photos"].sum())
    with st.expander(f"Images behind every number: {total_syn} synthetic + {total_nat} natural in "
                     f"{len(exp.classes)} classes"):
        st.dataframe(counts, hide_index=True)


# -- the experiment report (core.present.report; ui_report draws the buttons)
# ------------------------------------------------

PAGE_TITLES = {"synthetic_vs_natural": "Synthetic vs natural", "train_on_synthetic": "Train on synthetic",
               "clip_geometry": "CLIP geometry"}


def cite_presets(out: ui_report.Output, presets: list[Preset], spec=None, *, on_page: bool = False
                 ) -> ui_report.Output:
    """Each paper's settings the run used, in the report: the citation and where every value comes from (and, given
    the run's spec, where the run departs from the preset). `on_page`: drawn here too (show_citation); otherwise the
    page showed them under its form (preset_picker)."""
    for preset in presets:
        if on_page:
            show_citation(preset, spec)
        differs = preset.differences(spec) if spec is not None and preset.form else []
        out.heading(f"Settings from a paper: {preset.label}", 3, on_page=False)
        out.note(preset.citation() + "\n\n" + "\n".join(f"- {s.line()}" for s in preset.settings)
                 + (f"\n\nThis run's settings differ from the preset in: {', '.join(differs)}." if differs else ""))
    return out


def preset_lab_choices(presets: list[Preset]) -> dict[str, str]:
    """The values of the papers' presets that are the lab's own choice, each with its reason."""
    return {f"{SOURCES[p.source].short}: {s.name}": s.value + (f" ({s.detail})" if s.detail else "")
            for p in presets for s in p.settings if s.origin == ORIGIN_LAB}


def report_for(exp: LoadedClassList, page_key: str) -> ui_report.Output:
    """A class-list page's output, its report opened with what the page showed above its analyses (while loading
    the experiment: `_load`, `counts_table`, `preset_picker`), from the same values: the run line, the images behind
    every number and the citation of a paper's settings the run used. The page emits its sections through it, then
    calls `finish_report`."""
    title = PAGE_TITLES[page_key]
    out = ui_report.start(f"{title}: {', '.join(c.replace('_', ' ') for c in exp.spec.classes)}", title, page_key)
    out.note("\n\n".join(exp.captions))
    if exp.notes:
        out.note("\n".join(f"- {note}" for note in exp.notes))
    out.table(pd.DataFrame(exp.counts()), "Images behind every number", on_page=False)
    return cite_presets(out, matching_presets(exp.spec, page_key), exp.spec)


def experiment_settings(spec: ClassListSpec) -> dict:
    """The experiment's settings (the spec, as the URL holds it), with the prompts they make."""
    preset = generator_preset(spec.generator)
    return {"classes": ", ".join(spec.classes), "source": spec.source,
            "template": f"{spec.template} ({CLASS_TEMPLATES[spec.template].label})", "n": spec.n,
            "n_natural": spec.n_natural, "natural sample seed": NATURAL_SEED, "generator": spec.generator,
            "clip": spec.clip, "first_seed": spec.first_seed,
            "steps": spec.steps if spec.steps is not None else f"the generator's default ({preset.default_steps})",
            "guidance": spec.guidance if spec.guidance is not None else
            f"the generator's default ({preset.default_guidance if preset.supports_guidance else 0.0:g})",
            "lexicon": format_user_lexicon(spec.lexicon) or "(none)", "prompts": spec.prompts()}


def class_lab_defaults(spec: ClassListSpec) -> dict[str, str]:
    """For each setting of the experiment: its value and whether it is the lab's default or set for this run."""
    out = generation_defaults(replace(spec.requests()[0], n=spec.n), generator_preset(spec.generator))
    for name, used, default in (("prompt template", spec.template, DEFAULT_CLASS_TEMPLATE),
                                ("natural photos per class", spec.n_natural, DEFAULT_NATURAL)):
        out[name] = f"{used}: " + ("the lab's default" if used == default else
                                   f"set for this run (the default is {default})")
    out["natural sample"] = (f"at most {spec.n_natural} photos per class, drawn without replacement with seed "
                             f"{NATURAL_SEED}: the same photos every time.")
    out["models"] = LAB_CHOICES["models"]
    out["these pages"] = LAB_DEFAULTS_NOTE
    return out


def finish_report(out: ui_report.Output, exp: LoadedClassList, page_key: str, *, settings: dict | None = None,
                  defaults: dict[str, str] | None = None, presets: tuple[Preset, ...] = ()) -> None:
    """The end of a class-list page's report (every setting, the models' revisions and the library versions, the
    defaults that are the lab's own choice), then its two download buttons. `settings` and `defaults`: the page's
    own; `presets`: papers' settings the page used beyond the form's (He et al.'s filter)."""
    spec = exp.spec
    used = [*matching_presets(spec, page_key), *presets]
    out.settings({"experiment": experiment_settings(spec), **({"page": settings} if settings else {}),
                  "settings from papers": ", ".join(p.key for p in used) or "none"})
    clip_preset = all_clip_models()[spec.clip]
    out.provenance(exp.generation, clip_preset, clip_key(clip_preset))
    out.lab_defaults({**class_lab_defaults(spec), **(defaults or {}), **preset_lab_choices(used)})
    out.offer(report_file_stem(page_key, key_of(spec.to_params())[:10], f"n{spec.n}"))


# -- small helpers the pages share -----------------------------------------------------------------------------------

@st.cache_data(show_spinner="Making thumbnails...", max_entries=64)
def thumbnail_jpegs(cache_root: str, shas: tuple[str, ...], files: tuple[str, ...],
                    size: int = THUMB_SIZE) -> list[bytes]:
    """Small JPEG thumbnails (made once, kept in the disk cache; memoised here so a rerun makes no query)."""
    from core.pipeline.dataset import open_cache

    cache = open_cache(Path(cache_root))  # with the opened datasets: their sweeps' thumbnails
    return [cache.thumbnail(sha, size, lambda p=Path(f): open_rgb(p)) for sha, f in zip(shas, files)]


def thumbs(image_set, size: int = THUMB_SIZE) -> list[bytes]:
    return thumbnail_jpegs(str(ui.cache().root), tuple(image_set.shas), tuple(str(f) for f in image_set.files), size)


def thumb_uris(image_set, size: int = THUMB_SIZE) -> list[str]:
    """For chart tooltips: Vega shows a field named `image` holding a data URI as a picture."""
    return [data_uri(j) for j in thumbs(image_set, size)]


def fmt(e: Estimate, digits: int = 2, scale: float = 1.0) -> str:
    """Estimate.format, under the name the class-list pages call (`uc.fmt`)."""
    return e.format(digits, scale)


def scaled(e: Estimate, scale: float, name: str | None = None) -> Estimate:
    """Estimate.scaled, under the name the class-list pages call (`uc.scaled`)."""
    return e.scaled(scale, name)


def estimate_rows(rows: list[tuple[str, Estimate]], key: str = "class") -> pd.DataFrame:
    return pd.DataFrame([{key: label, "statistic": e.name, "value": e.value, "95% low": e.low, "95% high": e.high,
                          "n": e.n, "note": e.note} for label, e in rows])


image_grid = ui.grid  # the one image grid, under the name the class-list pages call (`uc.image_grid`)
