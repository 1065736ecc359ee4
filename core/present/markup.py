"""User text inside Markdown: prompts, class names, file names, hypernyms, definitions, pack titles and anything a
link carries are data. Streamlit renders Markdown in captions, message boxes, headers, widget and tab labels, help
tooltips and radio options; the report's text blocks understand a few Markdown forms too. A prompt such as
"**x** ![](http://host/x.png)" must show as those characters, never as bold text or as an image every viewer's
browser fetches. So every user text that goes into a Markdown string goes through `md_literal` first:

    st.caption(f"**Run:** {md_literal(prompt)} · 4 steps")   # bold label, the prompt exactly as typed

A sentence that quotes user text (an error message, a reading that names a class) goes through it whole.

No Streamlit here (core/ never imports it): the pages, ui*.py and core.present.report all use this module.
"""

from __future__ import annotations

import re

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# Only what can start a construct is escaped (a backslash before ASCII punctuation is always literal in CommonMark),
# so sentences stay readable in the source and in report.md:
_SPECIAL = re.compile(
    r"[\\`*<>&~$|@]"                     # code, emphasis, raw HTML and autolinks, entities, strikethrough, maths,
                                         # tables, e-mail autolinks
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # '_' emphasis (never inside a word such as golf_ball)
    r"|(?<=\])\(|!(?=\[)"                # '](' of a link or image, '![' of an image
    r"|:(?=[A-Za-z/])"                   # Streamlit's ':red[..]', ':material/..:', ':emoji:'; 'http://' autolinks
    r"|(?<=www)\.",                      # GFM's bare 'www.' autolinks
    re.I)
# At the start of the text: a heading, a list item, a quote, a setext underline, a link definition or footnote.
_BLOCK_START = re.compile(r"^(?:([#+\-=>\[])|(\d{1,9})([.)])(?=\s|$))")


def md_literal(text: object) -> str:
    """`text` as Markdown that renders as exactly that text, on one line.

    Line breaks become spaces (inside a sentence one could start a heading, a list or a code block) and leading
    spaces go (four of them would start a code block)."""
    s = _SPECIAL.sub(lambda m: "\\" + m[0], _LINE_BREAKS.sub(" ", str(text)).lstrip())
    return _BLOCK_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", s, count=1)


def md_list(items, sep: str = ", ") -> str:
    """Several user texts joined, each literal."""
    return sep.join(md_literal(item) for item in items)


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def md_plain(markdown: str) -> str:
    """What a short Markdown line built here shows, as plain text (bold markers dropped, escapes undone): for a
    title that is written elsewhere as plain text (a report's image-set title)."""
    return _ESCAPED.sub(r"\1", markdown.replace("**", ""))
