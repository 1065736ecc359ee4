"""Shared by the AppTest modules: open one page of Home.py's navigation from a link, as a browser would; read its
tables and its charts (Vega-Lite specs, and the data rows Streamlit ships beside them as Arrow)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
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


def vega_charts(at: AppTest) -> list[tuple[dict, object]]:
    """(Vega-Lite spec, element proto) of every chart on the page, in the order it shows them."""
    return [(json.loads(e.proto.spec), e.proto) for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]


def chart_title(spec: dict) -> str | None:
    title = spec.get("title")
    return title.get("text") if isinstance(title, dict) else title


def charts(at: AppTest) -> dict[str, dict]:
    """Vega-Lite specs by title, each with its element's proto under "_proto" (for chart_frames)."""
    return {chart_title(spec): spec | {"_proto": proto} for spec, proto in vega_charts(at)}


def chart_frames(proto) -> list[pd.DataFrame]:
    """Every dataset of a chart, as a DataFrame."""
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_pandas() for d in proto.datasets]


def chart_rows(at: AppTest, title: str) -> list[dict]:
    """The data rows of the chart titled `title` (its first dataset)."""
    specs = charts(at)
    if title not in specs:
        raise AssertionError(f"No chart titled {title!r}; charts: {list(specs)}")
    return chart_frames(specs[title]["_proto"])[0].to_dict("records")
