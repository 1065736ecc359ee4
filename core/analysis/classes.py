"""The class-list experiment shared by the Synthetic vs Natural, Train on synthetic and CLIP geometry pages.

One spec (`ClassListSpec`, what the URL holds) -> one or more RunRequests per class (synthetic images, through the
cache) plus a fixed sample of natural photos per class from a reference folder -> CLIP embeddings of both and of each
class's prompt text (`ClassData`, `ClassListData`). The analyses (core.analysis.compare, core.analysis.probe,
core.analysis.geometry) take the arrays; nothing here imports streamlit.

Prompt templates are data (`CLASS_TEMPLATES`). Two families:
- the lab's own templates ("a photo of a {class}", "..., a type of {hypernym}", "..., {definition}"), filled from
  `CLASS_LEXICON`: short plain-language glosses the lab wrote for the Imagenette classes (not WordNet's text);
- the templates of Sariyildiz et al., CVPR 2023 (core.present.literature cites them): "c", "c, h_c", "c, d_c" and
  "c, h_c inside b", filled from `WORDNET_IMAGENETTE` (WordNet 3.0's own hypernym and definition of each Imagenette
  synset, shipped as data because the lab runs offline) and `PLACES365_BACKGROUNDS`.
A class neither table knows can get its hypernym and definition from the user (`parse_user_lexicon`, kept in the
spec and the URL); otherwise its prompt falls back to the template's fallback and `prompt_for` says so, instead of
writing "a type of None".
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from core.analysis.diversity import ImageSet
from core.pipeline.generate import MAX_IMAGES, RunRequest, clip_model_keys, generator_key, validate_request
from core.pipeline.local import generator_preset
from core.pipeline.params import Param, finite_number, out_of_range, read_params, whole_number, write_params
from core.pipeline.registry import DEFAULT_CLIP, DEFAULT_GENERATOR, GENERATORS

# -- prompt templates --------------------------------------------------------------------------------------------

# class name -> (hypernym, short definition): the lab's own plain-language glosses (not WordNet's wording).
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
class WordNetEntry:
    """One ImageNet class as WordNet 3.0 has it (ImageNet's classes are WordNet 3.0 noun synsets)."""

    wnid: str  # ImageNet's id: "n" + the synset's offset in data.noun
    lemmas: tuple[str, ...]  # the synset's words, in WordNet's order
    hypernym: str  # first lemma of the synset's first hypernym (NLTK: synset.hypernyms()[0].lemma_names()[0])
    hypernym_offset: str
    definition: str  # the gloss without its quoted examples (NLTK: synset.definition())


# Read from WordNet 3.0's data.noun (Debian package wordnet-base 1:3.0-37): the hypernym is the first "@" pointer,
# the definition is the gloss with its quoted examples removed, as NLTK's WordNet reader does. golf_ball has two
# hypernyms (ball, golf equipment): the first is used.
WORDNET_IMAGENETTE: dict[str, WordNetEntry] = {
    "tench": WordNetEntry("n01440764", ("tench", "Tinca tinca"), "cyprinid", "01439121",
                          "freshwater dace-like game fish of Europe and western Asia noted for ability to survive "
                          "outside water"),
    "english_springer": WordNetEntry("n02102040", ("English springer", "English springer spaniel"),
                                     "springer spaniel", "02101861", "a breed having typically a black-and-white coat"),
    "cassette_player": WordNetEntry("n02979186", ("cassette player",), "electronic equipment", "03278248",
                                    "electronic equipment for playing cassettes"),
    "chain_saw": WordNetEntry("n03000684", ("chain saw", "chainsaw"), "power saw", "03996145",
                              "portable power saw; teeth linked to form an endless chain"),
    "church": WordNetEntry("n03028079", ("church", "church building"), "place of worship", "03953416",
                           "a place for public (especially Christian) worship"),
    "french_horn": WordNetEntry("n03394916", ("French horn", "horn"), "brass", "02891788",
                                "a brass musical instrument consisting of a conical tube that is coiled into a spiral "
                                "and played by means of valves"),
    "garbage_truck": WordNetEntry("n03417042", ("garbage truck", "dustcart"), "truck", "04490091",
                                  "a truck for collecting domestic refuse"),
    "gas_pump": WordNetEntry("n03425413", ("gas pump", "gasoline pump", "petrol pump", "island dispenser"), "pump",
                             "04021798", "a pump in a service station that draws gasoline from underground storage "
                                         "tanks"),
    "golf_ball": WordNetEntry("n03445777", ("golf ball",), "ball", "02778669",
                              "a small hard ball used in playing golf; dimpled to reduce wind resistance"),
    "parachute": WordNetEntry("n03888257", ("parachute", "chute"), "rescue equipment", "04077734",
                              "rescue equipment consisting of a device that fills with air and retards your fall"),
}

# A short list of Places365 scene categories (Zhou et al., TPAMI 2018; names as in categories_places365.txt, "_" as
# a space). Sariyildiz et al. draw the background b from Places365's 365 categories; the lab ships these 12 so it
# runs offline. Which 12: the lab's own choice (indoor and outdoor, none that names an Imagenette class).
PLACES365_BACKGROUNDS: tuple[str, ...] = ("airfield", "alley", "beach", "bedroom", "campsite", "forest path",
                                          "highway", "kitchen", "living room", "mountain", "parking lot", "street")
# The paper draws one background per image at random. The lab gives blocks of BACKGROUND_BLOCK consecutive seeds the
# same background, in list order (seeds 0-3: airfield, 4-7: alley, ...): a seed always gets the same background (so
# cached images are reused when N grows) and images are still generated in batches.
BACKGROUND_BLOCK = 4

LEXICON_LAB = "lab"
LEXICON_WORDNET = "wordnet"


@dataclass(frozen=True)
class ClassTemplate:
    key: str  # stable, for URLs
    label: str
    pattern: str  # placeholders: {class}, and optionally {hypernym}, {definition}, {background}
    fallback: str = "a photo of a {class}"  # for classes whose hypernym/definition nobody supplied
    lexicon: str = LEXICON_LAB  # where {hypernym} / {definition} come from: CLASS_LEXICON or WORDNET_IMAGENETTE
    source: str = ""  # a core.present.literature source key when the template is a paper's, else "" (the lab's own)

    @property
    def needs_lexicon(self) -> bool:
        return "{hypernym}" in self.pattern or "{definition}" in self.pattern

    @property
    def needs_background(self) -> bool:
        return "{background}" in self.pattern


SARIYILDIZ = "sariyildiz2023"
CLASS_TEMPLATES: dict[str, ClassTemplate] = {
    t.key: t
    for t in (
        ClassTemplate("photo", "a photo of a {class}", "a photo of a {class}"),
        ClassTemplate("name", "the bare class name", "{class}"),
        ClassTemplate("hypernym", "a photo of a {class}, a type of {hypernym}", "a photo of a {class}, a type of "
                                                                                   "{hypernym}"),
        ClassTemplate("definition", "a photo of a {class}, {definition}", "a photo of a {class}, {definition}"),
        # Sariyildiz et al. 2023, Sec. 3 notation: c = class name, h_c = its WordNet hypernym, d_c = its WordNet
        # definition, b = a Places365 scene. Their first prompt, "c", is the "name" template above.
        ClassTemplate("wn-hypernym", "c, h_c: {class}, {hypernym} (WordNet hypernym)", "{class}, {hypernym}",
                      fallback="{class}", lexicon=LEXICON_WORDNET, source=SARIYILDIZ),
        ClassTemplate("wn-definition", "c, d_c: {class}, {definition} (WordNet definition)",
                      "{class}, {definition}", fallback="{class}", lexicon=LEXICON_WORDNET, source=SARIYILDIZ),
        ClassTemplate("wn-background", "c, h_c inside b: {class}, {hypernym} inside {background} (Places365)",
                      "{class}, {hypernym} inside {background}", fallback="{class} inside {background}",
                      lexicon=LEXICON_WORDNET, source=SARIYILDIZ),
    )
}
DEFAULT_CLASS_TEMPLATE = "photo"

# What the user typed for classes the tables do not know: class -> (hypernym, definition); "" = not given.
UserLexicon = tuple[tuple[str, str, str], ...]
MAX_USER_LEXICON = 200
MAX_LEXICON_TEXT = 300  # characters per hypernym or definition: a prompt longer than CLIP reads is cut anyway


def _lookup(class_name: str, template: ClassTemplate, user: UserLexicon = ()) -> tuple[str, str] | None:
    """(hypernym, definition) for the template's lexicon; the user's entry for the class comes first."""
    key = class_name.lower().replace(" ", "_")
    for name, hypernym, definition in user:
        if name.lower().replace(" ", "_") == key:
            return hypernym, definition
    if template.lexicon == LEXICON_WORDNET:
        entry = WORDNET_IMAGENETTE.get(class_name) or WORDNET_IMAGENETTE.get(key)
        return (entry.hypernym, entry.definition) if entry else None
    return CLASS_LEXICON.get(class_name) or CLASS_LEXICON.get(key)


def missing_words(class_name: str, template_key: str, user: UserLexicon = ()) -> list[str]:
    """What the template needs for this class and nobody supplied: [] when the prompt can be written in full."""
    template = CLASS_TEMPLATES[template_key]
    if not template.needs_lexicon:
        return []
    known = _lookup(class_name, template, user)
    wanted = [w for w in ("hypernym", "definition") if "{" + w + "}" in template.pattern]
    if known is None:
        return wanted
    return [w for w, value in zip(("hypernym", "definition"), known) if w in wanted and not value.strip()]


def prompt_for(class_name: str, template_key: str = DEFAULT_CLASS_TEMPLATE, user: UserLexicon = (),
               background: str | None = None) -> tuple[str, bool]:
    """(prompt, used_fallback). Underscores in folder names become spaces ("golf_ball" -> "golf ball").
    `background` fills {background} (default: the first of PLACES365_BACKGROUNDS)."""
    template = CLASS_TEMPLATES[template_key]
    words = class_name.replace("_", " ")
    missing = missing_words(class_name, template_key, user)
    pattern = template.fallback if missing else template.pattern
    hypernym, definition = ("", "") if missing else (_lookup(class_name, template, user) or ("", ""))
    text = (pattern.replace("{class}", words).replace("{hypernym}", hypernym).replace("{definition}", definition)
            .replace("{background}", background if background is not None else PLACES365_BACKGROUNDS[0]))
    return text, bool(missing)


def display_prompt(class_name: str, template_key: str, user: UserLexicon = ()) -> str:
    """The class's prompt as the pages show it: a background template shows its slot as '<Places365 scene>'."""
    if not CLASS_TEMPLATES[template_key].needs_background:
        return prompt_for(class_name, template_key, user)[0]
    return prompt_for(class_name, template_key, user, background="<Places365 scene>")[0]


def background_for(seed: int) -> str:
    return PLACES365_BACKGROUNDS[(seed // BACKGROUND_BLOCK) % len(PLACES365_BACKGROUNDS)]


def seed_blocks(first_seed: int, n: int) -> list[tuple[int, int]]:
    """[(first seed, count)] of the seed range cut at multiples of BACKGROUND_BLOCK (one background each)."""
    blocks, seed, end = [], first_seed, first_seed + n
    while seed < end:
        stop = min(end, (seed // BACKGROUND_BLOCK + 1) * BACKGROUND_BLOCK)
        blocks.append((seed, stop - seed))
        seed = stop
    return blocks


_LEXICON_LINE = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")


def parse_user_lexicon(text: str) -> tuple[UserLexicon, list[str]]:
    """'class: hypernym | definition' per line (definition optional; blank lines and '#' comments ignored) ->
    (entries, problems). Problems are sentences naming the line and how to write it."""
    entries, problems, seen = [], [], set()
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LEXICON_LINE.match(line)
        if not match:
            problems.append(f"Line {number} ({line.strip()[:60]!r}) has no ':'. Write it as "
                            f"'class: hypernym | definition', e.g. 'axolotl: salamander | a larval salamander of "
                            f"Mexican lakes'.")
            continue
        name, rest = match.group(1).strip(), match.group(2)
        hypernym, _, definition = (part.strip() for part in rest.partition("|"))
        if not hypernym and not definition:
            problems.append(f"Line {number} gives nothing for '{name}': write a hypernym and/or a definition after "
                            f"the ':'.")
            continue
        if max(len(hypernym), len(definition)) > MAX_LEXICON_TEXT:
            problems.append(f"Line {number}: keep the hypernym and the definition under {MAX_LEXICON_TEXT} characters "
                            f"each (the text encoder reads about 75 words of the whole prompt).")
            continue
        key = name.lower().replace(" ", "_")
        if key in seen:
            problems.append(f"Line {number} repeats '{name}': only its first line is used.")
            continue
        seen.add(key)
        entries.append((name, hypernym, definition))
    if len(entries) > MAX_USER_LEXICON:
        problems.append(f"{len(entries)} lines: only the first {MAX_USER_LEXICON} are used.")
        entries = entries[:MAX_USER_LEXICON]
    return tuple(entries), problems


def format_user_lexicon(entries: UserLexicon) -> str:
    return "\n".join(f"{name}: {hypernym}" + (f" | {definition}" if definition else "")
                     for name, hypernym, definition in entries)


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
    source: str = "imagenette"  # an id of core.pipeline.natural.reference_sources
    template: str = DEFAULT_CLASS_TEMPLATE
    n: int = DEFAULT_N  # synthetic images per class
    n_natural: int = DEFAULT_NATURAL  # natural photos per class (at most; fewer when the folder has fewer)
    generator: str = DEFAULT_GENERATOR
    clip: str = DEFAULT_CLIP
    first_seed: int = 0
    steps: int | None = None  # None: the generator preset's default (so older links keep their images)
    guidance: float | None = None
    lexicon: UserLexicon = ()  # the user's hypernyms/definitions for classes the tables do not know

    def to_params(self) -> dict[str, str]:
        return write_params(self, CLASS_LIST_PARAMS)

    @classmethod
    def from_params(cls, params: dict[str, str]) -> tuple[ClassListSpec | None, list[str]]:
        """Parse URL parameters. (spec or None, problems): a tampered link gets sentences, not a traceback.
        No `classes` parameter: (None, [])."""
        if "classes" not in params:
            return None, []
        values, problems = read_params(CLASS_LIST_PARAMS, params)
        return cls(**values), problems

    def prompts(self) -> dict[str, str]:
        """One prompt per class, as shown (a background template shows its slot, see `display_prompt`)."""
        return {c: display_prompt(c, self.template, self.lexicon) for c in self.classes}

    def fallback_classes(self) -> list[str]:
        """Classes whose prompt fell back to the template's fallback (nobody supplied their hypernym/definition)."""
        return [c for c in self.classes if missing_words(c, self.template, self.lexicon)]

    def class_requests(self) -> list[tuple[str, list[RunRequest]]]:
        """Per class, its requests with the generator preset's defaults (steps, guidance, size) where the spec
        leaves them unset. One request per class, except with a {background} template: one per seed block
        (`seed_blocks`), each with its own background."""
        preset = generator_preset(self.generator)
        template = CLASS_TEMPLATES[self.template]
        out = []
        for name in self.classes:
            if template.needs_background:
                blocks = [(prompt_for(name, self.template, self.lexicon, background_for(seed))[0], seed, count)
                          for seed, count in seed_blocks(self.first_seed, self.n)]
            else:
                blocks = [(prompt_for(name, self.template, self.lexicon)[0], self.first_seed, self.n)]
            out.append((name, [RunRequest(prompt, count, self.generator, steps=self.steps, guidance=self.guidance,
                                          first_seed=seed, clip=self.clip).with_preset_defaults(preset)
                               for prompt, seed, count in blocks]))
        return out

    def requests(self) -> list[RunRequest]:
        return [req for _, reqs in self.class_requests() for req in reqs]

    def describe(self) -> dict:
        return {**asdict(self), "prompts": self.prompts()}



def _class_names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.strip() for c in str(text).split(",") if c.strip()))


def _read_lexicon(text: str) -> UserLexicon:
    try:
        return tuple((str(a), str(b), str(c)) for a, b, c in json.loads(text))[:MAX_USER_LEXICON]
    except (ValueError, TypeError) as exc:
        raise ValueError("it is not readable JSON rows of [class, hypernym, definition].") from exc


def _write_lexicon(lexicon: UserLexicon) -> str:
    return json.dumps([list(e) for e in lexicon], separators=(",", ":"), ensure_ascii=False)


# The URL of a class-list experiment (Synthetic vs natural, Train on synthetic, CLIP geometry), one row per parameter.
CLASS_LIST_PARAMS = (
    Param("classes", "classes", _class_names, ",".join),
    Param("ref", "source", label="natural-photo source"),
    Param("template", "template", known=lambda: CLASS_TEMPLATES, label="prompt template"),
    Param("n", "n", whole_number, low=MIN_PER_CLASS, high=MAX_IMAGES, label="synthetic images per class",
          why="a class with one image has no spread, no neighbour and no held-out fold."),
    Param("n_nat", "n_natural", whole_number, low=MIN_PER_CLASS, high=MAX_NATURAL, label="natural photos per class"),
    Param("generator", "generator", generator_key),
    Param("clip", "clip", known=clip_model_keys, label="CLIP model"),
    Param("seed", "first_seed", whole_number, low=0, label="the first seed"),
    Param("steps", "steps", whole_number, optional=True),
    Param("guidance", "guidance", finite_number, low=0, high=30, optional=True),
    Param("lex", "lexicon", _read_lexicon, _write_lexicon, optional=True, label="hypernyms and definitions"),
)
URL_PARAMS = tuple(p.name for p in CLASS_LIST_PARAMS)  # what a page keeps of another page's experiment

def _preset_or_none(key: str):
    """The generator's preset (a registry key or a model folder here); None when the key names neither."""
    try:
        return generator_preset(key)
    except (KeyError, ValueError):
        return None


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
    problems += out_of_range(spec, CLASS_LIST_PARAMS)  # N, natural photos, the first seed, template, CLIP model
    preset = _preset_or_none(spec.generator)
    if preset and spec.guidance is not None and not preset.supports_guidance:
        problems.append(f"{preset.label} ignores classifier-free guidance, so guidance {spec.guidance:g} would not "
                        f"be used. Choose a generator that uses guidance (e.g. {GENERATORS['sd-1.5'].label}) or "
                        f"clear the Guidance field.")
    if preset and spec.classes and not problems:
        problems += validate_request(spec.requests()[0], preset)
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
class ClassListData:
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


def prompt_ensemble(vectors: np.ndarray) -> np.ndarray:
    """One text vector for a class written with several prompts (one per background): the L2-normalised mean of
    their unit embeddings, CLIP's prompt-ensembling recipe (Radford et al. 2021)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    mean = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)
