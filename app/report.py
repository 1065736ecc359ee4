"""Streamlit glue for experiment reports (core/present/report.py): the page's shareable link and the download buttons.

A page describes its report as it goes, from values it has already computed (adding a block costs nothing: charts
are drawn to PNG only when a download is asked for), then offers it:

    report = ui_report.start("Lack of diversity: a photo of a tench", page="Diversity", url_path="diversity")
    report.text(...).chart(...).numbers(...)
    ui_report.offer(report, file_stem="diversity-report-...", url_path="diversity")
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlencode

import streamlit as st

from core.present import report as core_report
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


def start(title: str, page: str, url_path: str) -> Report:
    """A new report for this page (its link is set again by `offer`, once the page has set all its parameters)."""
    return Report(title, page, page_link(url_path))


def offer(report: Report | Callable[[], Report], file_stem: str, url_path: str = "", *, key: str = "report") -> None:
    """The two report downloads, side by side. The report is built only when a button is clicked (Streamlit runs
    the callable on a server thread: no st.* inside), and the click does not rerun the page (on_click="ignore"),
    so the page stays as it is and the download is not dropped by a rerun.

    `url_path` given: the report's link is taken now, from the URL as the page has left it (the download cannot
    read the URL later). A fragment that changes a query parameter afterwards sets `report.link = page_link(...)`.
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
