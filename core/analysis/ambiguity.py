"""Ambiguity: when a prompt has several readings ("crane": bird or machine), which does the generator draw?

The analysis as plain functions, used by pages/ambiguity.py and the tests:
1. Senses and presets (data), prompt variants that name one sense ("a photo of a crane, the bird"), and the request
   that holds them all (`AmbiguityRequest`, which round-trips through the URL).
2. Sense shares: every image gets its nearest sense by CLIP zero-shot (core.analysis.zeroshot), shares and the entropy
of
   the sense distribution with bootstrap intervals, per prompt variant.
3. Calibration: the same assignment on labelled natural photos, so its accuracy says how far the labels can be
   trusted with the chosen CLIP model.
4. An unsupervised view: k-means clusters of the image embeddings, each named by its nearest sense.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.analysis.diversity import ImageSet
from core.analysis.stats import Estimate
from core.analysis.zeroshot import Assignment, entropy_estimate, proportion_estimate, share_estimates
from core.pipeline.cache import sha256_bytes
from core.pipeline.generate import RunRequest
from core.pipeline.natural import IMAGE_SUFFIXES, NaturalImage
from core.pipeline.registry import DEFAULT_TEMPLATE, prompt_for_class

MAX_SENSES = 8
MAX_VARIANTS = 12
FIELD_SEPARATOR = "|"


# -- senses and presets ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sense:
    """One reading of an ambiguous word.

    name: short, for charts and variant prompts ("bird"). clip_text: what CLIP compares the images with, put into
    each zero-shot template ("crane bird"; blank: the name). definition: for the definition-style prompt variant
    (blank: the CLIP text). photo_labels: labels of natural photos showing this sense (ImageNet WordNet ids such
    as n02012849, or class-folder names), for calibration.
    """

    name: str
    clip_text: str = ""
    definition: str = ""
    photo_labels: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.clip_text or self.name

    @property
    def gloss(self) -> str:
        return self.definition or self.text


@dataclass(frozen=True)
class AmbiguityPreset:
    key: str
    term: str  # the ambiguous word, put into the prompt template
    senses: tuple[Sense, ...]
    note: str = ""


def _preset(key: str, term: str, *senses: tuple, note: str = "") -> AmbiguityPreset:
    return AmbiguityPreset(key, term, tuple(Sense(n, c, d, tuple(p)) for n, c, d, p in senses), note)


# Presets are data: adding one is adding an entry. Photo labels are ImageNet WordNet ids where ImageNet has the sense.
AMBIGUITY_PRESETS: dict[str, AmbiguityPreset] = {
    p.key: p
    for p in (
        _preset("crane", "crane",
                ("bird", "crane bird", "a tall wading bird with long legs and a long neck", ["n02012849"]),
                ("construction machine", "construction crane", "a tall machine that lifts heavy loads on building "
                 "sites", ["n03126707"]),
                note="ImageNet has both: class 134 (the bird) and 517 (the machine)."),
        _preset("bass", "bass",
                ("fish", "bass fish", "a freshwater fish caught by anglers", []),
                ("guitar", "bass guitar", "a four-string electric guitar with a deep sound", [])),
        _preset("jaguar", "jaguar",
                ("animal", "jaguar, the big cat", "a large spotted wild cat of the Americas", ["n02128925"]),
                ("car", "Jaguar car", "a British luxury car", [])),
        _preset("mouse", "mouse",
                ("animal", "mouse, the rodent", "a small rodent with a long thin tail", []),
                ("computer device", "computer mouse", "a hand-held pointing device for a computer", ["n03793489"])),
        _preset("bat", "bat",
                ("animal", "bat, the flying mammal", "a nocturnal flying mammal with leathery wings", []),
                ("baseball bat", "baseball bat", "a wooden club used to hit the ball in baseball", [])),
        _preset("apple", "apple",
                ("fruit", "apple fruit", "a round red or green fruit", ["n07742313"]),
                ("logo or computer", "Apple logo or Apple computer", "the logo of the company Apple, or one of its "
                 "computers", [])),
        _preset("kite", "kite",
                ("bird", "kite, the bird of prey", "a bird of prey with long wings and a forked tail", ["n01608432"]),
                ("toy", "kite, the flying toy", "a toy of fabric on a light frame, flown on a string in the wind", []),
                note="ImageNet's 'kite' (class 21) is the bird."),
        _preset("boxer", "boxer",
                ("dog", "boxer dog", "a short-haired dog breed with a square muzzle", ["n02108089"]),
                ("athlete", "boxer, the athlete", "a fighter wearing gloves in a boxing ring", []),
                note="ImageNet's 'boxer' (class 242) is the dog."),
        _preset("cardigan", "cardigan",
                ("corgi dog", "Cardigan Welsh Corgi", "a short-legged herding dog with a long tail", ["n02113186"]),
                ("sweater", "cardigan sweater", "a knitted sweater that buttons down the front", ["n02963159"]),
                note="ImageNet has both: 'Cardigan' (class 264, the dog) and 'cardigan' (class 474, the sweater)."),
        _preset("drake", "drake",
                ("duck", "drake, the male duck", "a male duck", ["n01847000"]),
                ("person", "Drake, the rapper", "the Canadian rapper and singer Drake", []),
                note="ImageNet's 'drake' (class 97) is the duck."),
        _preset("tiger-cat", "tiger cat",
                ("tiger cat", "tiger cat", "a domestic cat with tiger-like stripes", ["n02123159"]),
                ("tabby", "tabby cat", "a domestic cat with a striped, swirled or spotted coat", ["n02123045"]),
                ("tiger", "tiger", "a large wild cat with orange fur and black stripes", ["n02129604"]),
                note="ImageNet's 'tiger cat' and 'tabby' are near-duplicates; the prompt may also draw tigers."),
        _preset("sunglass", "sunglass",
                ("burning glass", "burning glass, a magnifying lens", "a lens that focuses sunlight to start a fire",
                 ["n04355933"]),
                ("sunglasses", "sunglasses", "dark glasses worn to protect the eyes from the sun", ["n04356056"]),
                note="ImageNet's 'sunglass' (class 836) is a burning glass; 'sunglasses' (837) are worn."),
        _preset("notebook", "notebook",
                ("notebook computer", "notebook computer", "a portable computer", ["n03832673", "n03642806"]),
                ("paper notebook", "paper notebook", "a book of blank pages for writing in", []),
                note="ImageNet's 'notebook' (class 681) is the computer, beside 'laptop' (620)."),
    )
}
DEFAULT_PRESET = "crane"


def format_senses(senses: Sequence[Sense]) -> str:
    """Senses as editable text: one per line, 'name | CLIP text | definition | photo labels'."""
    lines = []
    for s in senses:
        fields = [s.name, s.clip_text, s.definition, ", ".join(s.photo_labels)]
        while len(fields) > 1 and not fields[-1]:
            fields.pop()
        lines.append(f" {FIELD_SEPARATOR} ".join(fields))
    return "\n".join(lines)


def parse_senses(text: str) -> tuple[list[Sense], list[str]]:
    """Parse the senses text (see `format_senses`). Returns (senses, problems); blank lines and '#' lines are
    skipped; only the name is required."""
    senses, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(FIELD_SEPARATOR)]
        if len(fields) > 4:
            problems.append(f"Sense line {number} has {len(fields)} fields; write at most 4: "
                            f"'name | CLIP text | definition | photo labels'.")
            continue
        fields += [""] * (4 - len(fields))
        name, clip_text, definition, labels = fields
        if not name:
            problems.append(f"Sense line {number} has no name before the first '|': start it with a short name "
                            f"such as 'bird'.")
            continue
        senses.append(Sense(name, clip_text, definition,
                            tuple(label.strip() for label in labels.split(",") if label.strip())))
    return senses, problems


def validate_senses(senses: Sequence[Sense]) -> list[str]:
    problems = []
    if len(senses) < 2:
        problems.append(f"List at least two senses (got {len(senses)}): with one there is nothing to choose "
                        f"between. Add a line such as 'construction machine | construction crane'.")
    if len(senses) > MAX_SENSES:
        problems.append(f"List at most {MAX_SENSES} senses (got {len(senses)}): remove the least likely ones.")
    names = [s.name.lower() for s in senses]
    if len(set(names)) < len(names):
        problems.append("Two senses have the same name: give each its own, they label the charts.")
    texts = [s.text.lower() for s in senses]
    if len(set(texts)) < len(texts):
        problems.append("Two senses give CLIP the same text: CLIP could not tell them apart. Make each CLIP text "
                        "describe its sense.")
    return problems


# -- prompt variants -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantStyle:
    key: str
    label: str
    pattern: str  # fields: {prompt}, {sense} (its name), {definition}


VARIANT_STYLES: dict[str, VariantStyle] = {
    s.key: s
    for s in (
        VariantStyle("the-sense", "'<prompt>, the <sense>'", "{prompt}, the {sense}"),
        VariantStyle("parenthesis", "'<prompt> (<sense>)'", "{prompt} ({sense})"),
        VariantStyle("definition", "'<prompt>, <definition>'", "{prompt}, {definition}"),
    )
}
DEFAULT_STYLES = ("the-sense",)
BARE = "bare"
CUSTOM = "custom"


@dataclass(frozen=True)
class Variant:
    prompt: str
    style: str  # BARE, CUSTOM or a VARIANT_STYLES key
    sense: str | None = None  # the sense the variant names, if any


def make_variants(prompt: str, senses: Sequence[Sense], styles: Sequence[str] = DEFAULT_STYLES,
                  custom: Sequence[str] = ()) -> list[Variant]:
    """The bare prompt first, then one variant per (style, sense), then the user's own; duplicates dropped."""
    out = [Variant(prompt.strip(), BARE)]
    for key in styles:
        style = VARIANT_STYLES[key]
        for s in senses:
            out.append(Variant(style.pattern.format(prompt=prompt.strip(), sense=s.name, definition=s.gloss),
                               key, s.name))
    out += [Variant(c.strip(), CUSTOM) for c in custom if c.strip()]
    seen: set[str] = set()
    unique = []
    for v in out:
        if v.prompt not in seen:
            seen.add(v.prompt)
            unique.append(v)
    return unique


# -- the request -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AmbiguityRequest:
    """Everything the Ambiguity page was asked for; `run` holds the bare prompt and the generation settings that
    every variant shares (same model, same seeds)."""

    run: RunRequest
    senses: tuple[Sense, ...]
    styles: tuple[str, ...] = DEFAULT_STYLES
    custom: tuple[str, ...] = ()
    preset: str = ""

    def variants(self) -> list[Variant]:
        return make_variants(self.run.prompt, self.senses, self.styles, self.custom)

    def run_requests(self) -> list[RunRequest]:
        """One normal RunRequest per variant: each is cached like any other run."""
        return [replace(self.run, prompt=v.prompt) for v in self.variants()]

    def to_params(self) -> dict[str, str]:
        params = {**self.run.to_params(), "senses": format_senses(self.senses), "styles": ",".join(self.styles)}
        if self.custom:
            params["custom"] = "\n".join(self.custom)
        if self.preset:
            params["preset"] = self.preset
        return params

    @classmethod
    def from_params(cls, params: dict[str, str]) -> tuple[AmbiguityRequest | None, list[str]]:
        """Parse URL query parameters: (request or None, problems). No prompt: (None, []). Missing senses come from
        the named preset (or the default one); unknown styles are dropped with a message."""
        run, problems = RunRequest.from_params(params)
        if run is None:
            return None, problems
        preset = str(params.get("preset", ""))
        if preset and preset not in AMBIGUITY_PRESETS:
            problems.append(f"The link names an unknown preset '{preset}': ignored.")
            preset = ""
        if params.get("senses"):
            senses, sense_problems = parse_senses(str(params["senses"]))
            problems += [f"The link's senses: {p}" for p in sense_problems]
        else:
            senses = list(AMBIGUITY_PRESETS[preset or DEFAULT_PRESET].senses)
        styles = []
        for key in [k.strip() for k in str(params.get("styles", ",".join(DEFAULT_STYLES))).split(",") if k.strip()]:
            if key in VARIANT_STYLES:
                styles.append(key)
            else:
                problems.append(f"The link names an unknown variant style '{key}': ignored. Known: "
                                f"{', '.join(VARIANT_STYLES)}.")
        custom = tuple(line.strip() for line in str(params.get("custom", "")).splitlines() if line.strip())
        return cls(run, tuple(senses), tuple(dict.fromkeys(styles)), custom, preset), problems


def preset_request(key: str, template: str = DEFAULT_TEMPLATE, **run_fields) -> AmbiguityRequest:
    preset = AMBIGUITY_PRESETS[key]
    return AmbiguityRequest(RunRequest(prompt_for_class(preset.term, template), **run_fields), preset.senses,
                            DEFAULT_STYLES, (), key)


def validate_ambiguity(req: AmbiguityRequest) -> list[str]:
    """Problems with the senses and variants (the generation settings are checked by validate_request)."""
    problems = validate_senses(req.senses)
    count = len(req.variants())
    if count > MAX_VARIANTS:
        problems.append(f"{count} prompt variants is more than {MAX_VARIANTS}: each is a full run of N images. "
                        f"Choose fewer variant styles or senses.")
    return problems


# -- sense shares ----------------------------------------------------------------------------------------------------
def share_rows(variants: Sequence[Variant], assignments: Sequence[Assignment],
               names: Sequence[str]) -> pd.DataFrame:
    """One row per (variant, sense): share of the variant's images CLIP assigns to the sense, with its interval."""
    rows = []
    for v, a in zip(variants, assignments):
        for e in share_estimates(a.labels, names):
            rows.append({"variant": v.prompt, "style": v.style, "sense": e.name, "share": e.value, "95% low": e.low,
                         "95% high": e.high, "n": e.n})
    return pd.DataFrame(rows, columns=["variant", "style", "sense", "share", "95% low", "95% high", "n"])


def entropy_rows(variants: Sequence[Variant], assignments: Sequence[Assignment], k: int) -> pd.DataFrame:
    rows = []
    for v, a in zip(variants, assignments):
        e = entropy_estimate(a.labels, k)
        rows.append({"variant": v.prompt, "entropy (nats)": e.value, "95% low": e.low, "95% high": e.high,
                     "maximum ln k": float(np.log(k)), "n": e.n,
                     "note": f"interval clipped to {e.clipped}" if e.clipped else ""})
    return pd.DataFrame(rows)


def senses_reading(prompt: str, assignment: Assignment, names: Sequence[str]) -> str:
    """One sentence on the bare prompt's sense distribution, honest about the interval."""
    if len(assignment) == 0:
        return f"No images of '{prompt}' yet."
    shares = share_estimates(assignment.labels, names)
    top = max(shares, key=lambda e: e.value)
    ent = entropy_estimate(assignment.labels, len(names))
    count = int(round(top.value * top.n))
    head = (f"'{prompt}': CLIP assigns {count} of {top.n} images to '{top.name}' ({top.format(2)}); sense entropy "
            f"{ent.format(2)} nats, of at most ln {len(names)} = {np.log(len(names)):.2f}")
    if top.value == 1.0:
        return head + (f". Every image shows the same reading. The bootstrap cannot show uncertainty then; by the "
                       f"rule of three another sense may still come up in up to {min(1.0, 3 / top.n):.0%} of images "
                       f"(95% upper bound with {top.n} images).")
    if top.low > 1.0 / len(names):
        return head + f". The model favours '{top.name}'."
    return head + ". No sense clearly dominates at this n."


def grouped_by_sense(assignment: Assignment, names: Sequence[str]) -> list[tuple[str, list[int]]]:
    """(sense, image indices) for each sense with images, most frequent sense first; inside a sense the least
    confident images (smallest margin) come first: those are the ones to check by eye."""
    groups = []
    for j, name in enumerate(names):
        members = np.flatnonzero(assignment.labels == j)
        if len(members):
            order = members[np.argsort(np.nan_to_num(assignment.margins[members], nan=0.0), kind="stable")]
            groups.append((name, [int(i) for i in order]))
    return sorted(groups, key=lambda g: -len(g[1]))


# -- calibration on labelled natural photos --------------------------------------------------------------------------
_WNID_FILE = re.compile(r"^(n\d{8})(?:_.*)?$")


def photo_labels(root: Path) -> dict[str, list[Path]]:
    """Labelled photos in a folder, as {label: files}. Two layouts: sub-folders (<root>/<label>/<image>, the label
    is the folder name, e.g. a WordNet id or a class name), and flat ImageNet-style files (<wnid>_<name>.<ext>,
    the label is the WordNet id, since names repeat: two 'crane' classes)."""
    if not root.is_dir():
        raise FileNotFoundError(f"The photo folder {root} does not exist.")
    out: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                out.setdefault(entry.name, []).extend(files)
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            m = _WNID_FILE.match(entry.stem)
            out.setdefault(m[1] if m else entry.stem, []).append(entry)
    return out


@dataclass
class CalibrationSet:
    images: ImageSet
    truth: np.ndarray  # sense index of each photo
    counts: dict[str, int]  # photos per sense (0: this sense cannot be checked)
    notes: list[str] = field(default_factory=list)


def calibration_set(root: Path, senses: Sequence[Sense], per_sense: int = 50) -> CalibrationSet:
    """The photos under `root` whose label is one of a sense's photo labels (at most `per_sense` each, in file
    order). A label claimed by two senses is left out: its photos have no single true sense."""
    available = photo_labels(root)
    claims: dict[str, list[int]] = {}
    for j, s in enumerate(senses):
        for label in s.photo_labels:
            claims.setdefault(label, []).append(j)
    notes = [f"Photos labelled '{label}' are claimed by several senses ({', '.join(senses[j].name for j in js)}): "
             f"left out." for label, js in claims.items() if len(set(js)) > 1]
    files, truth, labels = [], [], []
    counts = {}
    for j, s in enumerate(senses):
        mine = [p for label in s.photo_labels if len(set(claims[label])) == 1 for p in available.get(label, [])]
        mine = mine[:per_sense]
        counts[s.name] = len(mine)
        files += mine
        truth += [j] * len(mine)
        labels += [f"{s.name}: {p.name}" for p in mine]
    photos = [NaturalImage(p, senses[j].name, sha256_bytes(p.read_bytes())) for p, j in zip(files, truth)]
    images = ImageSet("natural", labels, [p.sha256 for p in photos], [p.load for p in photos], files)
    return CalibrationSet(images, np.asarray(truth, dtype=int), counts, notes)


@dataclass(frozen=True)
class Calibration:
    accuracy: Estimate
    per_photo: pd.DataFrame  # photo, true sense, assigned sense, margin, correct
    per_sense: pd.DataFrame  # sense, photos, correct, accuracy


def calibrate(assignment: Assignment, truth: np.ndarray, labels: Sequence[str],
              names: Sequence[str]) -> Calibration:
    truth = np.asarray(truth, dtype=int)
    correct = assignment.labels == truth
    per_photo = pd.DataFrame({
        "photo": list(labels), "true sense": [names[t] for t in truth],
        "assigned sense": [names[a] for a in assignment.labels], "margin": assignment.margins, "correct": correct,
    })
    per_sense = pd.DataFrame([
        {"sense": name, "photos": int((truth == j).sum()), "correct": int(correct[truth == j].sum()),
         "accuracy": float(correct[truth == j].mean()) if (truth == j).any() else float("nan")}
        for j, name in enumerate(names)])
    accuracy = proportion_estimate("zero-shot sense accuracy", correct)
    return Calibration(accuracy, per_photo, per_sense)


# -- unsupervised view: k-means ----------------------------------------------------------------------------------------
K_RANGE = (2, 6)  # silhouette chooses k among these (capped at n - 1)
KMEANS_SEED = 0
EXEMPLARS = 4


@dataclass(frozen=True)
class Cluster:
    members: tuple[int, ...]  # image indices, nearest the centroid first
    nearest_sense: str
    sense_similarity: float  # cosine of the normalised centroid with that sense's text vector


@dataclass(frozen=True)
class Clustering:
    k: int
    chosen_by: str  # "silhouette" | "user" | why k is 1
    silhouettes: dict[int, float]
    clusters: tuple[Cluster, ...]


def _kmeans(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # duplicate images make fewer distinct clusters than k: fine, said by silhouette
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=10, random_state=KMEANS_SEED).fit_predict(x.astype(np.float64))


def silhouettes(x: np.ndarray, k_range: tuple[int, int] = K_RANGE) -> dict[int, float]:
    """Mean silhouette (Euclidean on unit vectors, a monotone function of cosine) of k-means for each k in range,
    k capped at n - 1; NaN where k-means found a single cluster."""
    from sklearn.metrics import silhouette_score

    out = {}
    for k in range(k_range[0], min(k_range[1], len(x) - 1) + 1):
        labels = _kmeans(x, k)
        out[k] = float(silhouette_score(x, labels)) if len(set(labels)) > 1 else float("nan")
    return out


def cluster_images(x: np.ndarray, sense_vectors: np.ndarray, names: Sequence[str], k: int | None = None,
                   k_range: tuple[int, int] = K_RANGE) -> Clustering:
    """k-means on L2-normalised image embeddings (fixed random_state). k: the user's, else the best silhouette in
    k_range. Each cluster is named by the sense whose text is nearest its centroid."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    scores: dict[int, float] = {}
    if n == 0:
        return Clustering(0, "no images", {}, ())
    distinct = len(np.unique(x.round(6), axis=0))
    if k is not None:
        k, chosen = max(1, min(int(k), n)), "user"
    elif n < 3 or distinct < 2:
        k, chosen = 1, "fewer than 3 images" if n < 3 else "all images are identical"
    else:
        scores = silhouettes(x, k_range)
        finite = {kk: s for kk, s in scores.items() if np.isfinite(s)}
        k, chosen = (max(finite, key=finite.get), "silhouette") if finite else (1, "no k gave two clusters")
    labels = _kmeans(x, k) if k > 1 else np.zeros(n, dtype=int)
    clusters = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        centroid = x[members].mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        order = members[np.argsort(-(x[members] @ centroid), kind="stable")]
        sims = np.asarray(sense_vectors, np.float64) @ centroid
        best = int(sims.argmax())
        clusters.append(Cluster(tuple(int(i) for i in order), names[best], float(sims[best])))
    clusters.sort(key=lambda c: -len(c.members))
    return Clustering(k, chosen, scores, tuple(clusters))
