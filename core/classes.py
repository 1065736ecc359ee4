"""The class-list experiment shared by the Synthetic vs Natural, Train on synthetic and CLIP geometry pages.

One spec (`ClassListSpec`, what the URL holds) -> one RunRequest per class (synthetic images, through the cache)
plus a fixed sample of natural photos per class from a reference folder -> CLIP embeddings of both and of each
class's prompt text (`ClassData`, `Experiment`). The analyses (core.compare, core.probe, core.geometry) take
the arrays; nothing here imports streamlit.

Prompt templates are data: `CLASS_TEMPLATES`, filled from a small lexicon (`CLASS_LEXICON`: a hypernym and a
one-line definition for each Imagenette class, WordNet-style). A class the lexicon does not know falls back to the
plain "a photo of a {class}" prompt, and `prompt_for` says so, instead of writing "a type of None".
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .diversity import ImageSet
from .generate import MAX_IMAGES, RunRequest, validate_request
from .registry import CLIP_MODELS, DEFAULT_CLIP, DEFAULT_GENERATOR, GENERATORS

# -- prompt templates --------------------------------------------------------------------------------------------

# class name -> (hypernym, short definition). WordNet-style glosses for the 10 Imagenette classes.
CLASS_LEXICON: dict[str, tuple[str, str]] = {
    "tench": ("fish", "a freshwater fish of the carp family"),
    "english_springer": ("dog", "a breed of spaniel with a liver-and-white or black-and-white coat"),
    "cassette_player": ("electronic device", "a device that plays audio cassette tapes"),
    "chain_saw": ("power tool", "a portable saw whose teeth are on a motor-driven chain"),
    "church": ("building", "a building for public Christian worship"),
    "french_horn": ("brass instrument", "a brass wind instrument with a coiled tube and a flaring bell"),
    "garbage_truck": ("truck", "a truck that collects household rubbish"),
    "gas_pump": ("pump", "a pump at a filling station that dispenses fuel into cars"),
    "golf_ball": ("ball", "a small hard dimpled ball used in golf"),
    "parachute": ("rescue equipment", "a canopy that fills with air and slows a fall from an aircraft"),
}


@dataclass(frozen=True)
class ClassTemplate:
    key: str  # stable, for URLs
    label: str
    pattern: str  # placeholders: {class}, and optionally {hypernym} or {definition} (from CLASS_LEXICON)
    fallback: str = "a photo of a {class}"  # for classes the lexicon does not know


CLASS_TEMPLATES: dict[str, ClassTemplate] = {
    t.key: t
    for t in (
        ClassTemplate("photo", "a photo of a {class}", "a photo of a {class}"),
        ClassTemplate("name", "the bare class name", "{class}"),
        ClassTemplate("hypernym", "a photo of a {class}, a type of {hypernym}", "a photo of a {class}, a type of "
                                                                                   "{hypernym}"),
        ClassTemplate("definition", "a photo of a {class}, {definition}", "a photo of a {class}, {definition}"),
    )
}
DEFAULT_CLASS_TEMPLATE = "photo"


def prompt_for(class_name: str, template_key: str = DEFAULT_CLASS_TEMPLATE) -> tuple[str, bool]:
    """(prompt, used_fallback). Underscores in folder names become spaces ("golf_ball" -> "golf ball")."""
    template = CLASS_TEMPLATES[template_key]
    words = class_name.replace("_", " ")
    known = CLASS_LEXICON.get(class_name) or CLASS_LEXICON.get(class_name.lower().replace(" ", "_"))
    needs_lexicon = "{hypernym}" in template.pattern or "{definition}" in template.pattern
    if needs_lexicon and known is None:
        return template.fallback.replace("{class}", words), True
    hypernym, definition = known or ("", "")
    return (template.pattern.replace("{class}", words).replace("{hypernym}", hypernym)
            .replace("{definition}", definition)), False


# -- the experiment spec -----------------------------------------------------------------------------------------

IMAGENETTE_CLASSES = ("tench", "english_springer", "cassette_player", "chain_saw", "church", "french_horn",
                      "garbage_truck", "gas_pump", "golf_ball", "parachute")
MIN_PER_CLASS = 2  # below this no statistic, fold or split exists: the form refuses it
MAX_NATURAL = 1000
DEFAULT_N = 16
DEFAULT_NATURAL = 100
NATURAL_SEED = 0  # the natural sample of each class is fixed: same photos every time


@dataclass(frozen=True)
class ClassListSpec:
    """What a class-list experiment asks for. The URL holds exactly this (`to_params` / `from_params`)."""

    classes: tuple[str, ...]
    source: str = "imagenette"  # an id of core.natural.reference_sources
    template: str = DEFAULT_CLASS_TEMPLATE
    n: int = DEFAULT_N  # synthetic images per class
    n_natural: int = DEFAULT_NATURAL  # natural photos per class (at most; fewer when the folder has fewer)
    generator: str = DEFAULT_GENERATOR
    clip: str = DEFAULT_CLIP
    first_seed: int = 0

    PARAMS = ("classes", "ref", "template", "n", "n_nat", "generator", "clip", "seed")

    def to_params(self) -> dict[str, str]:
        return {"classes": ",".join(self.classes), "ref": self.source, "template": self.template, "n": str(self.n),
                "n_nat": str(self.n_natural), "generator": self.generator, "clip": self.clip,
                "seed": str(self.first_seed)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> tuple[ClassListSpec | None, list[str]]:
        """Parse URL parameters. (spec or None, problems): a tampered link gets sentences, not a traceback.
        No `classes` parameter: (None, [])."""
        if "classes" not in params:
            return None, []
        problems: list[str] = []
        classes = tuple(dict.fromkeys(c.strip() for c in str(params["classes"]).split(",") if c.strip()))
        values: dict = {"classes": classes}
        for name, attr in (("ref", "source"), ("generator", "generator"), ("clip", "clip"),
                           ("template", "template")):
            if name in params:
                values[attr] = str(params[name])
        for name, attr in (("n", "n"), ("n_nat", "n_natural"), ("seed", "first_seed")):
            if name in params:
                try:
                    values[attr] = int(params[name])
                except ValueError:
                    problems.append(f"The link's '{name}' is {params[name]!r}, not a whole number: "
                                    f"the default is used.")
        if values.get("generator", DEFAULT_GENERATOR) not in GENERATORS:
            problems.append(f"The link names an unknown generator '{values['generator']}': the default is used.")
            values.pop("generator")
        if values.get("clip", DEFAULT_CLIP) not in CLIP_MODELS:
            problems.append(f"The link names an unknown CLIP model '{values['clip']}': the default is used.")
            values.pop("clip")
        if values.get("template", DEFAULT_CLASS_TEMPLATE) not in CLASS_TEMPLATES:
            problems.append(f"The link names an unknown prompt template '{values['template']}': "
                            f"'{CLASS_TEMPLATES[DEFAULT_CLASS_TEMPLATE].label}' is used.")
            values.pop("template")
        return cls(**values), problems

    def prompts(self) -> dict[str, str]:
        return {c: prompt_for(c, self.template)[0] for c in self.classes}

    def fallback_classes(self) -> list[str]:
        """Classes whose prompt fell back to the plain template (the lexicon does not know them)."""
        return [c for c in self.classes if prompt_for(c, self.template)[1]]

    def requests(self) -> list[RunRequest]:
        """One request per class, with the generator preset's defaults (steps, guidance, size)."""
        preset = GENERATORS[self.generator]
        return [RunRequest(prompt, self.n, self.generator, first_seed=self.first_seed, clip=self.clip)
                .with_preset_defaults(preset) for prompt in self.prompts().values()]

    def describe(self) -> dict:
        return {**asdict(self), "prompts": self.prompts()}


def validate_spec(spec: ClassListSpec, available: list[str] | None = None, min_classes: int = 1) -> list[str]:
    """Problems with a spec, each a sentence saying what to change. Empty: the spec can run."""
    problems = []
    if len(spec.classes) < min_classes:
        problems.append(f"Choose at least {min_classes} class{'es' if min_classes > 1 else ''} "
                        f"(got {len(spec.classes)}).")
    if available is not None:
        unknown = [c for c in spec.classes if c not in available]
        if unknown:
            problems.append(f"The reference folder has no class {', '.join(repr(c) for c in unknown)}. It has: "
                            f"{', '.join(available[:30])}{'...' if len(available) > 30 else ''}.")
    if not MIN_PER_CLASS <= spec.n <= MAX_IMAGES:
        problems.append(f"Synthetic images per class must be between {MIN_PER_CLASS} and {MAX_IMAGES} (got "
                        f"{spec.n}): a class with one image has no spread, no neighbour and no held-out fold.")
    if not MIN_PER_CLASS <= spec.n_natural <= MAX_NATURAL:
        problems.append(f"Natural photos per class must be between {MIN_PER_CLASS} and {MAX_NATURAL} "
                        f"(got {spec.n_natural}).")
    if spec.first_seed < 0:
        problems.append(f"The first seed must be a non-negative integer (got {spec.first_seed}).")
    if spec.generator in GENERATORS and spec.classes and not problems:
        problems += validate_request(spec.requests()[0], GENERATORS[spec.generator])
    return problems


def default_classes(available: list[str]) -> tuple[str, ...]:
    """The 10 Imagenette classes where the folder has them, else the folder's first 10 classes."""
    known = tuple(c for c in IMAGENETTE_CLASSES if c in available)
    return known or tuple(available[:10])


# -- the loaded experiment ---------------------------------------------------------------------------------------

@dataclass
class ClassData:
    """One class: its prompt, its synthetic and natural images and their (L2-normalised) CLIP embeddings."""

    name: str
    prompt: str
    synthetic: ImageSet
    natural: ImageSet
    syn_emb: np.ndarray
    nat_emb: np.ndarray
    text_emb: np.ndarray  # (d,): the prompt's text embedding


@dataclass
class Experiment:
    spec: ClassListSpec
    classes: list[ClassData]
    notes: list[str] = field(default_factory=list)  # what was left out and why, shown by the pages

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def stacked(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, class index per row) of one source ("synthetic" | "natural"), classes in order."""
        arrays = [c.syn_emb if source == "synthetic" else c.nat_emb for c in self.classes]
        labels = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrays)]) if arrays else np.zeros(0, int)
        return (np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32)), labels.astype(int)

    def texts(self) -> np.ndarray:
        return np.stack([c.text_emb for c in self.classes])

    def counts(self) -> list[dict]:
        return [{"class": c.name, "prompt": c.prompt, "synthetic images": len(c.synthetic),
                 "natural photos": len(c.natural)} for c in self.classes]


# -- prompt text embeddings, kept in the disk cache -----------------------------------------------------------------

def text_cache_key(prompt: str) -> str:
    """The embeddings table is keyed by an image's sha256; a prompt gets a namespaced key that no image hash can
    equal ('text:' + sha256 of the prompt), so a reopened experiment needs no CLIP model for its prompts."""
    return "text:" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def text_embeddings(cache, clip_key: str, prompts: list[str], get_clip: Callable) -> np.ndarray:
    """L2-normalised text embeddings of `prompts`, in order; only prompts not cached are embedded."""
    from .embed import embed_texts

    keys = [text_cache_key(p) for p in prompts]
    found = cache.get_embeddings(clip_key, keys)
    todo = [(k, p) for k, p in zip(keys, prompts) if k not in found]
    if todo:
        vectors = embed_texts(get_clip(), [p for _, p in todo])
        new = {k: v for (k, _), v in zip(todo, vectors)}
        cache.put_embeddings(clip_key, new)
        found.update(new)
    return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
