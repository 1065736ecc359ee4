"""Shared by the AppTest modules: open one page of Home.py's navigation from a link, as a browser would."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")


def open_page(page: str, params: dict[str, str] | None = None, timeout: float = 180) -> AppTest:
    """Run `page` (e.g. "pages/diversity.py") with `params` as its URL's query parameters."""
    at = AppTest.from_file(HOME, default_timeout=timeout)
    at.switch_page(page)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def table_elements(at: AppTest) -> list:
    """The page's tables in the order it shows them, st.dataframe grids and st.table (which wraps its cells, for
    tables that must fit a projector's width without scrolling sideways) alike; each has `.value`."""
    return [e for e in at.main if getattr(e, "type", "") in ("dataframe", "table")]
