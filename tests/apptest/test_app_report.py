"""The report downloads of the Diversity, Ambiguity and Adherence pages, through Streamlit's AppTest with the offline
tiny-random models.

A download button given a callable registers it with Streamlit's media file manager (the browser asks for it on
click). The tests record those callables, call the ones the report buttons registered, exactly as a click would,
and compare the report with what the page shows: its numbers as displayed, the prompt, the model revision and the
library versions.
"""

from __future__ import annotations

import io
import re
import zipfile
from importlib import metadata
from unittest import mock

from app_support import table_elements
from report_support import ParsedHTML, assert_self_contained
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.scriptrunner import RerunData
from streamlit.testing.v1 import AppTest

from core.analysis.stats import Estimate
from core.pipeline.registry import TINY_RANDOM

TIMEOUT = 240
N = 4
TINY = {"generator": TINY_RANDOM, "clip": TINY_RANDOM, "n": str(N)}
DIVERSITY = {**TINY, "prompt": "a photo of a tench", "ref": "folder:imagenette224", "ref_class": "tench"}
AMBIGUITY = {**TINY, "prompt": "a photo of a crane", "preset": "crane"}
ADHERENCE = {**TINY, "prompt": "a photo of a tench", "ref": "folder:imagenette224", "ref_class": "tench",
             "classes": "tench, golf ball, parachute"}
REPORT_BUTTONS = ["Download report (HTML)", "Download report (Markdown + PNG)"]


class Downloads:
    """The deferred payloads registered by download buttons during the runs, by file name."""

    def __init__(self):
        self.by_name: dict[str, object] = {}

    def record(self, original):
        def add_deferred(manager, data_callable, mimetype, coordinates, file_name=None, **kwargs):
            self.by_name[file_name] = data_callable
            return original(manager, data_callable, mimetype, coordinates, file_name, **kwargs)

        return add_deferred

    def report(self, kind: str) -> bytes:
        names = [n for n in self.by_name if "-report-" in n and n.endswith(kind)]
        assert len(names) == 1, f"report downloads registered: {list(self.by_name)}"
        return self.by_name[names[0]]()


def open_page(page: str, params: dict, context: dict | None = None) -> tuple[AppTest, Downloads]:
    """The page with these URL parameters, generated if the cache lacks the run; the report payloads recorded."""
    downloads = Downloads()
    # Nothing is drawn for the report while the page runs: only a click builds it.
    with mock.patch.object(MediaFileManager, "add_deferred", downloads.record(MediaFileManager.add_deferred)), \
            mock.patch("core.present.report.render_png",
                       side_effect=AssertionError("a report chart was drawn unasked")):
        at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT)
        at.context = context or {}
        at.switch_page(page)
        for k, v in params.items():
            at.query_params[k] = v
        at.run()
        if any("not in the cache" in w.value or "are in the cache" in w.value for w in at.warning):
            at = next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [b.label for b in at.get("download_button")][-2:] == REPORT_BUTTONS
    return at, downloads


def bold_text(markdown: str) -> str:
    """The text a reader sees of a line the page wrote in Markdown (bold and code marks gone)."""
    return re.sub(r"\s+", " ", markdown.replace("**", "").replace("`", ""))


def estimate_rows(frame, value: str = "value") -> list[tuple[str, str]]:
    """(estimate as the report writes it, n) for every row of a page's table of estimates; a table whose note
    says "interval clipped to [a, b]" gets the same words the report writes."""
    def clipped(row) -> str:
        found = re.search(r"interval clipped to (\[[^\]]*\])", str(row.get("note", "")))
        return found[1] if found else ""

    return [(Estimate("", row[value], row["95% low"], row["95% high"], int(row["n"]), clipped=clipped(row)).format(3),
             str(int(row["n"]))) for row in frame.to_dict("records")]


def check_common(doc: ParsedHTML, at: AppTest, prompt: str) -> None:
    """The prompt, the model revision shown in the page's run line, the versions, the link, the lab's defaults."""
    assert prompt in doc.text
    run_line = next(c.value for c in at.caption if c.value.startswith("**Run"))
    short_revision = re.search(r" @ (\S+) ·", run_line)[1]
    revision = next(row[1] for row in doc.rows_with("generator revision") if len(row) == 2)
    assert revision.startswith(short_revision) and len(revision) >= len(short_revision)
    assert doc.rows_with("generator model", TINY_RANDOM)
    generated_with = next(row[1] for row in doc.rows_with("generator generated with"))
    for name in ("diffusers", "torch", "transformers"):
        assert f"{name} {metadata.version(name)}" in generated_with
    libraries = next(row[1] for row in doc.rows_with("libraries (this report)"))
    assert f"streamlit {metadata.version('streamlit')}" in libraries
    assert doc.rows_with("CLIP architecture", "ViT-S-32")
    assert doc.rows_with("request.prompt", prompt) or doc.rows_with("request.run.prompt", prompt)
    assert "Defaults that are the lab's own choice" in doc.text and "bootstrap:" in doc.text
    assert "images (N): 4: set for this run (the default is 16)" in doc.text


def check_markdown_zip(downloads: Downloads, figures: int) -> str:
    archive = zipfile.ZipFile(io.BytesIO(downloads.report(".zip")))
    md = archive.read("report.md").decode()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md)
    assert sorted(referenced) == sorted(n for n in archive.namelist() if n != "report.md")
    assert len([n for n in referenced if n.startswith("figures/")]) == figures
    return md


# -- Diversity ---------------------------------------------------------------------------------------------------------
def test_diversity_report_holds_the_pages_numbers_charts_and_settings():
    at, downloads = open_page("pages/diversity.py", DIVERSITY)
    doc = ParsedHTML(downloads.report(".html").decode())
    link = next(a["href"] for t, a in doc.tags if t == "a")
    assert_self_contained(doc, link)
    # No browser: the link is relative, the page's path and its query (every setting, the reference, the map).
    assert link.startswith("diversity?") and "prompt=a+photo+of+a+tench" in link and "ref_class=tench" in link
    assert "map=pca" in link
    check_common(doc, at, "a photo of a tench")

    # The reading the page shows, word for word, and every number of its statistics table with n.
    reading = next(m.value for m in at.markdown if "Synthetic Vendi" in m.value)
    assert bold_text(reading) in doc.text
    table = table_elements(at)[0].value
    assert len(table) == 8  # 4 statistics x (synthetic, natural)
    for (source, statistic), (estimate, n) in zip(zip(table["source"], table["statistic"]), estimate_rows(table)):
        assert doc.rows_with(source, statistic, estimate, n), (source, statistic, estimate)
    assert doc.rows_with("natural_reference.class", "tench") and doc.rows_with("natural_reference.n", str(N))
    assert doc.rows_with("request.n", str(N)) and doc.rows_with("projection", "pca")

    # Three charts (statistics, heatmap, map) and the 4 generated images.
    images = doc.images()
    assert [m for _, _, m in images].count("image/png") == 3
    assert [a["alt"] for a, _, _ in images if a["alt"].startswith("seed ")] == [f"seed {i}" for i in range(N)]
    assert {"Cosine similarity between images", "CLIP image embeddings (PCA)"} <= {a["alt"] for a, _, _ in images}
    md = check_markdown_zip(downloads, figures=3)
    assert bold_text(reading) in bold_text(md)


def test_the_report_link_is_the_browsers_address_of_the_page():
    at, downloads = open_page("pages/diversity.py", DIVERSITY, context={"url": "https://lab.example.org/ddl/diversity"})
    doc = ParsedHTML(downloads.report(".html").decode())
    link = next(a["href"] for t, a in doc.tags if t == "a")
    base, query = link.split("?", 1)
    assert base == "https://lab.example.org/ddl/diversity"
    assert {"prompt=a+photo+of+a+tench", "n=4", "ref_class=tench", "map=pca"} <= set(query.split("&"))



def test_the_diversity_reports_settings_follow_the_projection_the_map_fragment_chose():
    """Picking t-SNE reruns only the map's fragment: the report (already offered by the full run) must say t-SNE in its
    settings and its link, under the t-SNE figure (it said "projection: pca")."""
    at, downloads = open_page("pages/diversity.py", DIVERSITY)
    fragments = list(at._fragment_storage._fragments)  # the page has one fragment: the heatmap and the map
    assert len(fragments) == 1

    def fragment_rerun(**kwargs):  # what the browser asks for when a widget inside a fragment changes
        return RerunData(**kwargs, fragment_id_queue=list(fragments), is_fragment_scoped_rerun=True)

    radio = next(r for r in at.radio if r.label == "Projection")
    radio.set_value("tsne")
    with mock.patch("streamlit.testing.v1.local_script_runner.RerunData", side_effect=fragment_rerun):
        at.run()
    assert not at.exception, at.exception
    assert not any(b.label == REPORT_BUTTONS[0] for b in at.get("download_button"))  # only the fragment ran
    doc = ParsedHTML(downloads.report(".html").decode())
    assert doc.rows_with("projection", "tsne") and not doc.rows_with("projection", "pca")
    assert any(a["alt"].startswith("CLIP image embeddings (t-SNE") for a, _, _ in doc.images())
    assert "map=tsne" in next(a["href"] for t, a in doc.tags if t == "a")

# -- Ambiguity ---------------------------------------------------------------------------------------------------------
def test_ambiguity_report_holds_shares_entropy_calibration_and_clusters():
    at, downloads = open_page("pages/ambiguity.py", AMBIGUITY)
    doc = ParsedHTML(downloads.report(".html").decode())
    check_common(doc, at, "a photo of a crane")
    md_lines = [m.value for m in at.markdown]
    reading = next(v for v in md_lines if "CLIP assigns" in v)
    accuracy = next(v for v in md_lines if v.startswith("**Zero-shot sense accuracy"))
    k_line = next(v for v in md_lines if v.startswith("k-means"))
    for line in (reading, accuracy, k_line):
        assert bold_text(line) in doc.text, line
    shares, entropies = table_elements(at)[0].value, table_elements(at)[1].value
    for row, (estimate, n) in zip(shares.to_dict("records"), estimate_rows(shares, "share")):
        assert doc.rows_with(f"{row['variant']} · {row['sense']}", estimate, n)
    for row, (estimate, n) in zip(entropies.to_dict("records"), estimate_rows(entropies, "entropy (nats)")):
        assert doc.rows_with(row["variant"], estimate, n)
    assert doc.rows_with("view.k", "auto") and "k-means, random_state 0" in doc.text
    assert any("construction machine" in row[1] for row in doc.rows_with("request.senses"))
    check_markdown_zip(downloads, figures=1)


# -- Adherence ---------------------------------------------------------------------------------------------------------
def test_adherence_report_holds_clipscores_and_ranks():
    at, downloads = open_page("pages/adherence.py", ADHERENCE)
    doc = ParsedHTML(downloads.report(".html").decode())
    check_common(doc, at, "a photo of a tench")
    score_line = next(m.value for m in at.markdown if m.value.startswith("**Mean CLIPScore"))
    assert bold_text(score_line) in doc.text
    # The reading's two estimates, as numbers with n (3 decimals, the reading's own format).
    for source, estimate in re.findall(r"(generated images|natural photos) (\S+ \[\S+, \S+\]) \(n=4\)", score_line):
        assert doc.rows_with("synthetic" if source == "generated images" else "natural", "mean CLIPScore", estimate,
                             str(N)), (source, estimate)
    ranks = next(d.value for d in table_elements(at) if "statistic" in d.value.columns)
    for row, (estimate, n) in zip(ranks.to_dict("records"), estimate_rows(ranks)):
        assert doc.rows_with(row["source"], row["statistic"], estimate, n)
    assert doc.rows_with("intended class", "tench") and doc.rows_with("class names", "tench, golf ball, parachute")
    assert "CLIPScore: the prompt as written" in doc.text
    check_markdown_zip(downloads, figures=2)  # the histogram and the ranks (no sweep run)


# -- a lesson ----------------------------------------------------------------------------------------------------------
def test_lesson_report_holds_its_reading_numbers_settings_and_provenance():
    """Lesson 3 (lack of diversity) with tiny-random: one click, then the report holds the sentence the page shows,
    every estimate of its table with n, the lesson's settings and where each comes from, and the generator's
    revision and versions."""
    downloads = Downloads()
    with mock.patch.object(MediaFileManager, "add_deferred", downloads.record(MediaFileManager.add_deferred)):
        at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT)
        at.switch_page("pages/lesson_diversity.py")
        at.query_params.update({"generator": TINY_RANDOM, "clip": TINY_RANDOM})
        at.run()
        run_button = [b for b in at.button if b.label == "Run the experiment"]
        if run_button:
            at = run_button[0].click().run()
    assert not at.exception, at.exception
    assert [b.label for b in at.get("download_button")][-2:] == REPORT_BUTTONS
    doc = ParsedHTML(downloads.report(".html").decode())
    link = next(a["href"] for t, a in doc.tags if t == "a")
    assert_self_contained(doc, link)
    assert link.startswith("lesson_diversity?") and "generator=tiny-random" in link
    reading = next(bold_text(m.value) for m in at.markdown if m.value.startswith("**Synthetic Vendi"))
    assert reading in bold_text(doc.text)
    table = next(e.value for e in table_elements(at) if "95% low" in e.value.columns)  # not "Settings used"
    for estimate, n in estimate_rows(table):
        assert doc.rows_with(estimate, n), estimate
    assert doc.rows_with("generator model", TINY_RANDOM) and doc.rows_with("CLIP architecture", "ViT-S-32")
    assert "Defaults that are the lab's own choice" in doc.text
    defaults = doc.text[doc.text.find("Defaults that"):]
    assert "64 px (the preset's defaults) (your choice" in defaults and "seeds 0-7 (lab's own choice)" in defaults
    assert sum(1 for t, a in doc.tags if t == "img") >= 3  # the chart and the two image strips
