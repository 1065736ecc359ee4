"""core.present.markup: user text inside Markdown renders as exactly that text, in Streamlit (CommonMark) and in the
report's own small Markdown reader (core.present.report.inline_html / markdown_safe)."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt
from markdown_support import PAYLOAD, render, shown_text

from core.present.markup import md_literal, md_plain
from core.present.report import Report, inline_html, markdown_html

TEXTS = [PAYLOAD, "a photo of a *cat*", "50% :red[alarm] $x^2$ ~~gone~~ | a | b |", "\\`not code\\`", "1. first",
         "# heading", "<script>alert(1)</script>", "line one\n\n    indented code", "ends with a backslash \\",
         "---", "- item", "[y]: http://example.invalid/x.png", "_under_ golf_ball", "3.142 [2.500, 3.750]"]


def one_line(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text)


@pytest.mark.parametrize("text", TEXTS)
def test_md_literal_renders_as_the_text_itself(text):
    rendered = render(md_literal(text))
    assert shown_text(rendered).strip() == one_line(text).strip()
    for tag in ("<img", "<a ", "<strong", "<em", "<code", "<h", "<ol", "<ul", "<blockquote", "<pre", "<script",
                "<table", "<del"):
        assert tag not in rendered, (text, rendered)


@pytest.mark.parametrize("text", TEXTS)
def test_the_reports_markdown_reader_shows_escaped_user_text_as_typed(text):
    html = inline_html(f"**Run:** {md_literal(text)} · done")
    assert html.startswith("<strong>Run:</strong> ")
    assert shown_text(html) == f"Run: {one_line(text)} · done"
    assert "<img" not in html and "<a " not in html and "<code" not in html and "<em" not in html


def test_md_plain_undoes_the_escapes_and_the_bold():
    assert md_plain(f"'{md_literal(PAYLOAD)}' drawn as **{md_literal('bird')}**") == f"'{PAYLOAD}' drawn as bird"


def test_a_report_written_as_markdown_keeps_titles_cells_and_text_literal():
    import pandas as pd
    from markdown_support import assert_literal_markdown

    r = Report(PAYLOAD, PAYLOAD).text(f"**Run:** {md_literal(PAYLOAD)}").heading(PAYLOAD)
    r.table(pd.DataFrame({"prompt": [PAYLOAD]}), title=PAYLOAD).settings({"prompt": PAYLOAD})
    assert_literal_markdown(r.to_markdown())
    assert "<img src=x>" not in markdown_html(f"**Run:** {md_literal(PAYLOAD)}")


@pytest.mark.parametrize("text", TEXTS)
def test_md_literal_renders_as_the_text_itself_inside_a_table(text):
    rendered = MarkdownIt("commonmark").enable(["table"]).render(f"| a |\n|---|\n| {md_literal(text)} |\n")
    assert shown_text(rendered).split("a", 1)[1].strip() == one_line(text).strip()
    for tag in ("<img", "<a ", "<strong", "<em", "<code", "<script", "<del"):
        assert tag not in rendered.split("</thead>", 1)[1], (text, rendered)
