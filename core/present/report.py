"""Experiment reports: one page's results as a file to send to a colleague or to cut figures from for a slide.

A `Report` is an ordered list of blocks, added by the page from values it has already computed:

    report = Report("Lack of diversity: a photo of a tench", page="Diversity", link="http://host/diversity?...")
    report.text("**Synthetic Vendi 3.1 [2.7, 3.5] (n=8) vs natural ...**")
    report.chart(statistics_chart(rows), caption="Point estimate with its 95% interval.")
    report.numbers({"synthetic": estimates})  # core.analysis.stats.Estimate: value [low, high] and n
    report.images(previews, labels, title="Generated images")
    report.settings({"request": asdict(req)})
    report.provenance([run.settings], clip_preset, clip_key)
    report.lab_defaults(generation_defaults(req, preset) | {"bootstrap": LAB_CHOICES["bootstrap"]})
    html = report.to_html()              # one self-contained file
    archive = report.to_markdown_zip()   # report.md + figures/*.png + images/*

Adding a block is cheap (a chart is kept as the Altair object): all the work, such as rendering charts to PNG with
vl-convert, happens in `to_html` / `to_markdown_zip`, so a page can describe its report on every run and build it
only when a download is asked for. The outputs are deterministic except for the creation time (pass `created` to
fix it).

Formats (tests and readers rely on them):
- A number with its uncertainty is written `value [low, high]` (`Estimate.format(digits)`, 3 decimals unless the
  caller asks otherwise): the estimate and its 95% interval; n, the number of images it is computed from, stands in
  its own column. An undefined number reads `n/a (why)`.
- Table cells: floats with the block's digits (NaN as `n/a`), booleans as yes/no.
- Settings: nested dicts flattened to dotted names (`request.prompt`), values as JSON where not plain text.
- HTML: one file, inline CSS, every image a base64 data URI, no script, no external URL loaded (a
  Content-Security-Policy says so to the browser too); the only link is the page's shareable URL. All text is
  escaped (prompts are user text); text blocks understand **bold**, *italic* and `code` only.
- Markdown zip: report.md, charts as figures/fig<NN>-<title>.png (numbered in order), image sets as
  images/set<NN>-<MM>-<caption>.<jpg|png>. Entries carry a fixed date, so equal reports give equal archives.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import re
import threading
import zipfile
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from core.analysis.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, Estimate
from core.pipeline.config import library_versions
from core.present.markup import md_literal

LAB_NAME = "Diffusion Diversity Lab"
CHART_SCALE = 2  # PNG pixels per CSS pixel: a 560 px wide chart becomes 1120 px, sharp on a projected slide
DEFAULT_CHART_WIDTH = 560  # charts the page lets fill its column ("container" or no width) get this in the report
DEFAULT_CHART_HEIGHT = 320
MAX_IMAGES_PER_SET = 48  # a report is for reading: the full set is in the page's run download
MAX_TABLE_ROWS = 200
DIGITS = 3
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: fixed, so equal reports give equal archives

# Libraries whose versions a report lists (what generated, embedded, computed and drew the results).
REPORT_LIBRARIES = ("diffusers", "torch", "transformers", "open_clip_torch", "numpy", "scipy", "scikit-learn",
                    "pandas", "pillow", "altair", "vl-convert-python", "streamlit")

# Defaults shared by several pages that are the lab's own choice (the paper does not give its settings).
LAB_CHOICES: dict[str, str] = {
    "bootstrap": "95% intervals: shares and accuracies, the Wilson interval (continuity-corrected); means of "
                 "per-image values, Student's t; diversity statistics of a set (mean cosine, Vendi, effective rank, "
                 "variance share), the estimate +- t x the delete-a-group jackknife standard error; entropies and "
                 f"geometry, the normal bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}). Every "
                 "interval is clipped to the statistic's range and says so (core/analysis/stats.py says why these "
                 "methods; "
                 "README: How to read the numbers).",
    "natural sample": "Natural photos: as many as generated images, drawn without replacement with seed 0 "
                      "(Vendi score and effective rank grow with n: equal n keeps them comparable).",
    "models": "Default generator SD-Turbo and CLIP ViT-B/32 (LAION-2B): fast, openly available models; the "
              "paper's own models and settings are not all published.",
}


# -- values to text ----------------------------------------------------------------------------------------------------
def format_cell(value: Any, digits: int = DIGITS) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{float(value):.{digits}f}"
    if isinstance(value, Estimate):
        return value.format(digits)
    return str(value)


def _setting_text(value: Any) -> str:
    if isinstance(value, str):
        return value if value else "(empty)"
    if value is None:
        return "(not set)"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # exact: a setting must be reproducible from the report
    return json.dumps(value, default=str, ensure_ascii=False)


def flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts (and dataclasses) as (dotted name, text) rows, in the mapping's order."""
    rows: list[tuple[str, str]] = []
    for name, value in settings.items():
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        if isinstance(value, Mapping) and value:
            rows.extend(flatten_settings(value, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", _setting_text(value)))
    return rows


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe version of `text`: lower case, ASCII letters and digits joined by hyphens."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return s or "untitled"


# -- the few Markdown forms text blocks use, to HTML -------------------------------------------------------------------
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*", re.S)
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)(.+?)(?<=\S)\*(?![*\w])", re.S)
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BULLET = re.compile(r"^\s*[-*] ")


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")  # backslash + ASCII punctuation: literal (core.present.markup.md_literal)
_HELD = re.compile("\ue000(\\d+)\ue001")


def inline_html(text: str) -> str:
    """Escaped text with **bold**, *italic* and `code` as tags. Links become 'text (address)': a report fetches
    nothing and links only to its page. A backslash-escaped character is literal, as in CommonMark."""
    # Escaped characters (user text) are set aside before any Markdown form is matched, so none can open or close
    # one, and come back as plain escaped text. The private-use markers are dropped from the input first.
    held: list[str] = []

    def hold(m: re.Match) -> str:
        held.append(m[1])
        return f"\ue000{len(held) - 1}\ue001"

    text = _ESCAPED.sub(hold, text.replace("\ue000", "").replace("\ue001", ""))
    return _HELD.sub(lambda m: html.escape(held[int(m[1])]), _inline_forms(text))


def _inline_forms(text: str) -> str:
    parts = _CODE.split(text)  # odd items are code spans: nothing inside them is Markdown
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        s = html.escape(part)
        s = _LINK.sub(lambda m: f"{m[1]} ({m[2]})", s)
        s = _BOLD.sub(r"<strong>\1</strong>", s)
        s = _ITALIC.sub(r"<em>\1</em>", s)
        out.append(s)
    return "".join(out)


def markdown_html(text: str) -> str:
    """Paragraphs (blank-line separated) and '- ' lists; a line ending in two spaces is a line break."""
    blocks = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.splitlines()
        if lines and all(_BULLET.match(line) for line in lines):
            items = "".join(f"<li>{inline_html(_BULLET.sub('', line))}</li>" for line in lines)
            blocks.append(f"<ul>{items}</ul>")
        elif lines:
            body = "".join(inline_html(line.rstrip()) + ("<br>" if line.endswith("  ") else " ")
                           for line in lines[:-1]) + inline_html(lines[-1])
            blocks.append(f"<p>{body}</p>")
    return "\n".join(blocks)


def markdown_safe(text: str) -> str:
    """Markdown with raw HTML neutralised outside code spans (a viewer must show '<script>' as text)."""
    parts = _CODE.split(text)
    return "".join(f"`{part}`" if i % 2 else _RAW_HTML.sub(_neutral, part) for i, part in enumerate(parts))


# An escaped character (core.present.markup.md_literal) is already literal and stays as it is; a bare & or < is
# neutralised.
_RAW_HTML = re.compile(r"\\[!-/:-@\[-`{-~]|[&<]")


def _neutral(m: re.Match) -> str:
    return {"&": "&amp;", "<": "&lt;"}.get(m[0], m[0])


def _md_cell(value: str) -> str:
    return md_literal(value)  # GFM parses a cell's Markdown: a cell is plain text (a prompt, a class name)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _titled(title: str, level: int = 3) -> str:
    return f"<h{level}>{html.escape(title)}</h{level}>\n" if title else ""


def _md_titled(title: str, level: int = 3) -> str:
    return f"{'#' * level} {md_literal(title)}\n\n" if title else ""


def _caption_html(caption: str) -> str:
    return f'<div class="caption">{markdown_html(caption)}</div>' if caption else ""


def _caption_md(caption: str) -> str:
    return f"\n\n*{markdown_safe(caption.strip())}*" if caption else ""


# -- charts to PNG -----------------------------------------------------------------------------------------------------
_VL_LOCK = threading.Lock()  # one conversion at a time: the engine is shared by every session of the server

# Altair's data transformer and theme are process-wide settings, and Streamlit switches them (under its own lock)
# while it draws a chart on another session's thread. The host app can hand its lock over: see use_altair_lock.
_altair_lock: Any = threading.RLock()


def use_altair_lock(lock) -> None:
    """Serialise this module's chart conversions with the host app's own changes to Altair's global settings."""
    global _altair_lock
    if lock is not None:
        _altair_lock = lock


def vega_lite_spec(chart) -> dict:
    """The Vega-Lite spec of an Altair chart (or a spec dict), its data inline, every size fixed for a file."""
    if isinstance(chart, Mapping):
        spec = copy.deepcopy(dict(chart))
    else:
        import altair as alt

        with _altair_lock, alt.data_transformers.disable_max_rows():
            # Inline values, however many rows (a 256-image heatmap has 65,536); not validated again: the page
            # has drawn (validated) the chart already.
            spec = chart.to_dict(validate=False)
    composite = any(k in spec for k in ("facet", "repeat", "concat", "hconcat", "vconcat"))
    if not composite:
        if spec.get("width") in (None, "container"):
            spec["width"] = DEFAULT_CHART_WIDTH
        if spec.get("height") == "container":
            spec["height"] = DEFAULT_CHART_HEIGHT
    return spec


def chart_title(spec: Mapping) -> str:
    title = spec.get("title")
    if isinstance(title, Mapping):
        title = title.get("text")
    if isinstance(title, (list, tuple)):
        title = " ".join(map(str, title))
    return str(title) if title else ""


def render_png(spec: Mapping, scale: float = CHART_SCALE) -> bytes:
    """PNG bytes of a Vega-Lite spec, drawn by vl-convert (Vega in an embedded engine: no browser). External data
    URLs are refused, so rendering never reaches the network."""
    import vl_convert

    with _VL_LOCK:
        return vl_convert.vegalite_to_png(dict(spec), scale=scale, allowed_base_urls=[])


def image_info(data: bytes) -> tuple[str, int, int]:
    """(mime type, width, height) of PNG or JPEG bytes; ValueError for anything else."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            kind, size = im.format, im.size
    except Exception as exc:  # PIL raises several types for bad bytes
        raise ValueError(f"not a readable image ({exc})") from exc
    mime = {"PNG": "image/png", "JPEG": "image/jpeg"}.get(kind or "")
    if mime is None:
        raise ValueError(f"a {kind} image; reports embed PNG or JPEG only")
    return mime, size[0], size[1]


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


# -- blocks ------------------------------------------------------------------------------------------------------------
class _Files:
    """Names the files of the Markdown zip as blocks ask for them, in order."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.figures = 0
        self.image_sets = 0

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return name


@dataclass
class _Heading:
    text: str
    level: int = 2

    def html(self) -> str:
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"

    def markdown(self, files: _Files) -> str:
        return f"{'#' * self.level} {md_literal(self.text)}"


@dataclass
class _Text:
    markdown_text: str

    def html(self) -> str:
        return markdown_html(self.markdown_text)

    def markdown(self, files: _Files) -> str:
        return markdown_safe(self.markdown_text.strip())


@dataclass
class _Chart:
    chart: Any
    title: str = ""
    caption: str = ""
    key: str | None = None
    _rendered: tuple | None = None  # (png, width, height, title, heading), or (None, 0, 0, error, "")

    def render(self) -> tuple[bytes | None, int, int, str, str]:
        if self._rendered is None:
            drawn_title = ""
            try:
                spec = vega_lite_spec(self.chart)
                drawn_title = chart_title(spec)
                png = render_png(spec)
                _, width, height = image_info(png)
                # A heading only where the image does not show the title already.
                heading = self.title if self.title and self.title != drawn_title else ""
                self._rendered = (png, width, height, self.title or drawn_title, heading)
            except Exception as exc:  # a report with one missing figure beats no report: say which and why
                self._rendered = (None, 0, 0, f"{self.title or drawn_title or 'A chart'} could not be drawn: "
                                              f"{type(exc).__name__}: {str(exc)[:300]}", "")
        return self._rendered

    def html(self) -> str:
        png, width, height, title, heading = self.render()
        if png is None:
            return f'<p class="error">{html.escape(title)}</p>'
        shown_w, shown_h = round(width / CHART_SCALE), round(height / CHART_SCALE)
        return (f'<figure class="chart">{_titled(heading, 3)}<img src="{data_uri(png, "image/png")}" '
                f'width="{shown_w}" height="{shown_h}" alt="{html.escape(title or "chart", quote=True)}">'
                f"{_caption_html(self.caption)}</figure>")

    def markdown(self, files: _Files) -> str:
        png, _, _, title, heading = self.render()
        if png is None:
            return f"> {md_literal(title)}"
        files.figures += 1
        name = files.add(f"figures/fig{files.figures:02d}-{slug(title or 'chart')}.png", png)
        return f"{_md_titled(heading)}![{md_literal(title or 'chart')}]({name}){_caption_md(self.caption)}"


@dataclass
class _Table:
    frame: pd.DataFrame
    title: str = ""
    caption: str = ""
    digits: int = DIGITS

    def _rows(self) -> tuple[list[str], list[list[str]], str]:
        header = [str(c) for c in self.frame.columns]
        shown = self.frame.head(MAX_TABLE_ROWS)
        rows = [[format_cell(v, self.digits) for v in row] for row in shown.itertuples(index=False, name=None)]
        more = (f"First {MAX_TABLE_ROWS} of {len(self.frame)} rows." if len(self.frame) > MAX_TABLE_ROWS else "")
        return header, rows, more

    def html(self) -> str:
        header, rows, more = self._rows()
        note = f'<p class="caption">{html.escape(more)}</p>' if more else ""
        return f"<section>{_titled(self.title)}{_html_table(header, rows)}{note}{_caption_html(self.caption)}</section>"

    def markdown(self, files: _Files) -> str:
        header, rows, more = self._rows()
        return _md_titled(self.title) + _md_table(header, rows) + (f"\n\n{more}" if more else "") + \
            _caption_md(self.caption)


@dataclass
class _Numbers:
    rows: list[tuple[str, Estimate]]  # (group, estimate); group "" when there is one
    title: str = ""
    caption: str = ""
    digits: int = DIGITS
    group_label: str = "source"

    def _table(self) -> tuple[list[str], list[list[str]]]:
        grouped = any(g for g, _ in self.rows)
        header = ([self.group_label] if grouped else []) + ["statistic", "estimate [95% interval]", "n"]
        noted = any(e.note for _, e in self.rows)
        header += ["note"] if noted else []
        rows = []
        for group, e in self.rows:
            row = ([group] if grouped else []) + [e.name, e.format(self.digits), str(e.n)]
            rows.append(row + ([e.note] if noted else []))
        return header, rows

    def html(self) -> str:
        header, rows = self._table()
        return (f"<section>{_titled(self.title)}{_html_table(header, rows, 'numbers')}"
                f"{_caption_html(self.caption)}</section>")

    def markdown(self, files: _Files) -> str:
        header, rows = self._table()
        return _md_titled(self.title) + _md_table(header, rows) + _caption_md(self.caption)


@dataclass
class _Images:
    images: list[bytes]
    captions: list[str]
    title: str = ""
    caption: str = ""
    total: int = 0
    width: int = 128

    def _checked(self) -> tuple[list[tuple[bytes, str, str, int, int]], list[str]]:
        ok, problems = [], []
        for data, label in zip(self.images, self.captions):
            try:
                mime, w, h = image_info(data)
                ok.append((data, label, mime, w, h))
            except ValueError as exc:
                problems.append(f"{label}: {exc}")
        return ok, problems

    def _note(self, problems: list[str]) -> str:
        parts = []
        if self.total > len(self.images):
            parts.append(f"The first {len(self.images)} of {self.total} images.")
        if problems:
            parts.append("Left out: " + "; ".join(problems) + ".")
        return " ".join(parts)

    def html(self) -> str:
        ok, problems = self._checked()
        cells = []
        for data, label, mime, w, h in ok:
            shown = min(self.width, w)
            cells.append(f'<figure class="thumb"><img src="{data_uri(data, mime)}" width="{shown}" '
                         f'height="{round(h * shown / w)}" alt="{html.escape(label, quote=True)}">'
                         f"<figcaption>{html.escape(label)}</figcaption></figure>")
        note = self._note(problems)
        return (f'<section>{_titled(self.title)}<div class="grid">{"".join(cells)}</div>'
                + (f'<p class="caption">{html.escape(note)}</p>' if note else "")
                + f"{_caption_html(self.caption)}</section>")

    def markdown(self, files: _Files) -> str:
        ok, problems = self._checked()
        files.image_sets += 1
        lines = []
        for i, (data, label, mime, _, _) in enumerate(ok, 1):
            ext = "png" if mime == "image/png" else "jpg"
            name = files.add(f"images/set{files.image_sets:02d}-{i:02d}-{slug(label, 32)}.{ext}", data)
            lines.append(f"![{md_literal(label)}]({name})")
        note = self._note(problems)
        return (_md_titled(self.title) + " ".join(lines) + (f"\n\n{md_literal(note)}" if note else "")
                + _caption_md(self.caption))


@dataclass
class _Pairs:
    """A two-column table of names and values: settings, provenance."""

    rows: list[tuple[str, str]]
    title: str
    header: tuple[str, str] = ("setting", "value")
    caption: str = ""
    css: str = "settings"

    def html(self) -> str:
        return (f"<section>{_titled(self.title, 2)}{_html_table(self.header, self.rows, self.css)}"
                f"{_caption_html(self.caption)}</section>")

    def markdown(self, files: _Files) -> str:
        return _md_titled(self.title, 2) + _md_table(self.header, self.rows) + _caption_md(self.caption)


@dataclass
class _Notes:
    """Named notes as a list: the defaults that are the lab's own choice."""

    items: list[tuple[str, str]]
    title: str
    caption: str = ""

    def html(self) -> str:
        items = "".join(f"<li><strong>{html.escape(name)}</strong>: {inline_html(text)}</li>" if name else
                        f"<li>{inline_html(text)}</li>" for name, text in self.items)
        return (f'<section>{_titled(self.title, 2)}<ul class="defaults">{items}</ul>'
                f"{_caption_html(self.caption)}</section>")

    def markdown(self, files: _Files) -> str:
        items = "\n".join(f"- **{md_literal(name)}**: {markdown_safe(text)}" if name else f"- {markdown_safe(text)}"
                          for name, text in self.items)
        return _md_titled(self.title, 2) + items + _caption_md(self.caption)


# -- the report --------------------------------------------------------------------------------------------------------
_CSS = """
body{font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
margin:0;background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
.meta{color:#57606a;font-size:13px;margin:0 0 16px}.meta a{color:#0969da;word-break:break-all}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}table.settings td:first-child{font-family:ui-monospace,
SFMono-Regular,Menlo,monospace;white-space:nowrap}table.settings td{word-break:break-word}
table.numbers td:nth-child(n+2){font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:0 3px;border-radius:3px}
figure{margin:12px 0}figure.chart img{max-width:100%;height:auto;display:block}
.grid{display:flex;flex-wrap:wrap;gap:8px}figure.thumb{margin:0;font-size:12px;color:#57606a}
figure.thumb img{display:block;border-radius:2px}
.caption{color:#57606a;font-size:13px}.caption p{margin:4px 0}.error{color:#cf222e}
footer{margin-top:40px;color:#57606a;font-size:12px}
@media print{main{max-width:none;padding:0}h2{break-after:avoid}figure,table{break-inside:avoid}}
""".strip()

# Nothing may load from anywhere but the file itself, and no script runs.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _safe_link(link: str) -> str | None:
    """The link if it is http(s) or relative (never javascript: or data:)."""
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", link)
    return link if link and (scheme is None or scheme[1].lower() in ("http", "https")) else None


class Report:
    """An experiment report of one page. Add blocks in reading order; every method returns the report."""

    def __init__(self, title: str, page: str, link: str = "", created: datetime | None = None) -> None:
        self.title, self.page, self.link, self.created = title, page, link, created
        self.blocks: list = []

    # -- building ------------------------------------------------------------------------------------------------------
    def _add(self, block, key: str | None = None) -> Report:
        """Append, or replace the block added earlier under the same key (a fragment that redraws its chart)."""
        if key is not None:
            for i, (k, _) in enumerate(self.blocks):
                if k == key:
                    self.blocks[i] = (key, block)
                    return self
        self.blocks.append((key, block))
        return self

    def heading(self, text: str, level: int = 2, *, key: str | None = None) -> Report:
        return self._add(_Heading(text, min(max(level, 2), 4)), key)

    def text(self, markdown: str, *, key: str | None = None) -> Report:
        """A paragraph (or several) in the page's Markdown: **bold**, *italic*, `code`, '- ' lists."""
        return self._add(_Text(markdown), key)

    def chart(self, chart, title: str = "", caption: str = "", *, key: str | None = None) -> Report:
        """An Altair chart (or a Vega-Lite dict) as a PNG. Title: the chart's own unless given."""
        return self._add(_Chart(chart, title, caption), key)

    def table(self, frame: pd.DataFrame, title: str = "", caption: str = "", digits: int = DIGITS, *,
              key: str | None = None) -> Report:
        return self._add(_Table(frame.copy(), title, caption, digits), key)

    def numbers(self, estimates: Sequence[Estimate] | Mapping[str, Sequence[Estimate]] | pd.DataFrame,
                title: str = "", caption: str = "", digits: int = DIGITS, *, group_label: str = "source",
                value: str = "value", labels: Sequence[str] | None = None, key: str | None = None) -> Report:
        """Numbers as `value [low, high]` with n: Estimates (a list, or a dict group -> list), or a DataFrame with
        columns `value`, '95% low', '95% high' and 'n' (the statistic named by `labels` joined, else by every
        other column)."""
        if isinstance(estimates, pd.DataFrame):
            rows = _estimates_of_frame(estimates, value, labels)
        elif isinstance(estimates, Mapping):
            rows = [(str(group), e) for group, ests in estimates.items() for e in ests if e is not None]
        else:
            rows = [("", e) for e in estimates if e is not None]
        return self._add(_Numbers(rows, title, caption, digits, group_label), key)

    def images(self, images: Sequence[bytes], captions: Sequence[str], title: str = "", caption: str = "", *,
               limit: int = MAX_IMAGES_PER_SET, width: int = 128, key: str | None = None) -> Report:
        """Thumbnails (JPEG or PNG bytes) with captions; the first `limit`, and how many there were."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions: give one caption per image.")
        return self._add(_Images(list(images[:limit]), [str(c) for c in captions[:limit]], title, caption,
                                 len(images), width), key)

    def settings(self, settings: Mapping[str, Any], title: str = "Settings", caption: str = "", *,
                 key: str | None = None) -> Report:
        """Every setting of the page (nested dicts flattened to dotted names)."""
        return self._add(_Pairs(flatten_settings(settings), title, caption=caption), key)

    def provenance(self, generation: Any = (), clip: Any = None, clip_key: str = "",
                   extra: Mapping[str, Any] | None = None, title: str = "Models and libraries", *,
                   key: str | None = None) -> Report:
        """Model ids and revisions, the libraries that made the images (GenerationSettings.versions: a cached run
        keeps the versions it was made with) and those that made this report."""
        return self._add(_Pairs(provenance_rows(generation, clip, clip_key, extra), title, ("item", "value"),
                                css="settings"), key)

    def lab_defaults(self, notes: Mapping[str, str] | Iterable[str],
                     title: str = "Defaults that are the lab's own choice", *, key: str | None = None) -> Report:
        """The defaults this page used that the lab chose (the paper's settings are unknown)."""
        items = list(notes.items()) if isinstance(notes, Mapping) else [("", str(n)) for n in notes]
        return self._add(_Notes(items, title, "Where the paper (Marwood, Baluja & Alon, arXiv 2311.00056) does "
                                              "not state its settings, the lab chose these; change them on the page "
                                              "and the link above records the change."), key)

    # -- output --------------------------------------------------------------------------------------------------------
    def _created(self) -> str:
        when = self.created or datetime.now(timezone.utc)
        return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def to_html(self) -> str:
        """One self-contained HTML file (see the module docstring)."""
        link = _safe_link(self.link)
        meta = [f"Page: <strong>{html.escape(self.page)}</strong>", f"Created: {html.escape(self._created())}"]
        if link:
            meta.append(f'Link (reopens the page with these settings): <a href="{html.escape(link, quote=True)}">'
                        f"{html.escape(link)}</a>")
        body = "\n".join(block.html() for _, block in self.blocks)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{html.escape(self.title)}</h1>\n<p class=\"meta\">{' · '.join(meta)}</p>\n{body}\n"
            f"<footer>Made with {LAB_NAME}. Numbers: estimate [95% interval]; n = the number of images each is "
            f"computed from.</footer>\n</main>\n</body>\n</html>\n")

    def _markdown(self) -> tuple[str, dict[str, bytes]]:
        files = _Files()
        link = _safe_link(self.link)
        head = [f"# {md_literal(self.title)}", "",
                f"Page: **{md_literal(self.page)}** · Created: {self._created()}"
                + (f" · [Link (reopens the page with these settings)](<{link}>)" if link else "")]
        parts = ["\n".join(head)] + [block.markdown(files) for _, block in self.blocks]
        parts.append(f"---\nMade with {LAB_NAME}. Numbers: estimate [95% interval]; n = the number of images each is "
                     f"computed from.")
        return "\n\n".join(parts) + "\n", files.files

    def to_markdown(self) -> str:
        return self._markdown()[0]

    def to_markdown_zip(self) -> bytes:
        """report.md with its figures and images beside it (see the module docstring)."""
        text, files = self._markdown()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            entries = [("report.md", text.encode("utf-8"), zipfile.ZIP_DEFLATED)]
            entries += [(name, data, zipfile.ZIP_STORED) for name, data in files.items()]  # PNG/JPEG: compressed
            for name, data, method in entries:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = method
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        return buf.getvalue()


def _estimates_of_frame(frame: pd.DataFrame, value: str, labels: Sequence[str] | None) -> list[tuple[str, Estimate]]:
    needed = [value, "95% low", "95% high", "n"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"A numbers table needs the columns {needed}; {missing} are missing (columns: "
                         f"{list(frame.columns)}).")
    labels = list(labels) if labels is not None else [c for c in frame.columns if c not in needed]
    out = []
    for row in frame.to_dict("records"):
        name = " · ".join(format_cell(row[c]) for c in labels)
        # A table that says its interval was clipped ("interval clipped to [a, b]" in a note) keeps saying so.
        clipped = re.search(r"interval clipped to (\[[^\]]*\])", str(row.get("note", "")))
        out.append(("", Estimate(name, float(row[value]), float(row["95% low"]), float(row["95% high"]),
                                 int(row["n"]), clipped=clipped[1] if clipped else "")))
    return out


# -- provenance and the lab's defaults ---------------------------------------------------------------------------------
def provenance_rows(generation: Any = (), clip: Any = None, clip_key: str = "",
                    extra: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Rows naming the models (id, revision, pipeline, scheduler, dtype, device, the libraries that generated), the
    CLIP model (architecture, weights, embedding key) and the libraries of this report. `generation`: one or more
    GenerationSettings (or their dicts); runs with the same model are listed once."""
    runs = [generation] if (generation is not None and not isinstance(generation, (list, tuple))) else \
        list(generation or [])
    rows: list[tuple[str, str]] = []
    models: list[dict[str, str]] = []
    for g in runs:
        d = g.to_dict() if hasattr(g, "to_dict") else dict(g)
        model = {"model": d.get("model_id", ""), "revision": d.get("revision", ""),
                 "pipeline": d.get("pipeline_class", ""),
                 "scheduler": (d.get("scheduler") or {}).get("_class_name", ""),
                 "dtype / device": f"{d.get('dtype', '')} on {d.get('device_type', '')}",
                 "generated with": ", ".join(f"{k} {v}" for k, v in sorted((d.get("versions") or {}).items()))}
        if model not in models:  # runs differing only in steps, guidance or prompt share their model
            models.append(model)
    for number, model in enumerate(models, 1):
        prefix = f"generator {number}: " if len(models) > 1 else "generator "
        rows += [(prefix + name, value) for name, value in model.items() if value]
    if clip is not None:
        c = asdict(clip) if is_dataclass(clip) else dict(clip)
        weights = c.get("pretrained")
        rows += [("CLIP model", str(c.get("label") or c.get("key", ""))),
                 ("CLIP architecture", str(c.get("arch", ""))),
                 ("CLIP weights", str(weights) if weights else "random weights (offline test model)")]
        if clip_key:
            rows.append(("CLIP embedding key", clip_key))
    for name, value in (extra or {}).items():
        rows.append((name, _setting_text(value)))
    versions = library_versions(REPORT_LIBRARIES)
    rows.append(("libraries (this report)", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


def generation_defaults(req, preset) -> dict[str, str]:
    """For each generation setting of a run (core.pipeline.generate.RunRequest, after with_preset_defaults): its value
    and whether it is the lab's default (its own choice: the paper's settings are unknown) or was set for this run."""
    from core.pipeline.generate import RunRequest
    from core.pipeline.registry import DEFAULT_CLIP, DEFAULT_GENERATOR

    defaults = {f.name: f.default for f in fields(RunRequest)}
    checks = [
        ("generator", req.generator, DEFAULT_GENERATOR),
        ("CLIP model", req.clip, DEFAULT_CLIP),
        ("images (N)", req.n, defaults["n"]),
        ("steps", req.steps, preset.default_steps),
        ("guidance", req.guidance, preset.default_guidance if preset.supports_guidance else 0.0),
        ("size (px)", req.size, preset.default_size),
        ("first seed", req.first_seed, defaults["first_seed"]),
    ]
    out = {}
    for name, used, default in checks:
        shown = f"{used:g}" if isinstance(used, float) else str(used)
        if used == default:
            per_model = f" for {preset.key}" if name in ("steps", "guidance", "size (px)") else ""
            out[name] = f"{shown}: the lab's default{per_model}"
        else:
            default_shown = f"{default:g}" if isinstance(default, float) else str(default)
            out[name] = f"{shown}: set for this run (the default is {default_shown})"
    if not preset.supports_guidance:
        out["guidance"] += f" ({preset.label} ignores guidance)"
    return out


def report_file_stem(page: str, *parts: Any) -> str:
    """A file name (without extension) for a page's report: `<page>-report-<parts>`."""
    return "-".join([slug(page), "report", *[slug(str(p), 24) for p in parts if str(p)]])
