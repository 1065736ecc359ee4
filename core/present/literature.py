"""Settings from published papers, as data: each preset names its source and says where every value comes from.

A preset fills a page's form (`Preset.form`: ClassListSpec fields) and, where a page has its own controls, the page's
URL parameters (`Preset.page`). Every value carries a `PresetValue` saying whether it is the paper's, the authors'
code's, or the lab's own choice, and whether the lab could check it against the source from here (it runs offline:
what it could not re-read is marked so, in the UI too).

Sources checked for this file (what the lab could read, and what it could not):
- Sariyildiz et al. 2023: title, authors, venue and abstract read; the prompt section itself could not be
  retrieved, so the four prompt strings follow the paper's notation (c; c, h_c; c, d_c; c, h_c inside b) without
  a re-check. The WordNet hypernyms and definitions were read from WordNet 3.0's own files.
- Adamkiewicz et al. 2026: title, authors, arXiv id and abstract read; the generation settings (bare class label,
  guidance 2.0, 50 steps, PRDC on CLIP ViT-B/32) are as given to the lab, not re-checked in the paper's text.
- He et al. 2023: the CLIP filter is the authors' released script (CVMI-Lab/SyntheticData,
  src/classifier-tuning/src/select_glide_ims_by_clip.py), read in full.
- Luccioni et al. 2023: title, authors and abstract read; the prompt template is the paper's; the adjective and
  profession lists are a third-party transcription of the paper's lists; the clustering's features and linkage
  could not be checked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ORIGIN_PAPER = "the paper"
ORIGIN_CODE = "the authors' code"
ORIGIN_LAB = "the lab's own choice"

CLASS_PAGES = ("synthetic_vs_natural", "train_on_synthetic", "clip_geometry")


@dataclass(frozen=True)
class Source:
    key: str
    authors: str
    year: int
    title: str
    venue: str
    arxiv: str
    note: str = ""  # e.g. a title that changed between versions, the code the lab read

    @property
    def short(self) -> str:
        first = self.authors.split(",")[0].split()[-1]
        return f"{first} et al. {self.year}"

    def citation(self) -> str:
        """Authors (year). Title. Venue. arXiv id. As markdown, with the arXiv link."""
        note = f" {self.note}" if self.note else ""
        return (f"{self.authors} ({self.year}). *{self.title}*. {self.venue}. "
                f"[arXiv:{self.arxiv}](https://arxiv.org/abs/{self.arxiv}).{note}")


SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        Source("sariyildiz2023", "Mert Bülent Sarıyıldız, Karteek Alahari, Diane Larlus, Yannis Kalantidis", 2023,
               "Fake it till you make it: Learning transferable representations from synthetic ImageNet clones",
               "CVPR 2023, pp. 8011-8021", "2212.08420"),
        Source("adamkiewicz2026", "Krzysztof Adamkiewicz, Brian Moser, Stanislav Frolov, Tobias Christian Nauen, "
                                  "Federico Raue, Andreas Dengel", 2026,
               "When Pretty Isn't Useful: Investigating Why Modern Text-to-Image Models Fail as Reliable Training "
               "Data Generators", "arXiv preprint (RPTU Kaiserslautern-Landau and DFKI)", "2602.19946"),
        Source("he2023", "Ruifei He, Shuyang Sun, Xin Yu, Chuhui Xue, Wenqing Zhang, Philip Torr, Song Bai, "
                         "Xiaojuan Qi", 2023,
               "Is synthetic data from generative models ready for image recognition?", "ICLR 2023 (spotlight)",
               "2210.07574", note="Code: github.com/CVMI-Lab/SyntheticData, "
                                  "src/classifier-tuning/src/select_glide_ims_by_clip.py (the CLIP filter)."),
        Source("luccioni2023", "Alexandra Sasha Luccioni, Christopher Akiki, Margaret Mitchell, Yacine Jernite", 2023,
               "Stable Bias: Evaluating Societal Representations in Diffusion Models",
               "NeurIPS 2023 Datasets and Benchmarks Track", "2303.11408",
               note="arXiv v1 was titled 'Stable Bias: Analyzing Societal Representations in Diffusion Models'."),
    )
}


@dataclass(frozen=True)
class PresetValue:
    """One value of a preset and where it comes from."""

    name: str
    value: str
    origin: str  # ORIGIN_PAPER | ORIGIN_CODE | ORIGIN_LAB
    detail: str = ""  # where in the source, or why the lab chose it
    checked: bool = True  # False: the lab could not re-read this in the source from here (said in the UI)

    def line(self) -> str:
        check = "" if self.checked or self.origin == ORIGIN_LAB else " (not re-checked against the source here)"
        detail = f": {self.detail}" if self.detail else ""
        return f"**{self.name}** = {self.value} · *{self.origin}*{check}{detail}"


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    source: str  # a SOURCES key
    pages: tuple[str, ...]  # the pages (url paths) that offer it
    form: tuple[tuple[str, object], ...] = ()  # ClassListSpec field -> value
    page: tuple[tuple[str, str], ...] = ()  # page URL parameter -> value ("" removes it: the page's default)
    settings: tuple[PresetValue, ...] = ()
    summary: str = ""

    @property
    def form_values(self) -> dict:
        return dict(self.form)

    @property
    def page_values(self) -> dict:
        return dict(self.page)

    def apply(self, spec):
        """The spec with the preset's form values (classes, photos, N and seeds stay the user's)."""
        return replace(spec, **self.form_values)

    def differences(self, spec) -> list[str]:
        """Form fields where `spec` no longer has the preset's value."""
        return [name for name, value in self.form if getattr(spec, name) != value]

    def citation(self) -> str:
        return SOURCES[self.source].citation()


def _sariyildiz(key: str, template: str, label: str, prompt: str, extra: tuple[PresetValue, ...] = ()) -> Preset:
    common = (
        PresetValue("prompt", f"'{prompt}'", ORIGIN_PAPER,
                    "Sec. 3, the paper's class-agnostic prompts, in its notation: c = class name, h_c = its WordNet "
                    "hypernym, d_c = its WordNet definition, b = a Places365 scene", checked=False),
        PresetValue("class name c", "the class folder's name, '_' as a space", ORIGIN_LAB,
                    "ImageNet's names are WordNet lemmas; CLIP's tokenizer lower-cases, so 'French horn' and "
                    "'french horn' condition the generator identically"),
    )
    generator = PresetValue("generator, steps, guidance, N", "as set in the form", ORIGIN_LAB,
                            "the preset sets only the prompt; the paper used Stable Diffusion (its version, steps and "
                            "guidance are not part of this preset)")
    return Preset(key, label, "sariyildiz2023", CLASS_PAGES, form=(("template", template),),
                  settings=common + extra + (generator,),
                  summary=f"Prompt '{prompt}' of Sariyildiz et al. (CVPR 2023).")


_WORDNET = PresetValue("h_c, d_c", "WordNet 3.0: first hypernym's first lemma; the gloss without its examples",
                       ORIGIN_PAPER, "the paper takes hypernyms and definitions from WordNet (ImageNet's classes are "
                                     "WordNet synsets). Shipped for the 10 Imagenette classes, read from WordNet "
                                     "3.0's data.noun; 'first hypernym, first lemma' is how NLTK reads them (the lab's "
                                     "reading where a synset has several, e.g. golf ball: ball / golf equipment)")

PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        _sariyildiz("sariyildiz2023-c", "name", "Sariyildiz et al. 2023: prompt 'c' (the class name)", "c"),
        _sariyildiz("sariyildiz2023-ch", "wn-hypernym", "Sariyildiz et al. 2023: prompt 'c, h_c' (+ hypernym)",
                    "c, h_c", (_WORDNET,)),
        _sariyildiz("sariyildiz2023-cd", "wn-definition",
                    "Sariyildiz et al. 2023: prompt 'c, d_c' (+ definition)", "c, d_c", (_WORDNET,)),
        _sariyildiz("sariyildiz2023-chb", "wn-background",
                    "Sariyildiz et al. 2023: prompt 'c, h_c inside b' (+ hypernym, background)", "c, h_c inside b",
                    (_WORDNET,
                     PresetValue("b", "one of 12 Places365 scene names", ORIGIN_PAPER,
                                 "the paper draws b from Places365's 365 scene categories, at random per image. Which "
                                 "12 the lab ships, and one background per block of 4 consecutive seeds (cycling "
                                 "through the list) instead of a random draw per image: the lab's own choice, so a "
                                 "seed always gets the same background and images are still made in batches",
                                 checked=False))),
        Preset("adamkiewicz2026", "Adamkiewicz et al. 2026 (When Pretty Isn't Useful): bare label, guidance 2.0, "
                                  "50 steps", "adamkiewicz2026", CLASS_PAGES,
               form=(("template", "name"), ("generator", "sd-1.5"), ("steps", 50), ("guidance", 2.0),
                     ("clip", "ViT-B-32/laion2b")),
               settings=(
                   PresetValue("prompt", "the bare class label, e.g. 'golf ball'", ORIGIN_PAPER, checked=False),
                   PresetValue("guidance", "2.0", ORIGIN_PAPER, checked=False),
                   PresetValue("steps", "50", ORIGIN_PAPER, checked=False),
                   PresetValue("metric", "precision, recall, density, coverage on CLIP ViT-B/32 features", ORIGIN_PAPER,
                               "shown on the Synthetic vs natural page", checked=False),
                   PresetValue("CLIP weights", "ViT-B/32, LAION-2B (open_clip laion2b_s34b_b79k)", ORIGIN_LAB,
                               "the lab registers no other ViT-B/32; the paper's ViT-B/32 weights (likely OpenAI's) "
                               "could not be checked"),
                   PresetValue("generator", "Stable Diffusion 1.5", ORIGIN_LAB,
                               "guidance 2.0 needs a model that uses classifier-free guidance: SD-Turbo and SDXL-Turbo "
                               "ignore it. SD 1.5 is the 2022 model family the paper's comparison (models of "
                               "2022-2025) starts from; the paper's full model list was not re-checked here"),
                   PresetValue("PRDC k, N, natural photos, seeds", "k = 5 and the form's values", ORIGIN_LAB,
                               "k = 5 is Naeem et al.'s default"),
               ),
               summary="The generation settings of 'When Pretty Isn't Useful' (Adamkiewicz et al. 2026)."),
        Preset("he2023", "He et al. 2023: CLIP filter (zero-shot confidence > 1/K)", "he2023",
               ("train_on_synthetic",), page=(("cf", "on"), ("cf_t", "")),
               settings=(
                   PresetValue("score", "CLIP zero-shot confidence of the image's own class: softmax over the label "
                                        "set of exp(logit_scale) x cosine", ORIGIN_CODE,
                               "select_glide_ims_by_clip.py, CLIP_selector.forward and select_by_clip_thres_RS"),
                   PresetValue("text", "'a photo of a {class}.' per class", ORIGIN_CODE,
                               "their ImageNet prompt in the same script (other datasets use other wordings)"),
                   PresetValue("threshold", "1/K (K = number of classes), kept if confidence > threshold", ORIGIN_CODE,
                               "threshold = 1/class_num; the comparison is strict"),
                   PresetValue("logit scale", "100", ORIGIN_LAB,
                               "the script uses the model's exp(logit_scale); released OpenAI and LAION CLIP models "
                               "have 100 (the clamp of CLIP training), and a fixed value lets cached embeddings be "
                               "scored without loading the model"),
                   PresetValue("CLIP model", "the experiment's CLIP", ORIGIN_LAB,
                               "the script loads CLIP RN50, which the lab does not register"),
                   PresetValue("top-up", "a class with fewer than 2 images above the threshold keeps its 2 most "
                                         "confident", ORIGIN_LAB,
                               "the script keeps exactly 800 per class: a random 800 of those above the threshold, or "
                               "the 800 most confident when fewer pass. The lab keeps every image above the threshold "
                               "and tops up only so that each class can still be learned"),
                   PresetValue("generator", "the experiment's", ORIGIN_LAB, "the paper generated with GLIDE"),
               ),
               summary="The CLIP filter of He et al. (ICLR 2023), as in the authors' released script."),
        Preset("luccioni2023", "Luccioni et al. 2023 (Stable Bias): portraits of adjective x profession, clusters "
                               "12 / 24 / 48", "luccioni2023", ("stable_bias",),
               form=(("generator", "sd-1.5"),),
               settings=(
                   PresetValue("prompt", "'Photo portrait of a {adjective} {profession}'", ORIGIN_PAPER),
                   PresetValue("adjectives, professions", "20 adjectives, 131 professions (choose a subset)",
                               ORIGIN_PAPER, "the lists as transcribed by a third-party reproduction "
                                             "(ShashwatNigam99/Fair-Stable-Diffusion, target_social_attributes/); "
                                             "whether that transcription is complete could not be checked. "
                                             "'(no adjective)' is the lab's addition",
                               checked=False),
                   PresetValue("default subset", "2 adjectives x 3 professions, N = 16", ORIGIN_LAB,
                               "small enough to generate on one machine"),
                   PresetValue("clusters", "12, 24 and 48, cut from one tree", ORIGIN_PAPER, checked=False),
                   PresetValue("clustering", "Ward linkage on L2-normalised CLIP image embeddings", ORIGIN_LAB,
                               "the paper clusters hierarchically; its features and linkage could not be re-checked "
                               "here. Ward on unit vectors merges the pair that least increases within-cluster "
                               "variance, and one tree cut at several heights keeps the clusters nested"),
                   PresetValue("generator", "Stable Diffusion 1.5", ORIGIN_LAB,
                               "the paper used Stable Diffusion v1.4 and v2 and DALL-E 2; v1.4 is not registered, 1.5 "
                               "continues it"),
                   PresetValue("images per prompt, seeds, steps, guidance", "the form's values", ORIGIN_LAB),
               ),
               summary="The Stable Bias portrait prompts and clusters (Luccioni et al., NeurIPS 2023)."),
    )
}


def presets_for(page: str) -> dict[str, Preset]:
    return {k: p for k, p in PRESETS.items() if page in p.pages}


def matching_presets(spec, page: str) -> list[Preset]:
    """Presets offered on `page` whose form values `spec` has (a shared link shows their citation)."""
    return [p for p in presets_for(page).values() if p.form and not p.differences(spec)]
