"""The Lessons: one guided page per finding of Marwood, Baluja & Alon, "Diversity and Diffusion: Observations on
Synthetic Image Distributions with Stable Diffusion" (arXiv 2311.00056, 2023), as data.

Each `Lesson` holds the question in one sentence, the preset experiment one click runs (`LessonExperiment`: prompt or
classes, N, seeds, generator, CLIP), the title of the chart that answers it, two or three things to look for, and
the full analysis page that "Try it yourself" opens with the same settings (`try_it_params`, in the full page's own
URL format: RunRequest / AmbiguityRequest / ClassListSpec `to_params`).

The paper names the findings; the settings here are not taken from it. Every concrete choice (prompts, N, seeds,
models, CLIP, the measures) is the lab's own and `settings_table` says so, row by row.

Also here: the few pure helpers the lessons need beyond the existing analyses, built on them rather than
re-implementing a metric: which natural-photo source to use, the recognition shares of the "inability to represent
the concept" lesson (core.analysis.zeroshot ranks -> core.analysis.adherence top-1 estimates) and the prompt closeness
of the geometry lesson (core.analysis.geometry.source_geometry, exactly as the CLIP geometry page computes it per
class). Nothing here imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.analysis.adherence import class_display, rank_estimates
from core.analysis.ambiguity import (
    AMBIGUITY_PRESETS,
    DEFAULT_STYLES,
    VARIANT_STYLES,
    AmbiguityRequest,
    validate_ambiguity,
)
from core.analysis.classes import (
    CLASS_TEMPLATES,
    DEFAULT_CLASS_TEMPLATE,
    IMAGENETTE_CLASSES,
    NATURAL_SEED,
    ClassListSpec,
    validate_spec,
)
from core.analysis.geometry import source_geometry
from core.analysis.stats import BOOTSTRAP_RESAMPLES
from core.analysis.zeroshot import ZERO_SHOT_TEMPLATES, ranks
from core.pipeline.generate import RunRequest, validate_request
from core.pipeline.registry import CLIP_MODELS, GENERATORS, prompt_for_class

PAPER = ("Marwood, Baluja & Alon (2023), Diversity and Diffusion: Observations on Synthetic Image Distributions "
         "with Stable Diffusion")
PAPER_URL = "https://arxiv.org/abs/2311.00056"
FROM_PAPER = "from the paper"
LAB_CHOICE = "lab's own choice"
YOUR_CHOICE = "your choice (the link, or the Generator / CLIP boxes)"

# Real models by default: the lessons are meant to show the effects, which random weights cannot. SD-Turbo makes a
# 512 px image in two steps (a live demo on a laptop GPU); ViT-B/32 LAION-2B is the lab's general-purpose CLIP.
LESSON_GENERATOR = "sd-turbo"
LESSON_CLIP = "ViT-B-32/laion2b"
INTERVALS = ("95% intervals: Wilson for shares, Student's t for means, the jackknife for diversity statistics; "
             "each clipped to the statistic's range")


# -- the experiment one click runs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LessonExperiment:
    """What one click generates and measures. One-prompt lessons set `prompt` (plus `ambiguity_preset`: the
    prompt's senses, one variant per sense) and `natural_class`; class-list lessons set `classes` (one prompt per
    class from core.analysis.classes' `template`) and, for zero-shot recognition, `candidates`. Steps, guidance and size
    are the generator preset's defaults."""

    n: int  # generated images per prompt; natural photos per class: as many
    prompt: str = ""
    ambiguity_preset: str = ""  # a core.analysis.ambiguity preset key: its senses and the default variant style
    natural_class: str = ""  # natural photos of this class (folder name, e.g. "tench"); "" = none
    classes: tuple[str, ...] = ()
    template: str = DEFAULT_CLASS_TEMPLATE
    candidates: tuple[str, ...] = ()  # class names zero-shot CLIP chooses among (folder names)
    generator: str = LESSON_GENERATOR
    clip: str = LESSON_CLIP
    first_seed: int = 0

    def with_models(self, generator: str, clip: str) -> LessonExperiment:
        return replace(self, generator=generator, clip=clip)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.n))

    def run_request(self, prompt: str | None = None) -> RunRequest:
        """The one-prompt request (or `prompt`'s), with the generator preset's steps, guidance and size."""
        return RunRequest(self.prompt if prompt is None else prompt, self.n, self.generator,
                          first_seed=self.first_seed, clip=self.clip).with_preset_defaults(GENERATORS[self.generator])

    def ambiguity_request(self) -> AmbiguityRequest:
        preset = AMBIGUITY_PRESETS[self.ambiguity_preset]
        return AmbiguityRequest(self.run_request(), preset.senses, DEFAULT_STYLES, (), preset.key)

    def class_spec(self, source: str) -> ClassListSpec:
        return ClassListSpec(classes=self.classes, source=source, template=self.template, n=self.n,
                             n_natural=self.n, generator=self.generator, clip=self.clip, first_seed=self.first_seed)

    def requests(self, source: str = "imagenette") -> list[RunRequest]:
        """Every run one click makes (each cached like any other run, so the full pages reuse them)."""
        if self.ambiguity_preset:
            return self.ambiguity_request().run_requests()
        if self.classes:
            return self.class_spec(source).requests()
        return [self.run_request()]

    def natural_classes(self) -> tuple[str, ...]:
        """The classes natural photos are needed for (none: the lesson uses no natural photos)."""
        return self.classes or ((self.natural_class,) if self.natural_class else ())

    def problems(self, available: list[str] | None = None) -> list[str]:
        """What stops this experiment from running, each a sentence saying what to change."""
        if self.generator not in GENERATORS:
            return [f"Unknown generator '{self.generator}'. Pick one of: {', '.join(GENERATORS)}."]
        if self.classes:  # either check names an unknown CLIP model (the request tables' `known`)
            problems = validate_spec(self.class_spec("imagenette"), available)
        else:
            problems = validate_request(self.run_request(), GENERATORS[self.generator])
            if self.ambiguity_preset:
                problems += validate_ambiguity(self.ambiguity_request())
        unknown = [c for c in self.classes if class_display(c) not in {class_display(k) for k in self.candidates}]
        if self.candidates and unknown:
            problems.append(f"Zero-shot recognition needs every class among the candidate names; missing: "
                            f"{', '.join(unknown)}.")
        return problems

    def prompts(self) -> list[str]:
        return [r.prompt for r in self.requests()]


# -- the lessons -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingUsed:
    """One row of "Settings used": what, the value, and where the choice comes from (FROM_PAPER or LAB_CHOICE)."""

    name: str
    value: str
    origin: str = LAB_CHOICE


@dataclass(frozen=True)
class Lesson:
    key: str  # the page is pages/lesson_<key>.py (url path lesson_<key>)
    number: int
    finding: str  # the paper's name for the failure mode
    question: str  # one sentence
    experiment: LessonExperiment
    summary: str  # the experiment in one sentence; fields {n}, {generator}, {clip}, {natural}, {classes}, {candidates}
    chart_title: str
    look_for: tuple[str, ...]  # two or three bullets
    full_page: str  # the page "Try it yourself" opens, e.g. "pages/diversity.py"
    full_page_title: str
    try_it: str  # a TRY_IT_BUILDERS key: how the experiment becomes the full page's URL parameters
    extra_settings: tuple[SettingUsed, ...] = ()  # lesson-specific rows of "Settings used"
    statistics: tuple[str, ...] = ()  # the statistics the chart shows, where the analysis computes more

    @property
    def page(self) -> str:
        return f"pages/lesson_{self.key}.py"

    @property
    def url_path(self) -> str:
        return f"lesson_{self.key}"


SAME_SEEDS = "the same seeds for every prompt, so the prompts differ and nothing else"
_CRANE = AMBIGUITY_PRESETS["crane"]
# Things with a precise shape (a player, not a tape; a saw, a horn) beside a fish: the lab's guess at where a
# generator misses the concept; every one an Imagenette class, so real photos are at hand.
LESSON_CLASSES = ("tench", "cassette_player", "chain_saw", "french_horn")

LESSONS: dict[str, Lesson] = {
    lesson.key: lesson
    for lesson in (
        Lesson(
            key="ambiguity", number=1, finding="Ambiguity",
            question="When a word has two meanings, which one does the model draw?",
            experiment=LessonExperiment(n=6, prompt=prompt_for_class(_CRANE.term), ambiguity_preset=_CRANE.key),
            summary="{n} images each of *a photo of a crane* and of two variants that name a sense (the bird, the "
                    "construction machine), made by {generator}; CLIP ({clip}) gives each image the sense it is "
                    "closest to.",
            chart_title="Which sense CLIP finds in the images",
            look_for=(
                "The bare prompt's bars: does one sense take (nearly) every image? A dataset that said 'crane' may "
                "have meant the other one.",
                "The variants that name a sense: the share should move to that sense. If it does not, the name "
                "alone cannot steer the model.",
                "Each share comes from only a few images: read the 95% interval around the dot, not just the dot.",
            ),
            full_page="pages/ambiguity.py", full_page_title="Ambiguity", try_it="ambiguity request",
            extra_settings=(
                SettingUsed("Senses", " / ".join(f"{s.name} (CLIP text '{s.text}')" for s in _CRANE.senses)),
                SettingUsed("Prompt variants", f"the bare prompt, then {VARIANT_STYLES[DEFAULT_STYLES[0]].label} for "
                                               f"each sense; {SAME_SEEDS}"),
                SettingUsed("Sense of an image", f"the sense whose text (averaged over {len(ZERO_SHOT_TEMPLATES)} "
                                                 f"zero-shot templates) has the highest cosine with the image"),
            ),
        ),
        Lesson(
            key="adherence", number=2, finding="Adherence to prompt",
            question="Do generated images match their prompt's words more closely than real photos of the same "
                     "thing do?",
            experiment=LessonExperiment(n=8, prompt="a photo of a tench", natural_class="tench"),
            summary="{n} images of *a photo of a tench* from {generator} and {n} real photos of tenches ({natural}), "
                    "each scored against the prompt with CLIP ({clip}).",
            chart_title="CLIPScore against 'a photo of a tench'",
            look_for=(
                "Red (generated) to the right of blue (real): the model draws what the prompt says and little else; "
                "real photos of a tench also show anglers, nets and water that the prompt never mentions.",
                "The dashed lines are the two means; the sentence above gives their 95% intervals. Overlapping "
                "intervals mean no clear difference with this few images.",
                "A close match is not a good training image: a classifier learns the textbook picture, then meets "
                "real photos.",
            ),
            full_page="pages/adherence.py", full_page_title="Adherence", try_it="run with natural class",
            extra_settings=(
                SettingUsed("Score", "CLIPScore = 2.5 x max(cos(image, prompt), 0) (Hessel et al. 2021), the prompt as "
                                     "written as the text"),
                SettingUsed("Means", INTERVALS),
            ),
        ),
        Lesson(
            key="diversity", number=3, finding="Lack of diversity",
            question="Are eight generated pictures of a tench as varied as eight real photos of tenches?",
            experiment=LessonExperiment(n=8, prompt="a photo of a tench", natural_class="tench"),
            summary="{n} images of *a photo of a tench* from {generator} and {n} real photos of tenches ({natural}); "
                    "CLIP ({clip}) measures how far each set spreads.",
            chart_title="How varied each set is",
            look_for=(
                "Vendi score: the effective number of different images (1 = all the same, 8 = all different). The "
                "generated set's dot to the left of the real photos' means the model repeats itself.",
                "Mean pairwise cosine: how alike two images of a set are on average; higher for the generated set "
                "means variations of one picture.",
                "Then compare the two rows of images below: pose, framing, background, lighting.",
            ),
            full_page="pages/diversity.py", full_page_title="Diversity", try_it="run with natural class",
            extra_settings=(SettingUsed("Statistics", "Vendi score (Friedman & Dieng 2023) and mean pairwise cosine of "
                                                      "the L2-normalised CLIP embeddings; " + INTERVALS),),
            statistics=("Vendi score", "mean pairwise cosine"),
        ),
        Lesson(
            key="concept", number=4, finding="Inability to represent the concept",
            question="Does CLIP recognise generated images as their class as often as real photos of that class?",
            experiment=LessonExperiment(n=6, classes=LESSON_CLASSES, candidates=IMAGENETTE_CLASSES),
            summary="{n} images each of {classes} from {generator}, and {n} real photos of each ({natural}); CLIP "
                    "({clip}) names every image among the {candidates} Imagenette classes.",
            chart_title="Share of images CLIP names as their own class",
            look_for=(
                "Two dots per class: the share of generated images (red) and of real photos (blue) that CLIP names "
                "correctly among the ten classes; the dashed line is chance.",
                "A class whose red dot sits far left of its blue one is a concept the model does not draw: the "
                "images look real but show something else.",
                "Real photos are the check on CLIP itself: where blue is low too, blame CLIP, not the generator.",
            ),
            full_page="pages/adherence.py", full_page_title="Adherence (confusable classes)",
            try_it="one class among candidates",
            extra_settings=(
                SettingUsed("Recognised", f"CLIP's zero-shot top-1 among the class names (each name in "
                                          f"{len(ZERO_SHOT_TEMPLATES)} templates, averaged), as the Adherence page's "
                                          f"confusable-class rank 1; " + INTERVALS),
            ),
        ),
        Lesson(
            key="geometry", number=5, finding="Geometry of CLIP embeddings",
            question="In CLIP space, do generated images sit closer to their prompt than real photos of the class "
                     "do?",
            experiment=LessonExperiment(n=6, classes=LESSON_CLASSES),
            summary="{n} images each of {classes} from {generator}, and {n} real photos of each ({natural}); CLIP "
                    "({clip}) embeds the images and each class's prompt.",
            chart_title="Closeness to the prompt: cos(prompt, centroid)",
            look_for=(
                "Each dot is the cosine between a class's prompt and the centre of its images: further right = "
                "closer to the text.",
                "Red right of blue: the generated images gather around the prompt's own embedding, while real "
                "photos of the class spread away from it. In how many classes does that happen?",
                "Both stay far below 1: CLIP keeps images and texts in separate regions (the modality gap), so "
                "compare red with blue, not with 1.",
            ),
            full_page="pages/clip_geometry.py", full_page_title="CLIP geometry", try_it="class list",
            extra_settings=(
                SettingUsed("Closeness", "cosine between the prompt's text embedding and the normalised mean of the "
                                         "class's image embeddings, as on the CLIP geometry page; 95% normal bootstrap "
                                         f"intervals ({BOOTSTRAP_RESAMPLES} resamples within the class, seed 0)"),
            ),
        ),
    )
}


# -- "Try it yourself": the full page's own URL parameters -------------------------------------------------------------
def _ambiguity_params(exp: LessonExperiment, source: str, focus: str | None) -> dict[str, str]:
    return exp.ambiguity_request().to_params()


def _run_with_natural(exp: LessonExperiment, source: str, focus: str | None) -> dict[str, str]:
    return {**exp.run_request().to_params(), "ref": source, "ref_class": exp.natural_class}


def _one_class_among_candidates(exp: LessonExperiment, source: str, focus: str | None) -> dict[str, str]:
    """The Adherence page's confusable-class rank for one class of the list: its prompt, its natural photos and
    the same candidate names (as the page writes them) with the class as the intended one."""
    name = focus if focus in exp.classes else exp.classes[0]
    prompt = exp.class_spec(source).prompts()[name]
    return {**exp.run_request(prompt).to_params(), "ref": source, "ref_class": name,
            "classes": ", ".join(class_display(c) for c in exp.candidates), "intended": class_display(name)}


def _class_list(exp: LessonExperiment, source: str, focus: str | None) -> dict[str, str]:
    return exp.class_spec(source).to_params()


TRY_IT_BUILDERS: dict[str, Callable[[LessonExperiment, str, str | None], dict[str, str]]] = {
    "ambiguity request": _ambiguity_params,
    "run with natural class": _run_with_natural,
    "one class among candidates": _one_class_among_candidates,
    "class list": _class_list,
}


def try_it_params(lesson: Lesson, exp: LessonExperiment | None = None, source: str = "imagenette",
                  focus: str | None = None) -> dict[str, str]:
    """The URL parameters that open `lesson.full_page` with the lesson's settings (`exp`: the lesson's experiment
    with the models actually used; `source`: the natural-photo source id; `focus`: the class to open, for lessons
    whose page shows one class)."""
    return TRY_IT_BUILDERS[lesson.try_it](exp or lesson.experiment, source, focus)


# -- settings, with where each comes from ----------------------------------------------------------------------------
def settings_table(lesson: Lesson, exp: LessonExperiment, natural: str = "",
                   models_chosen: bool = False) -> list[SettingUsed]:
    """Every setting the lesson uses, each labelled FROM_PAPER or LAB_CHOICE (or YOUR_CHOICE for models picked
    through the link or the page)."""
    first = exp.requests()[0]
    preset = GENERATORS[exp.generator]
    model_origin = YOUR_CHOICE if models_chosen else LAB_CHOICE
    rows = [SettingUsed("Finding", f"'{lesson.finding}': {PAPER}, {PAPER_URL}", FROM_PAPER)]
    prompts = exp.prompts()
    rows.append(SettingUsed("Prompts" if len(prompts) > 1 else "Prompt", "; ".join(f"'{p}'" for p in prompts)))
    if exp.classes:
        rows.append(SettingUsed("Prompt template", f"{CLASS_TEMPLATES[exp.template].label} (core.analysis.classes)"))
    rows.append(SettingUsed("Images", f"{exp.n} per prompt, seeds {exp.first_seed}-{exp.first_seed + exp.n - 1}"))
    rows.append(SettingUsed("Generator", f"{preset.label}, {preset.model_id}: {first.steps} steps, guidance "
                                         f"{first.guidance:g}, {first.size} px (the preset's defaults)", model_origin))
    rows.append(SettingUsed("CLIP", CLIP_MODELS[exp.clip].label, model_origin))
    if exp.natural_classes():
        rows.append(SettingUsed("Natural photos", f"{exp.n} per class from {natural or 'Imagenette'}, a fixed sample "
                                                  f"(seed {NATURAL_SEED})"))
    if exp.candidates:
        rows.append(SettingUsed("Class names", ", ".join(class_display(c) for c in exp.candidates)))
    return rows + list(lesson.extra_settings)


def summary_text(lesson: Lesson, exp: LessonExperiment, natural: str = "Imagenette") -> str:
    """The lesson's summary as Markdown; model labels and folder names are user text (local models, folders)."""
    from core.present.markup import md_literal

    names = [f"*{md_literal(class_display(c))}*" for c in exp.classes]
    classes = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    return lesson.summary.format(n=exp.n, generator=md_literal(GENERATORS[exp.generator].label.split(" (")[0]),
                                 clip=md_literal(CLIP_MODELS[exp.clip].label.split(" (")[0]),
                                 natural=md_literal(natural), classes=classes,
                                 candidates=len(exp.candidates))


# -- natural photos: which source --------------------------------------------------------------------------------------
def pick_natural_source(available: dict[str, Sequence[str]], needed: Sequence[str],
                        wanted: str | None = None) -> tuple[str | None, list[str]]:
    """(source id or None, problems). `available`: each source id (core.pipeline.natural.reference_sources order) with
    the classes it holds now (empty: missing or not downloaded). The link's `wanted` source if it has every needed
    class, else the first source that does; None when no source has them."""
    problems = []
    has_all = [sid for sid, classes in available.items() if set(needed) <= set(classes)]
    if wanted is not None:
        if wanted in has_all:
            return wanted, problems
        problems.append(f"The link's natural-photo source '{wanted}' "
                        + ("is not configured on this machine" if wanted not in available else
                           f"lacks {', '.join(sorted(set(needed) - set(available[wanted])))}")
                        + (f": using '{has_all[0]}'." if has_all else "."))
    return (has_all[0] if has_all else None), problems


# -- lesson 4: recognition among class names ---------------------------------------------------------------------------
RECOGNITION_COLUMNS = ["class", "source", "value", "low", "high", "n", "recognised"]


def recognition_rows(classes: Sequence[str], embeddings: dict[str, Sequence[np.ndarray]],
                     class_vectors: np.ndarray, candidates: Sequence[str]) -> pd.DataFrame:
    """Per class and source: the share of images CLIP ranks as their own class first among `candidates` (the
    Adherence page's "top-1 (intended class ranked first)", same estimate and interval). `embeddings`: source ->
    one (n, d) array per class, in `classes` order; `class_vectors`: one zero-shot vector per candidate."""
    names = [class_display(c) for c in candidates]
    rows = []
    for i, cls in enumerate(classes):
        target = names.index(class_display(cls))
        for source, per_class in embeddings.items():
            top1 = rank_estimates(ranks(per_class[i], class_vectors, target))[0]
            rows.append({"class": class_display(cls), "source": source, "value": top1.value, "low": top1.low,
                         "high": top1.high, "n": top1.n, "recognised": int(round(top1.value * top1.n))})
    return pd.DataFrame(rows, columns=RECOGNITION_COLUMNS)


def weakest_class(rows: pd.DataFrame) -> str | None:
    """The class whose generated images CLIP recognises least often compared with its real photos (the largest
    natural-minus-synthetic share; ties: the first in order). None without both sources."""
    wide = rows.pivot(index="class", columns="source", values="value")
    if not {"synthetic", "natural"} <= set(wide.columns) or wide.empty:
        return None
    gap = (wide["natural"] - wide["synthetic"]).reindex(list(dict.fromkeys(rows["class"])))
    return str(gap.idxmax()) if gap.notna().any() else None


def recognition_reading(rows: pd.DataFrame, k: int) -> str:
    """One sentence: how many images of each source CLIP names correctly, pooled, and the weakest class."""
    parts = []
    for source, label in (("synthetic", "generated images"), ("natural", "real photos")):
        sub = rows[rows["source"] == source]
        if len(sub):
            hit, total = int(sub["recognised"].sum()), int(sub["n"].sum())
            parts.append(f"{hit} of {total} {label} ({hit / total:.0%})" if total else f"no {label}")
    text = f"CLIP names {' and '.join(parts)} as their own class among {k} class names (chance {1 / k:.0%})."
    weak = weakest_class(rows)
    if weak is not None:
        syn = rows[(rows["class"] == weak) & (rows["source"] == "synthetic")].iloc[0]
        nat = rows[(rows["class"] == weak) & (rows["source"] == "natural")].iloc[0]
        if nat["value"] > syn["value"]:
            text += (f" Furthest behind: '{weak}', {syn['recognised']} of {syn['n']} generated vs "
                     f"{nat['recognised']} of {nat['n']} real.")
    return text


# -- lesson 5: prompt closeness per class ------------------------------------------------------------------------------
CLOSENESS = "cos(prompt, centroid)"


def closeness_rows(classes: Sequence[str], embeddings: dict[str, Sequence[np.ndarray]],
                   texts: np.ndarray) -> pd.DataFrame:
    """Per class and source: cos(prompt, centroid) with its interval, computed as the CLIP geometry page does for
    its per-class table (core.analysis.geometry.source_geometry on the class's rows, labels = the class index)."""
    rows = []
    for i, cls in enumerate(classes):
        for source, per_class in embeddings.items():
            x = per_class[i]
            e = next(e for e in source_geometry(x, np.full(len(x), i), texts) if e.name == CLOSENESS)
            rows.append({"class": class_display(cls), "source": source, "value": e.value, "low": e.low,
                         "high": e.high, "n": e.n})
    return pd.DataFrame(rows, columns=["class", "source", "value", "low", "high", "n"])


def closeness_reading(rows: pd.DataFrame) -> str:
    wide = rows.pivot(index="class", columns="source", values="value")
    if not {"synthetic", "natural"} <= set(wide.columns):
        return "Needs generated images and real photos to compare."
    nearer = int((wide["synthetic"] > wide["natural"]).sum())
    return (f"In {nearer} of {len(wide)} classes the generated images' centre sits closer to the prompt than the real "
            f"photos' centre (mean cosine {wide['synthetic'].mean():.3f} vs {wide['natural'].mean():.3f}).")
