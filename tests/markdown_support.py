"""User text must reach the screen and the reports as text, never as Markdown or HTML (core/present/markup.py).

`assert_literal(at, payload)` checks an AppTest page: every place Streamlit renders Markdown (markdown, captions,
message boxes, headers, expander and tab labels, widget labels and help, metric labels) is rendered here with a
CommonMark parser (markdown-it-py, raw HTML on, as strict as or stricter than Streamlit's); where the payload's
marker shows up, the result must hold no image, link, bold, code span or raw HTML, and the payload must be shown,
character for character, at least once (in such a place or in a plain-text element)."""

from __future__ import annotations

import html
import re

# Each part would render as something else if the text reached a Markdown renderer: a code span that closes early,
# bold, a javascript: link, an image fetched from elsewhere, raw HTML.
PAYLOAD = "`` ` **BOLD** [x](javascript:alert(1)) ![](http://example.invalid/x.png) <img src=x> ``"
# A file or folder name cannot hold '/': the same payload without it.
NAME_PAYLOAD = PAYLOAD.replace("/", "")
MARKER = "BOLD"

MARKDOWN_ELEMENTS = {"markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader"}
# What the payload would turn into: an image, a link, raw HTML, or its own text in bold or in a code span. (The page's
# own bold labels, e.g. "**Run:**", are fine.)
UNSAFE = re.compile(r"<(img|a|script|iframe)\b|<(strong|em|code)>[^<]*BOLD", re.I)


def render(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def shown_text(rendered_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered_html))


def markdown_sources(at) -> list[tuple[str, str]]:
    """(where, Markdown source) of everything the page renders as Markdown."""
    out = []
    for root in (at.main, at.sidebar):
        for node in root:
            kind = getattr(node, "type", "")
            if kind in MARKDOWN_ELEMENTS:
                out.append((kind, str(node.value)))
            for attr in ("label", "help"):  # expanders, tabs, widgets, metrics: Streamlit renders these as Markdown
                value = getattr(node, attr, None)
                if isinstance(value, str) and value:
                    out.append((f"{kind} {attr}", value))
    return out


def plain_texts(at) -> list[str]:
    return [str(node.value) for root in (at.main, at.sidebar) for node in root
            if getattr(node, "type", "") in ("text", "code")]


def assert_literal(at, payload: str = PAYLOAD) -> int:
    """The payload appears, and only as literal text. Returns how many places show it."""
    shown = []
    for where, source in markdown_sources(at):
        if MARKER not in source:
            continue
        rendered = render(source)
        assert not UNSAFE.search(rendered), f"{where} renders user text as Markdown/HTML: {source!r} -> {rendered!r}"
        shown.append(shown_text(rendered))
    shown += plain_texts(at)
    places = sum(payload in text for text in shown)
    assert places, f"the payload is not shown literally anywhere; places with its marker: {shown}"
    return places


def assert_literal_markdown(markdown: str, payload: str = PAYLOAD) -> None:
    """A Markdown document (report.md) shows the payload literally and renders none of it (its own figures and
    bold labels are fine)."""
    rendered = render(markdown)
    for made in ("<strong>BOLD", 'href="javascript', 'src="http://example.invalid', "<img src=x>", "<code>`"):
        assert made not in rendered, f"report.md renders user text: {made!r} in {rendered!r:.2000}"
    assert payload in shown_text(rendered), "report.md does not show the payload literally"


def assert_literal_html(document: str, payload: str = PAYLOAD) -> None:
    """An HTML report shows the payload as escaped text: no tag, bold or link made of it."""
    for made in ("<img src=x>", "<strong>BOLD", 'href="javascript', 'src="http://example.invalid'):
        at = document.find(made)
        assert at < 0, f"the HTML report renders user text: {document[max(0, at - 300):at + 100]!r}"
    assert html.escape(payload, quote=False) in document or html.escape(payload) in document, \
        "the HTML report does not show the payload (escaped)"
