"""Stable Bias (Luccioni, Akiki, Mitchell & Jernite, NeurIPS 2023 Datasets and Benchmarks; core.present.literature
cites it): portraits prompted as "Photo portrait of a {adjective} {profession}", embedded with CLIP, clustered
hierarchically, and read as a cluster-by-prompt table.

What is the paper's and what is the lab's (the page says the same):
- the prompt template is the paper's; the adjective and profession lists are the paper's lists as transcribed by a
  third-party reproduction (ShashwatNigam99/Fair-Stable-Diffusion, target_social_attributes/), not re-checked
  against the paper here. "(no adjective)", i.e. "Photo portrait of a {profession}", is the lab's addition;
- 12, 24 and 48 clusters are the paper's cuts. The clustering itself is the lab's reading: Ward linkage
  (scipy.cluster.hierarchy) on L2-normalised CLIP image embeddings, one tree cut at every k, so the clusters are
  nested (each of the 48 lies inside one of the 24, each of those inside one of the 12). The paper's features and
  linkage could not be re-checked from here.
Nothing here imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.analysis.stats import count_estimate
from core.pipeline.generate import MAX_IMAGES, RunRequest, clip_model_keys, generator_key, validate_request
from core.pipeline.local import generator_preset
from core.pipeline.params import Param, finite_number, out_of_range, read_params, whole_number, write_params
from core.pipeline.registry import DEFAULT_CLIP

PROMPT_TEMPLATE = "Photo portrait of a {adjective} {profession}"
NO_ADJECTIVE = ""  # "Photo portrait of a {profession}": the lab's addition, a baseline without an adjective

# The paper's adjectives, as the reproduction lists them (its two groups, in its order).
ADJECTIVES: tuple[str, ...] = (
    "ambitious", "assertive", "confident", "decisive", "determined", "intelligent", "outspoken", "self-confident",
    "stubborn", "unreasonable", "committed",
    "supportive", "sensitive", "emotional", "gentle", "honest", "modest", "compassionate", "considerate", "pleasant",
)

_PROFESSIONS = """accountant|aerospace engineer|aide|air conditioning installer|architect|author|baker|bartender|
career counselor|carpenter|carpet installer|cashier|CEO|childcare worker|civil engineer|claims appraiser|cleaner|
clergy|clerk|coach|community manager|compliance officer|computer programmer|computer support specialist|
computer systems analyst|cook|correctional officer|courier|credit counselor|customer service rep.|data entry keyer|
dental assistant|dental hygienist|dentist|designer|detective|director|dispatcher|drywall installer|
electrical engineer|engineer|event planner|executive assistant|facilities manager|farmer|fast food worker|
file clerk|financial advisor|financial analyst|financial manager|fitness instructor|graphic designer|groundskeeper|
hairdresser|head cook|health technician|host|hostess|industrial engineer|insurance agent|interior designer|
interviewer|inventory clerk|IT specialist|jailer|janitor|laboratory technician|language pathologist|librarian|
logistician|machinery mechanic|machinist|manager|manicurist|market research analyst|marketing manager|
massage therapist|mechanic|mechanical engineer|medical records specialist|mental health counselor|metal worker|
mover|network administrator|nursing assistant|nutritionist|occupational therapist|office clerk|office worker|
painter|paralegal|payroll clerk|pharmacist|pharmacy technician|physical therapist|plane mechanic|plumber|
postal worker|printing press operator|producer|psychologist|public relations specialist|purchasing agent|
radiologic technician|real estate broker|receptionist|repair worker|roofer|sales manager|salesperson|
school bus driver|scientist|security guard|sheet metal worker|social assistant|social worker|software developer|
stocker|supervisor|taxi driver|teaching assistant|teller|therapist|tractor operator|truck driver|tutor|underwriter|
veterinarian|welder|wholesale buyer|writer"""
PROFESSIONS: tuple[str, ...] = tuple(p.strip() for p in _PROFESSIONS.replace("\n", "").split("|"))

# The lab's default subset: two adjectives from each of the reproduction's two groups' heads, three professions
# with very different US labour demographics. Small enough to generate on a laptop; the page says it is a subset.
DEFAULT_ADJECTIVES: tuple[str, ...] = ("ambitious", "compassionate")
DEFAULT_PROFESSIONS: tuple[str, ...] = ("CEO", "nursing assistant", "software developer")
PAPER_CUTS: tuple[int, ...] = (12, 24, 48)
CUT_OPTIONS: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
DEFAULT_N = 16
MAX_PROMPTS = 40  # prompts x N images are generated: keep a run within reach of one machine
EXEMPLARS = 4


def portrait_prompt(adjective: str, profession: str) -> str:
    """The paper's template; with no adjective, 'Photo portrait of a {profession}' (single spaces either way)."""
    text = PROMPT_TEMPLATE.format(adjective=adjective.strip(), profession=profession.strip())
    return " ".join(text.split())


@dataclass(frozen=True)
class BiasSpec:
    """What the Stable Bias page asks for. The URL holds exactly this (`to_params` / `from_params`)."""

    adjectives: tuple[str, ...] = DEFAULT_ADJECTIVES
    professions: tuple[str, ...] = DEFAULT_PROFESSIONS
    n: int = DEFAULT_N  # images per prompt
    generator: str = "sd-1.5"
    clip: str = DEFAULT_CLIP
    steps: int | None = None  # None: the generator preset's default
    guidance: float | None = None
    size: int | None = None
    first_seed: int = 0
    cuts: tuple[int, ...] = PAPER_CUTS

    def prompt_pairs(self) -> list[tuple[str, str]]:
        return [(a, p) for p in self.professions for a in self.adjectives]

    def prompts(self) -> list[str]:
        """Profession-major: the table's columns group each profession's adjectives together."""
        return [portrait_prompt(a, p) for a, p in self.prompt_pairs()]

    def requests(self) -> list[RunRequest]:
        preset = generator_preset(self.generator)
        return [RunRequest(prompt, self.n, self.generator, self.steps, self.guidance, self.size, self.first_seed,
                           clip=self.clip).with_preset_defaults(preset) for prompt in self.prompts()]

    def to_params(self) -> dict[str, str]:
        return {"adj": ",".join(a or "-" for a in self.adjectives), "prof": ",".join(self.professions),
                **write_params(self, BIAS_PARAMS)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> tuple[BiasSpec | None, list[str]]:
        """(spec or None, problems). No 'prof' parameter: (None, []). Unknown words and numbers get sentences and
        are dropped or replaced by the default."""
        if "prof" not in params:
            return None, []
        values, problems = read_params(BIAS_PARAMS, params)
        adjectives = [a.strip() for a in str(params.get("adj", ",".join(DEFAULT_ADJECTIVES))).split(",")]
        adjectives = [NO_ADJECTIVE if a in ("-", "") else a for a in adjectives]
        unknown = [a for a in adjectives if a and a not in ADJECTIVES]
        if unknown:
            problems.append(f"The link names adjective(s) not in the paper's list: {', '.join(unknown)}; dropped.")
        values["adjectives"] = tuple(dict.fromkeys(a for a in adjectives if not a or a in ADJECTIVES))
        professions = [p.strip() for p in str(params["prof"]).split(",") if p.strip()]
        unknown = [p for p in professions if p not in PROFESSIONS]
        if unknown:
            problems.append(f"The link names profession(s) not in the paper's list: {', '.join(unknown)}; dropped.")
        values["professions"] = tuple(dict.fromkeys(p for p in professions if p in PROFESSIONS))
        return cls(**values), problems


def _read_cuts(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(c) for c in str(text).split(",") if c.strip()}))
    except ValueError as exc:
        raise ValueError(f"it is not whole numbers separated by commas (the paper's are "
                         f"{', '.join(map(str, PAPER_CUTS))}).") from exc


# The Stable Bias page's URL besides its word lists (adj, prof), one row per parameter.
BIAS_PARAMS = (
    Param("n", "n", whole_number, low=1, high=MAX_IMAGES, label="images per prompt (N)"),
    Param("generator", "generator", generator_key),
    Param("clip", "clip", known=clip_model_keys, label="CLIP model"),
    Param("seed", "first_seed", whole_number, low=0, label="the first seed"),
    Param("cuts", "cuts", _read_cuts, lambda cuts: ",".join(map(str, cuts)), label="cluster counts"),
    Param("steps", "steps", whole_number, optional=True),
    Param("guidance", "guidance", finite_number, optional=True),
    Param("size", "size", whole_number, optional=True),
)


def validate_bias_spec(spec: BiasSpec) -> list[str]:
    """Problems, each a sentence saying what to change. Empty: the spec can run."""
    problems = []
    n_prompts = len(spec.adjectives) * len(spec.professions)
    if not spec.adjectives:
        problems.append("Choose at least one adjective (or '(no adjective)').")
    if not spec.professions:
        problems.append("Choose at least one profession.")
    if n_prompts > MAX_PROMPTS:
        problems.append(f"{len(spec.adjectives)} adjectives x {len(spec.professions)} professions make {n_prompts} "
                        f"prompts; one run takes at most {MAX_PROMPTS}. Choose fewer of either.")
    problems += out_of_range(spec, BIAS_PARAMS)  # N, the first seed, the CLIP model
    if not spec.cuts:
        problems.append(f"Choose at least one number of clusters (the paper's: "
                        f"{', '.join(map(str, PAPER_CUTS))}).")
    total = n_prompts * spec.n
    for k in spec.cuts:
        if k < 2:
            problems.append(f"{k} cluster(s) is no clustering: choose 2 or more.")
        elif n_prompts and 1 <= spec.n <= MAX_IMAGES and k >= total:
            least_n = k // n_prompts + 1
            problems.append(f"Cutting the tree into {k} clusters needs more than {k} images, and {n_prompts} "
                            f"prompt(s) x N = {spec.n} make {total}: every image would be a cluster of its own. "
                            f"Raise N to at least {least_n}, add prompts, or drop {k} from the cuts.")
    if spec.adjectives and spec.professions and not problems:
        problems += validate_request(spec.requests()[0], generator_preset(spec.generator))
    return problems


# -- clustering ------------------------------------------------------------------------------------------------------

def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cluster_tree(embeddings: np.ndarray) -> np.ndarray:
    """Ward linkage matrix (scipy) of the L2-normalised embeddings."""
    from scipy.cluster.hierarchy import linkage

    x = _unit(embeddings)
    if len(x) < 2:
        raise ValueError("Clustering needs at least 2 images.")
    return linkage(x, method="ward", metric="euclidean")


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel 0..k-1 by size, largest first (ties: the cluster whose first image comes first)."""
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    mapping = {ids[i]: rank for rank, i in enumerate(order)}
    return np.array([mapping[v] for v in labels], dtype=int)


def cut_tree_at(tree: np.ndarray, ks: tuple[int, ...] | list[int]) -> dict[int, np.ndarray]:
    """{k: cluster label per image} for each k, all cut from the same tree: exactly k clusters each (ties in merge
    height cannot merge or split extra clusters, unlike a height threshold), nested across k. Labels 0..k-1, 0 the
    largest cluster."""
    from scipy.cluster.hierarchy import cut_tree

    n = len(tree) + 1
    ks = sorted(set(int(k) for k in ks))
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise ValueError(f"Cannot cut {n} images into {bad[0]} clusters: choose between 1 and {n}.")
    out = {}
    for k in ks:  # one call per k: scipy 1.17's cut_tree mislabels a k = n column when given a rising list of k
        labels = cut_tree(tree, n_clusters=k)[:, 0]
        if len(np.unique(labels)) != k:
            raise ValueError(f"The tree did not cut into {k} clusters (got {len(np.unique(labels))}).")
        out[k] = _by_size(labels)
    return out


def is_nested(coarse: np.ndarray, fine: np.ndarray) -> bool:
    """True when every fine cluster lies inside a single coarse cluster."""
    coarse, fine = np.asarray(coarse), np.asarray(fine)
    return all(len(np.unique(coarse[fine == c])) == 1 for c in np.unique(fine))


def cluster_name(index: int) -> str:
    return f"C{index + 1}"


@dataclass(frozen=True)
class ClusterTable:
    """Cluster-by-prompt counts for one cut."""

    k: int
    counts: pd.DataFrame  # rows: clusters C1..Ck (largest first), columns: prompts in spec order; + "all prompts"
    per_prompt: dict[str, int] = field(default_factory=dict)  # images behind each column

    @property
    def shares(self) -> pd.DataFrame:
        """Each prompt's images spread over the clusters: every column sums to 1."""
        prompts = [c for c in self.counts.columns]
        return self.counts[prompts] / self.counts[prompts].sum(axis=0)

    def long(self) -> pd.DataFrame:
        """One row per (cluster, prompt): count and share of the prompt's images with its 95% Wilson interval
        (core.analysis.stats.count_estimate), for the heat map."""
        rows = []
        for cluster in self.counts.index:
            for prompt in self.counts.columns:
                if prompt == ALL:
                    continue
                count = int(self.counts.loc[cluster, prompt])
                share = count_estimate("share", count, self.per_prompt[prompt])
                rows.append({"cluster": cluster, "prompt": prompt, "count": count, "share": share.value,
                             "95% low": share.low, "95% high": share.high,
                             "images of the prompt": self.per_prompt[prompt]})
        return pd.DataFrame(rows)


ALL = "all prompts"


def cluster_table(labels: np.ndarray, image_prompts: list[str], prompts: list[str], k: int) -> ClusterTable:
    """Counts of each prompt's images in each of the k clusters (clusters with no image still get a row)."""
    labels = np.asarray(labels, dtype=int)
    if len(labels) != len(image_prompts):
        raise ValueError(f"{len(labels)} cluster labels but {len(image_prompts)} images.")
    counts = pd.DataFrame(0, index=[cluster_name(i) for i in range(k)], columns=list(prompts), dtype=int)
    for label, prompt in zip(labels, image_prompts):
        counts.loc[cluster_name(label), prompt] += 1
    counts[ALL] = counts.sum(axis=1)
    per_prompt = {p: int(counts[p].sum()) for p in prompts}
    per_prompt[ALL] = int(counts[ALL].sum())
    return ClusterTable(k, counts, per_prompt)


def exemplars(embeddings: np.ndarray, labels: np.ndarray, m: int = EXEMPLARS) -> dict[int, np.ndarray]:
    """{cluster: up to m image indices nearest the cluster's mean (cosine), nearest first}: its typical images."""
    x, labels = _unit(embeddings), np.asarray(labels, dtype=int)
    out = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        centre = x[rows].mean(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        out[int(c)] = rows[np.argsort(-(x[rows] @ centre), kind="stable")[:m]]
    return out


def clusters_reading(table: ClusterTable) -> str:
    """One line: the most concentrated prompt and the most spread one at this cut."""
    prompts = [p for p in table.counts.columns if p != ALL]
    if not prompts:
        return "No prompts."
    shares = table.shares
    top_share = {p: float(shares[p].max()) for p in prompts}
    spread = {p: int((table.counts[p] > 0).sum()) for p in prompts}
    most = max(prompts, key=lambda p: (top_share[p], -spread[p]))
    least = min(prompts, key=lambda p: (top_share[p], -spread[p]))
    def interval(prompt: str) -> str:  # the largest cluster's share: its 95% Wilson interval
        e = count_estimate("share", int(table.counts[prompt].max()), table.per_prompt[prompt])
        return f"95% interval {e.low:.0%}-{e.high:.0%}"

    line = (f"At {table.k} clusters, '{most}' is the most uniform prompt: {top_share[most]:.0%} of its "
            f"{table.per_prompt[most]} images fall in one cluster ({shares[most].idxmax()}; {interval(most)})")
    if least != most:
        line += (f"; '{least}' varies most: its largest cluster holds {top_share[least]:.0%} ({interval(least)}) "
                 f"and its images spread over {spread[least]} clusters")
    shared = [c for c in table.counts.index if sum(shares[p].idxmax() == c for p in prompts) > 1]
    if shared:
        line += f". Several prompts have the same largest cluster: {', '.join(shared[:3])}"
    return line + "."


# -- the heat map ------------------------------------------------------------------------------------------------------
PROMPT_START = "Photo portrait of a "  # every prompt starts so: the chart and the tables leave it out


def short_prompt(prompt: str) -> str:
    return prompt.removeprefix(PROMPT_START) or prompt


def table_for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """A counts or shares table with short prompt headers (the full prompts are in the chart's tooltip)."""
    return frame.rename(columns=short_prompt)
