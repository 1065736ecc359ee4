"""Adherence: how closely do images follow the prompt, next to natural photos of the class, and what does a setting
(guidance, steps, the model) trade for it?

The analysis as plain functions, used by pages/adherence.py and the tests:
1. CLIPScore of each image against the prompt (core.analysis.zeroshot: Hessel et al.'s 2.5 * max(cos, 0)), per source,
with
   t intervals (clipped to CLIPScore's range [0, 2.5]).
2. Confusable-class rank: the rank of the intended class among K class names by zero-shot, per image.
3. Sweeps: one generic "vary one setting" that turns a base RunRequest into one normal RunRequest per value (so
   each point is cached like any run), and per-point adherence and diversity estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.analysis.stats import Estimate, diversity_statistics
from core.analysis.zeroshot import CLIPSCORE_WEIGHT, TORCHMETRICS_SCALE, mean_estimate, proportion_estimate
from core.pipeline.generate import RunRequest, validate_request
from core.pipeline.local import generator_preset
from core.pipeline.natural import IMAGENETTE_WNIDS
from core.pipeline.registry import GENERATORS

SCORE_LABEL = "CLIPScore (2.5 x max(cos, 0))"
SCORE_NOTE = (f"CLIPScore = {CLIPSCORE_WEIGHT:g} x max(cos(image, prompt), 0), as defined by Hessel et al. (2021), "
              f"with the prompt as written as the text (Hessel et al. prefix captions with 'A photo depicts'; a "
              f"prompt already describes a photo). torchmetrics' CLIPScore reports {TORCHMETRICS_SCALE:g} x "
              f"max(cos, 0): multiply these numbers by {TORCHMETRICS_SCALE / CLIPSCORE_WEIGHT:g} to compare "
              f"(torchmetrics clamps a batch's mean rather than each image: the same unless a cosine is negative).")


# -- CLIPScore -------------------------------------------------------------------------------------------------------
def score_rows(named: dict[str, tuple[Sequence[str], np.ndarray]]) -> pd.DataFrame:
    """One row per image: source, label, CLIPScore, the torchmetrics-scale number; least adherent first."""
    rows = [{"source": source, "label": label, "CLIPScore": float(score),
             "torchmetrics scale": float(score) * TORCHMETRICS_SCALE / CLIPSCORE_WEIGHT}
            for source, (labels, scores) in named.items() for label, score in zip(labels, scores)]
    df = pd.DataFrame(rows, columns=["source", "label", "CLIPScore", "torchmetrics scale"])
    return df.sort_values("CLIPScore", kind="stable").reset_index(drop=True)


def score_reading(synthetic: Estimate, natural: Estimate | None) -> str:
    head = f"Mean CLIPScore of the generated images {synthetic.format(3)} (n={synthetic.n})"
    if natural is None or not np.isfinite(natural.value):
        return head + "."
    head += f" vs natural photos {natural.format(3)} (n={natural.n})"
    if synthetic.low > natural.high:
        return head + ": the generated images match the prompt's text more closely than real photos do."
    if synthetic.high < natural.low:
        return head + ": the generated images match the prompt less than real photos do."
    return head + ": the intervals overlap, no clear difference at this n."


# -- confusable classes ----------------------------------------------------------------------------------------------
CONFUSABLE_SETS: dict[str, tuple[str, ...]] = {
    "Imagenette classes": tuple(IMAGENETTE_WNIDS.values()),
    "fish": ("tench", "goldfish", "great white shark", "tiger shark", "carp", "trout", "eel", "sturgeon"),
    "dogs": ("english springer", "cocker spaniel", "golden retriever", "labrador retriever", "border collie",
             "beagle", "boxer", "cardigan welsh corgi"),
    "vehicles": ("garbage truck", "fire engine", "tow truck", "school bus", "pickup truck", "tractor", "ambulance",
                 "minivan"),
}
DEFAULT_CONFUSABLE = "Imagenette classes"
MAX_CLASSES = 100


def class_display(name: str) -> str:
    return name.replace("_", " ").strip()


def parse_classes(text: str) -> tuple[list[str], list[str]]:
    """Class names separated by commas or new lines; duplicates (after '_' -> ' ') dropped."""
    names = [class_display(part) for line in text.splitlines() for part in line.split(",") if part.strip()]
    names = list(dict.fromkeys(names))
    problems = []
    if len(names) < 2:
        problems.append("List at least two class names (comma-separated): a rank among one class is always 1.")
    if len(names) > MAX_CLASSES:
        problems.append(f"List at most {MAX_CLASSES} class names (got {len(names)}).")
    return names, problems


def guess_class(prompt: str, names: Sequence[str]) -> str | None:
    """The longest class name that appears in the prompt (so 'tiger shark' wins over 'shark')."""
    found = [n for n in names if class_display(n).lower() in prompt.lower()]
    return max(found, key=len) if found else None


def rank_estimates(ranks: np.ndarray) -> list[Estimate]:
    ranks = np.asarray(ranks, dtype=np.float64)
    return [proportion_estimate("top-1 (intended class ranked first)", ranks == 1),
            mean_estimate("mean rank of the intended class", ranks, bounds=(1.0, np.inf))]


def rank_rows(named: dict[str, np.ndarray], k: int) -> pd.DataFrame:
    """Share of each source's images at each rank 1..k."""
    rows = []
    for source, ranks in named.items():
        ranks = np.asarray(ranks, dtype=int)
        for r in range(1, k + 1):
            rows.append({"source": source, "rank": r, "share": float(np.mean(ranks == r)) if len(ranks) else 0.0,
                         "n": len(ranks)})
    return pd.DataFrame(rows, columns=["source", "rank", "share", "n"])


# -- sweeps: vary one setting ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepSetting:
    key: str
    label: str
    parse: Callable[[str], object]
    kind: str  # what a value must be, for messages
    default_values: str
    quantitative: bool
    note: str = ""


def _generator_key(text: str) -> str:
    if text not in GENERATORS:
        raise ValueError(f"unknown model '{text}' (known: {', '.join(GENERATORS)})")
    return text


SWEEP_SETTINGS: dict[str, SweepSetting] = {
    s.key: s
    for s in (
        SweepSetting("guidance", "guidance", float, "a number", "1, 2, 4, 7.5, 12", True,
                     "Classifier-free guidance scale: higher follows the prompt harder. Needs a model that uses "
                     "guidance (SD 1.5 / 2.x style); turbo models ignore it."),
        SweepSetting("steps", "steps", int, "a whole number", "2, 4, 8, 16", True, "Denoising steps."),
        SweepSetting("generator", "model", _generator_key, "a model key", "sd-1.5, sd-turbo", False,
                     "Model comparison: each model runs at its own default steps, guidance and size (a turbo model "
                     "at guidance 7.5 would be meaningless)."),
    )
}
MAX_SWEEP_POINTS = 8


@dataclass(frozen=True)
class Sweep:
    setting: str
    values: tuple

    def to_params(self) -> dict[str, str]:
        return {"sweep": self.setting, "sweep_values": ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                                                                 for v in self.values)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> tuple[Sweep | None, list[str]]:
        setting = params.get("sweep")
        if not setting:
            return None, []
        if setting not in SWEEP_SETTINGS:
            return None, [f"The link asks to sweep '{setting}', which the lab cannot vary: ignored. It can vary: "
                          f"{', '.join(SWEEP_SETTINGS)}."]
        values, problems = parse_sweep_values(setting, str(params.get("sweep_values", "")))
        problems = [f"The link's sweep values: {p}" for p in problems]
        return (cls(setting, tuple(values)) if values else None), problems


def parse_sweep_values(setting: str, text: str) -> tuple[list, list[str]]:
    """Comma-separated values of one setting, duplicates dropped, order kept. Returns (values, problems)."""
    spec = SWEEP_SETTINGS[setting]
    values, problems = [], []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = spec.parse(part)
        except ValueError as exc:
            problems.append(f"'{part}' is not {spec.kind}" + (f": {exc}." if spec.parse is _generator_key else "."))
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"'{part}' is not a finite number.")
            continue
        if value not in values:
            values.append(value)
    if not values and not problems:
        problems.append(f"Give at least one {spec.label} value, e.g. {spec.default_values}.")
    if len(values) > MAX_SWEEP_POINTS:
        problems.append(f"At most {MAX_SWEEP_POINTS} values per sweep (got {len(values)}): each is a full run.")
    return values, problems


def sweep_requests(base: RunRequest, sweep: Sweep) -> tuple[list[RunRequest], list[str]]:
    """One RunRequest per value: `base` with that one setting changed (same prompt, seeds, N), with preset defaults
    filled in. Returns (requests, problems); any problem means nothing should run."""
    problems: list[str] = []
    preset = GENERATORS.get(base.generator)
    if sweep.setting == "guidance" and preset is not None and not preset.supports_guidance:
        problems.append(f"{preset.label} ignores classifier-free guidance: every guidance value would give the same "
                        f"images. Pick a model that uses guidance (SD 1.5, SD 2.1 base, tiny-random), or sweep "
                        f"steps instead.")
        return [], problems
    requests = []
    for value in sweep.values:
        if sweep.setting == "generator":
            req = replace(base, generator=value, steps=None, guidance=None, size=None)
        else:
            req = replace(base, **{sweep.setting: value})
        point_preset = generator_preset(req.generator)
        req = req.with_preset_defaults(point_preset)
        problems += [f"{SWEEP_SETTINGS[sweep.setting].label} {value}: {p}" for p in validate_request(req, point_preset)]
        requests.append(req)
    return (requests, []) if not problems else ([], problems)


SWEEP_METRICS = (
    ("mean CLIPScore", "adherence: higher = closer to the prompt"),
    ("Vendi score", "diversity: effective number of distinct images"),
    ("mean pairwise cosine", "similarity between images: higher = less diverse"),
)


def sweep_point(embeddings: np.ndarray, scores: np.ndarray) -> list[Estimate]:
    """Adherence and diversity of one sweep point's images, each with its 95% interval: t for the mean CLIPScore,
    the jackknife for the diversity statistics (as on the Diversity page), each clipped to its range."""
    out = [mean_estimate("mean CLIPScore", scores, bounds=(0.0, CLIPSCORE_WEIGHT))]
    by_name = {e.name: e for e in diversity_statistics(embeddings)} if len(embeddings) else {}
    for name in ("Vendi score", "mean pairwise cosine"):
        if len(embeddings) < 2:
            out.append(Estimate(name, float("nan"), float("nan"), float("nan"), len(embeddings),
                                "needs at least 2 images"))
        else:
            out.append(by_name[name])
    return out


def sweep_rows(setting: str, values: Sequence, points: Sequence[list[Estimate]]) -> pd.DataFrame:
    rows = [{setting: value, "metric": e.name, "estimate": e.value, "95% low": e.low, "95% high": e.high, "n": e.n}
            for value, estimates in zip(values, points) for e in estimates]
    return pd.DataFrame(rows, columns=[setting, "metric", "estimate", "95% low", "95% high", "n"])


# -- charts ----------------------------------------------------------------------------------------------------------


def sweep_title(setting: str) -> str:
    return f"Adherence and diversity against {SWEEP_SETTINGS[setting].label}"
