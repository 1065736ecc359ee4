"""The report downloads of the Synthetic vs natural, Train on synthetic, CLIP geometry and Stable Bias pages, through
Streamlit's AppTest with the offline tiny-random models (2 classes, N = 4 synthetic images and 6 natural photos each;
Stable Bias: 2 prompts x N = 4 portraits).

The pages are generated once, then opened again from the cache with test_app_report's `open_page`, which records
the download callables (and fails if a report chart is drawn before a click). Each test calls the report's callables
as a click would and compares the report with what the page shows: its numbers as displayed with their n, the
settings, the citation of a paper's preset, the generator's revision and the library versions, the lab's defaults,
and the Markdown zip's files.
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest
from app_support import table_elements
from report_support import ParsedHTML, assert_self_contained
from streamlit.testing.v1 import AppTest
from test_app_report import TIMEOUT, Downloads, bold_text, check_markdown_zip, open_page

from core.analysis.bias import short_prompt
from core.analysis.probe import CLASSIFIERS
from core.pipeline.registry import TINY_RANDOM

SVN, TRAIN, GEOMETRY, BIAS = ("pages/synthetic_vs_natural.py", "pages/train_on_synthetic.py",
                              "pages/clip_geometry.py", "pages/stable_bias.py")
CLASSES = {"classes": "tench,church", "n": "4", "n_nat": "6", "generator": TINY_RANDOM, "clip": TINY_RANDOM,
           "ref": "folder:imagenette224"}
PORTRAITS = {"adj": "-", "prof": "CEO,janitor", "n": "4", "generator": TINY_RANDOM, "clip": TINY_RANDOM,
             "cuts": "2,4"}
GENERATE = {SVN: "Generate missing images and analyse", GEOMETRY: "Generate missing images and analyse",
            BIAS: "Generate missing portraits and cluster"}


def generate(page: str, params: dict) -> None:
    """Open the page from its link and press its generate button: the images the report tests read."""
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT).run()
    at.switch_page(page)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    at = next(b for b in at.button if b.label == GENERATE[page]).click().run()
    assert not at.exception, at.exception
    assert any("images generated" in s.value for s in at.success), [s.value for s in at.success]


@pytest.fixture(scope="module")
def classes_generated():
    generate(SVN, CLASSES)


def report_of(page: str, params: dict) -> tuple[AppTest, Downloads, ParsedHTML, str]:
    """The page opened from the cache, its HTML report (checked self-contained) and the report's link."""
    at, downloads = open_page(page, params)
    doc = ParsedHTML(downloads.report(".html").decode())
    link = next(a["href"] for t, a in doc.tags if t == "a")
    assert_self_contained(doc, link)
    url_path = page.split("/")[-1][:-3]
    assert link.startswith(f"{url_path}?"), link
    return at, downloads, doc, link


def check_provenance(doc: ParsedHTML, at: AppTest, run_prefix: str) -> None:
    """The generator's revision as the page's run line shows it (12 characters) and in full, the libraries that
    generated and those of the report, the CLIP model, and the lab's-defaults section."""
    run_line = next(c.value for c in at.caption if c.value.startswith(run_prefix))
    short_revision = re.search(r" @ (\S+) ·", run_line)[1]
    revision = next(row[1] for row in doc.rows_with("generator revision") if len(row) == 2)
    assert revision.startswith(short_revision) and len(revision) > len(short_revision)
    assert doc.rows_with("generator model", TINY_RANDOM)
    generated_with = next(row[1] for row in doc.rows_with("generator generated with"))
    for name in ("diffusers", "torch", "transformers"):
        assert f"{name} {metadata.version(name)}" in generated_with
    libraries = next(row[1] for row in doc.rows_with("libraries (this report)"))
    for name in ("streamlit", "altair", "scikit-learn", "vl-convert-python"):
        assert f"{name} {metadata.version(name)}" in libraries, name
    assert doc.rows_with("CLIP architecture", "ViT-S-32")
    assert bold_text(run_line) in bold_text(doc.text)
    defaults = doc.text[doc.text.index("Defaults that are the lab's own choice"):]
    assert "images (N): 4: set for this run (the default is 16)" in defaults
    assert f"generator: {TINY_RANDOM}: set for this run" in defaults


def check_class_settings(doc: ParsedHTML, template: str, prompt: str) -> str:
    """The experiment's settings and the class pages' defaults note; returns the lab's-defaults text."""
    assert doc.rows_with("experiment.classes", "tench, church")
    assert doc.rows_with("experiment.n", "4") and doc.rows_with("experiment.n_natural", "6")
    assert any(row[1].startswith(f"{template} (") for row in doc.rows_with("experiment.template"))
    assert doc.rows_with("experiment.prompts.tench", prompt)
    assert doc.rows_with("experiment.source", "folder:imagenette224")
    # The images behind every number, as the page's table has them.
    assert doc.rows_with("tench", prompt, "4", "6")
    defaults = doc.text[doc.text.index("Defaults that are the lab's own choice"):]
    assert "natural photos per class: 6: set for this run (the default is 100)" in defaults
    assert "Marwood et al.'s own settings are unknown" in defaults  # ui_classes.LAB_DEFAULTS_NOTE
    return defaults


def figures(doc: ParsedHTML) -> list[str]:
    """The alt texts of the report's charts (PNG) in order."""
    return [attrs["alt"] for attrs, _, mime in doc.images() if mime == "image/png"]


# -- Synthetic vs natural ---------------------------------------------------------------------------------------------
def test_synthetic_vs_natural_report(classes_generated):
    at, downloads, doc, link = report_of(SVN, CLASSES)
    assert "classes=tench%2Cchurch" in link and "nn_class=tench" in link
    check_provenance(doc, at, "**Generator:**")
    defaults = check_class_settings(doc, "photo", "a photo of a tench")
    assert "prompt template: photo: the lab's default" in defaults and "PRDC k = 5" in defaults
    assert doc.rows_with("settings from papers", "none") and "Settings from a paper" not in doc.text

    # The probe: the reading word for word, the pooled metrics and every per-class cell with its n.
    reading = next(m.value for m in at.markdown if "A linear probe tells synthetic from natural" in m.value)
    assert bold_text(reading) in doc.text
    metrics = {m.label: m.value for m in at.metric}
    assert doc.rows_with("ROC AUC", metrics["ROC AUC (0.5 = chance, 1 = always right)"], "20")
    assert doc.rows_with("balanced accuracy", metrics["balanced accuracy"], "20")
    per_class = next(d.value for d in table_elements(at) if "ROC AUC" in d.value.columns)
    for row in per_class.to_dict("records"):
        assert doc.rows_with(row["class"], "ROC AUC", row["ROC AUC"], str(row["n"])), row
        assert doc.rows_with(row["class"], "balanced accuracy", row["balanced accuracy"], str(row["n"])), row
    # Distances: every cell of the page's table (FD, CMMD, PRDC; n/a with its reason where a set is too small).
    wide = next(d.value for d in table_elements(at) if "FD (CLIP)" in d.value.columns)
    cells = [(row["class"], stat, row[stat]) for row in wide.to_dict("records")
             for stat in ("FD (CLIP)", "CMMD", "precision", "recall", "density", "coverage")]
    assert len(cells) == 18 and any(shown.startswith("n/a (") for *_, shown in cells)
    for cls, stat, shown in cells:
        assert doc.rows_with(cls, stat, shown), (cls, stat, shown)
    assert doc.rows_with("all classes", "CMMD")[0][3] == "20"  # n: 8 synthetic + 12 natural

    # Charts: probe scores, distances, the shared map; the neighbours (4 x (1 + 5)) and the uncovered photos.
    assert figures(doc) == ["Out-of-fold probe scores", "Distances per class (95% intervals)",
                            "One map: images and prompts"]
    thumbs = [attrs["alt"] for attrs, _, mime in doc.images() if mime == "image/jpeg"]
    assert len(thumbs) == len(at.get("image")) > 4 * 6  # the page's images, the same ones
    assert thumbs[0] == "synthetic: tench · seed 0" and "Class shown: tench" in doc.text
    assert "natural photos are uncovered" in doc.text
    md = check_markdown_zip(downloads, figures=3)
    assert bold_text(reading) in bold_text(md)


# -- Train on synthetic, with He et al.'s CLIP filter -----------------------------------------------------------------
def test_train_on_synthetic_report_with_the_clip_filter(classes_generated):
    at, downloads, doc, link = report_of(TRAIN, {**CLASSES, "cf": "on", "clf": "knn", "share": "30"})
    assert "cf=on" in link and "clf=knn" in link
    check_provenance(doc, at, "**Generator:**")
    defaults = check_class_settings(doc, "photo", "a photo of a tench")
    assert doc.rows_with("page.classifier", "knn") and doc.rows_with("page.mixed training set: synthetic share (%)",
                                                                     "30")
    assert doc.rows_with("page.CLIP filter", "on") and doc.rows_with("page.threshold", "0.5")

    # Every accuracy of the summary as displayed (%, 1 decimal), with its training set and test photos.
    summary = next(d.value for d in table_elements(at) if "trained on" in d.value.columns)
    assert len(summary) == 6 and "mix (30% synthetic)" in list(summary["trained on"])
    for row in summary.to_dict("records"):
        statistic = (f"accuracy (%), trained on {row['synthetic images']} synthetic + {row['natural photos']} "
                     f"natural")
        assert doc.rows_with(f"{row['classifier']} · {row['trained on']}", statistic,
                             row["accuracy on natural photos (%)"], str(row["test photos"])), row
    for gap in (m.value for m in at.markdown if "held-out natural photos correctly;" in m.value):
        assert bold_text(gap) in doc.text

    # He et al.: the citation, where each value comes from, the filter's numbers, and the lab's choices in it.
    assert "Settings from a paper: He et al. 2023" in doc.text
    for fragment in ("arXiv:2210.07574", "select_glide_ims_by_clip.py", "threshold = 1/K"):
        assert fragment in doc.text, fragment
    assert doc.rows_with("settings from papers", "he2023")
    assert "He et al. 2023: top-up" in defaults and "He et al. 2023: logit scale" in defaults
    filtered = next(d.value for d in table_elements(at) if "training set" in d.value.columns)
    for row in filtered.to_dict("records"):
        assert doc.rows_with(row["training set"], f"accuracy (%), {row['synthetic images']} synthetic images",
                             row["accuracy on natural photos (%)"], str(row["test photos"])), row
    per_class = next(d.value for d in table_elements(at) if "filtered out" in d.value.columns)
    dropped = int(per_class["filtered out"].sum())
    assert len([a for a, _, m in doc.images() if m == "image/jpeg"]) == dropped == len(at.get("image"))

    assert figures(doc)[:4] == ["Accuracy on held-out natural photos (dashed: chance, 0.50)",
                                "Accuracy per class on natural photos",
                                "Confusion matrix (synthetic only)",
                                f"Learning curve ({CLASSIFIERS['knn']})"]
    assert len(figures(doc)) == 5  # and diversity vs accuracy
    check_markdown_zip(downloads, figures=5)


# -- CLIP geometry, with a paper's prompt (Sariyildiz et al.'s bare class name) ----------------------------------------
def test_clip_geometry_report_with_a_papers_prompt():
    params = {**CLASSES, "template": "name"}  # Sariyildiz et al.'s prompt 'c': a link with it cites the paper
    generate(GEOMETRY, params)
    at, downloads, doc, link = report_of(GEOMETRY, params)
    assert "template=name" in link
    check_provenance(doc, at, "**Generator:**")
    defaults = check_class_settings(doc, "name", "tench")
    assert "prompt template: name: set for this run (the default is photo)" in defaults
    assert "Settings from a paper: Sariyildiz et al. 2023: prompt 'c'" in doc.text
    assert "arXiv:2212.08420" in doc.text and "CVPR 2023" in doc.text
    assert doc.rows_with("settings from papers", "sariyildiz2023-c")
    assert "Sarıyıldız et al. 2023: class name c" in defaults  # a value of the preset that is the lab's own choice

    # All classes: every estimate of the page's table, with n = the images of that source.
    overall = at.table[0].value
    for statistic, row in overall.iterrows():
        assert doc.rows_with("synthetic", statistic, row["synthetic"], "8"), statistic
        assert doc.rows_with("natural", statistic, row["natural"], "12"), statistic
    # Per class: every cell of the page's wide table.
    wide = next(t.value for t in table_elements(at) if "modality gap (synthetic)" in t.value.columns)
    for row in wide.to_dict("records"):
        for column, shown in row.items():
            if column != "class":
                statistic, source = re.fullmatch(r"(.+) \((synthetic|natural)\)", column).groups()
                assert doc.rows_with(f"{row['class']} · {source}", statistic, shown,
                                     "4" if source == "synthetic" else "6"), (row["class"], column)
    offsets = next(m.value for m in at.markdown if "offsets have mean pairwise cosine" in m.value)
    assert bold_text(offsets) in doc.text
    closeness = next(m.value for m in at.markdown if m.value.startswith("**In "))
    assert bold_text(closeness) in doc.text
    assert figures(doc) == ["All classes (95% intervals)", "Nearer its prompt? (click a class)",
                            "Centroid distance per class",
                            "Cosine between the classes' offsets", "Every image projected on the mean offset direction",
                            "Cosine of each image with its class-and-source centroid"]
    assert "Not measured for this report" in doc.text
    check_markdown_zip(downloads, figures=6)


# -- Stable Bias ------------------------------------------------------------------------------------------------------
def test_stable_bias_report():
    generate(BIAS, PORTRAITS)
    at, downloads, doc, link = report_of(BIAS, PORTRAITS)
    assert "prof=CEO%2Cjanitor" in link and "k=4" in link
    check_provenance(doc, at, "**Run:**")
    assert doc.rows_with("experiment.professions", "CEO, janitor") and doc.rows_with("clusters shown (k)", "4")
    assert doc.rows_with("experiment.adjectives", "(no adjective)") and doc.rows_with("experiment.steps",
                                                                                      "the generator's default (4)")
    assert doc.rows_with("experiment.cuts", "[2, 4]") and doc.rows_with("experiment.n", "4")
    # The paper is cited with where each value comes from, and where this run departs from it.
    assert "Settings from a paper: Luccioni et al. 2023" in doc.text and "arXiv:2303.11408" in doc.text
    assert "This run's settings differ from the preset in: generator." in doc.text
    defaults = doc.text[doc.text.index("Defaults that are the lab's own choice"):]
    assert "Luccioni et al. 2023: clustering: Ward linkage" in defaults
    assert "adjectives and professions: chosen for this run" in defaults and "clusters shown: k = 4" in defaults
    assert f"generator: {TINY_RANDOM}: set for this run (this page's default is sd-1.5)" in defaults

    # The reading and the cluster-by-prompt counts and shares, every cell as the page shows it.
    reading = next(m.value for m in at.markdown if m.value.startswith("**At 4 clusters"))
    assert bold_text(reading) in doc.text
    counts, shares = table_elements(at)[0].value, table_elements(at)[1].value
    assert int(counts["all prompts"].sum()) == 8
    count_table, share_table = [t for t in doc.tables if t and t[0] and t[0][0] == "cluster"]
    # The page's headers leave out the prompts' common start; the report keeps the prompts whole.
    count_table[0], share_table[0] = ([t[0][0], *map(short_prompt, t[0][1:])] for t in (count_table, share_table))
    assert count_table == [["cluster", *counts.columns]] + [[cluster, *map(str, row)] for cluster, row in
                                                            zip(counts.index, counts.values.tolist())]
    assert share_table == [["cluster", *shares.columns]] + [[cluster, *row] for cluster, row in
                                                            zip(shares.index, shares.values.tolist())]
    # The exemplars the page shows, with their captions.
    thumbs = [a["alt"] for a, _, m in doc.images() if m == "image/jpeg"]
    assert thumbs == [im.proto.imgs[0].caption for im in at.get("image")] and 4 <= len(thumbs) <= 8
    assert figures(doc) == ["Share of each prompt's portraits in each cluster (k = 4)"]
    check_markdown_zip(downloads, figures=1)
