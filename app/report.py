"""Streamlit glue for experiment reports (core/present/report.py): the page's shareable link and the download buttons.

A page writes each result once, through an `Output`: the call draws it on the page and records it in the report
(recording costs nothing: charts are drawn to PNG only when a download is asked for). Report-only blocks (settings,
provenance, the lab's defaults, notes) take the same variables the page used; the report is offered at the end:

    out = ui_report.start("Lack of diversity: a photo of a tench", page="Diversity", url_path="diversity")
    out.caption(run_line)
    out.heading("Diversity statistics")
    out.chart(stats_chart, "Diversity statistics")
    out.numbers(stats, caption=note, table=statistics_table(stats))
    out.settings({...})
    out.offer(file_stem="diversity-report-...")
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlencode

import streamlit as st

from app import ui
from core.present import report as core_report
from core.present.markup import md_literal, md_plain
from core.present.report import Report

try:  # Streamlit switches Altair's global settings under this lock while it draws: the report's conversions wait
    from streamlit.elements.vega_charts import _altair_globals_lock  # pinned Streamlit 1.67; private, hence guarded

    core_report.use_altair_lock(_altair_globals_lock)
except ImportError:
    pass

HTML_LABEL = "Download report (HTML)"
ZIP_LABEL = "Download report (Markdown + PNG)"


def page_link(url_path: str) -> str:
    """The address that reopens this page with its current settings: the browser's address of the page
    (st.context.url: scheme, host, any proxy prefix and the page path) plus the page's query parameters. Without a
    browser (AppTest, bare mode) the link is relative: '<url_path>?<query>'."""
    query = urlencode(st.query_params.to_dict())
    base = st.context.url or url_path
    return f"{base}?{query}" if query else base


def start(title: str, page: str, url_path: str) -> Output:
    """The output of this page: what it draws and the report that records it (the report's link is set again by
    `offer`, once the page has set all its parameters)."""
    return Output(Report(title, page, page_link(url_path)), url_path)


class Output:
    """A page's results, each written once: every method draws on the page (in the current Streamlit container, so
    `with column:` and `with st.expander(...):` work) and records the same value in `report`. A `key` names the report
    block (and the chart's element): a fragment that reruns alone replaces its blocks in place.

    Methods without a page part (`settings`, `setting`, `provenance`, `lab_defaults`, `note`) are for what the
    report writes down and the page shows elsewhere (widgets, the URL, the run line)."""

    def __init__(self, report: Report, url_path: str = "") -> None:
        self.report, self.url_path = report, url_path
        self._settings: tuple[dict, str, str, str | None] | None = None  # (values, title, caption, key), for `setting`
        self._chosen: dict[str, Any] = {}

    # -- drawn and recorded ----------------------------------------------------------------------------------------
    def heading(self, text: str, level: int = 2, *, page_level: int | None = None, on_page: bool = True,
                key: str | None = None) -> Output:
        """A section heading, plain text: st.header at level 1 (a level-2 heading in the report), st.subheader at
        level 2, a line of plain text (st.text) below it; `page_level` draws it at another level than the report's.
        `on_page=False`: the report's only (e.g. the page's heading stands above the section's widgets and names
        them; the report's names the result)."""
        if on_page:
            shown = level if page_level is None else page_level
            if shown <= 2:
                (st.header if shown <= 1 else st.subheader)(md_literal(text))
            else:
                st.text(text)  # may name a class: plain text
        self.report.heading(text, level, key=key)
        return self

    def text(self, markdown: str, *, key: str | None = None) -> Output:
        """A paragraph in the page's Markdown (user text already escaped by the caller: md_literal)."""
        st.markdown(markdown)
        self.report.text(markdown, key=key)
        return self

    def caption(self, markdown: str, *, key: str | None = None) -> Output:
        """A note in small print on the page; a paragraph in the report."""
        st.caption(markdown)
        self.report.text(markdown, key=key)
        return self

    def chart(self, chart, title: str = "", caption: str = "", *, key: str | None = None, on_select: str = "ignore",
              lighter=None, **chart_options):
        """An Altair chart with an optional caption under it. Returns Streamlit's selection event (on_select).
        `lighter`: the same chart without what serves only the browser (hover thumbnails, padding), for the
        report; `chart_options` go to st.altair_chart."""
        event = st.altair_chart(chart, key=key, on_select=on_select, **chart_options)
        if caption:
            st.caption(caption)
        self.report.chart(chart if lighter is None else lighter, title, caption, key=key)
        return event

    def images(self, images: Sequence[bytes], captions: Sequence[str], title: str = "", caption: str = "", *,
               per_row: int = 8, heading: bool = False, title_md: str = "", key: str | None = None) -> Output:
        """A grid of thumbnails (app.ui.grid) under its title, plain text (a subheader when `heading`, else st.text);
        or `title_md`, a line in the page's Markdown (the report's title: its plain text)."""
        if title_md:
            st.markdown(title_md)
            title = md_plain(title_md)
        elif title:
            if heading:
                st.subheader(md_literal(title))
            else:
                st.text(title)  # may name a class or a prompt: plain text
        ui.grid(list(images), list(captions), per_row=per_row)
        if caption:
            st.caption(caption)
        self.report.images(images, captions, title, caption, key=key)
        return self

    def numbers(self, estimates, title: str = "", caption: str = "", *, table=None, dataframe: bool = False,
                where=None, key: str | None = None, **numbers_options) -> Output:
        """Estimates with intervals: the page's table of them under its title (`table`: st.table, or st.dataframe
        when `dataframe`; inside `where` when given, e.g. an expander under the caption, whose label stands for the
        title; none when None) and its caption; the report's numbers block from the same estimates (Report.numbers'
        options pass through)."""
        if caption and where is not None:  # the caption, then the table in its expander
            st.caption(caption)
        if table is not None:
            with where if where is not None else nullcontext():
                if title and where is None:  # an expander's label names its table
                    st.text(title)
                if dataframe:
                    st.dataframe(table, hide_index=True)
                else:
                    st.table(table)
        if caption and where is None:
            st.caption(caption)
        self.report.numbers(estimates, title, caption, key=key, **numbers_options)
        return self

    def table(self, frame, title: str = "", caption: str = "", *, where=None, on_page: bool = True,
              key: str | None = None, **table_options) -> Output:
        """A table of plain values (not estimates): st.dataframe under its title (inside `where` when given).
        `on_page=False`: the report's only (the page drew it elsewhere, e.g. in an expander while loading)."""
        if on_page:
            with where if where is not None else nullcontext():
                if title and where is None:  # an expander's label names its table
                    st.text(title)
                st.dataframe(frame, hide_index=True)
            if caption:
                st.caption(caption)
        self.report.table(frame, title, caption, key=key, **table_options)
        return self

    # -- recorded only ---------------------------------------------------------------------------------------------
    def note(self, markdown: str, *, key: str | None = None) -> Output:
        """A paragraph only the report writes (the page shows the same value elsewhere, e.g. beside its widget)."""
        self.report.text(markdown, key=key)
        return self

    def settings(self, settings: Mapping[str, Any], title: str = "Settings", caption: str = "", *,
                 key: str | None = "settings") -> Output:
        """Every setting of the page, with those chosen through `setting` (they follow it, in their order)."""
        self._settings = (dict(settings), title, caption, key)
        return self._record_settings()

    def setting(self, name: str, value: Any) -> Output:
        """One setting chosen where it is drawn (a fragment's widget): the settings block holds it whether it is
        recorded later in the run or was recorded already (a fragment rerunning alone updates it in place), and the
        report's link follows the URL the widget has just written."""
        self._chosen[name] = value
        self.follow_url()
        return self._record_settings() if self._settings is not None else self

    def follow_url(self) -> Output:
        """The report's link, again from the URL: a fragment that has just written a query parameter calls it (the
        full run sets the link in `offer`)."""
        if self.url_path:
            self.report.link = page_link(self.url_path)
        return self

    def _record_settings(self) -> Output:
        values, title, caption, key = self._settings
        self.report.settings({**values, **self._chosen}, title, caption, key=key)
        return self

    def provenance(self, *args, **kwargs) -> Output:
        self.report.provenance(*args, **kwargs)
        return self

    def lab_defaults(self, *args, **kwargs) -> Output:
        self.report.lab_defaults(*args, **kwargs)
        return self

    def offer(self, file_stem: str, *, key: str = "report") -> None:
        """The two report downloads (see `offer`), the link taken from the URL as the page has left it."""
        offer(self.report, file_stem, self.url_path, key=key)


def offer(report: Report | Callable[[], Report], file_stem: str, url_path: str = "", *, key: str = "report") -> None:
    """The two report downloads, side by side. The report is built only when a button is clicked (Streamlit runs
    the callable on a server thread: no st.* inside), and the click does not rerun the page (on_click="ignore"),
    so the page stays as it is and the download is not dropped by a rerun.

    `url_path` given: the report's link is taken now, from the URL as the page has left it (the download cannot
    read the URL later). A fragment that changes a query parameter afterwards calls `Output.setting`, which sets the
    link again.
    """
    if isinstance(report, Report) and url_path:
        report.link = page_link(url_path)
    build: Callable[[], Report] = report if callable(report) else (lambda: report)  # type: ignore[assignment]
    left, right = st.columns(2)
    left.download_button(HTML_LABEL, data=lambda: build().to_html().encode("utf-8"), file_name=f"{file_stem}.html",
                         mime="text/html", on_click="ignore", key=f"{key}_html",
                         help="One self-contained file: charts as images, numbers with n and 95% intervals, every "
                              "setting, model revisions and library versions.")
    right.download_button(ZIP_LABEL, data=lambda: build().to_markdown_zip(), file_name=f"{file_stem}.zip",
                          mime="application/zip", on_click="ignore", key=f"{key}_md",
                          help="report.md with each chart as a PNG (for slides and papers) and the images.")
