"""Pure functions: data in, Altair chart out. No I/O, no streamlit."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.analysis.stats import Estimate

SOURCE_COLOURS = alt.Scale(domain=["synthetic", "natural"], range=["#d62728", "#1f77b4"])
PAIR_SELECTION = "pair"


HEATMAP_PX = 300  # fixed size: cells shrink as n grows, so 256 images still fit beside the map (and in half of a
# 1024 px projector's main column, title included)


def similarity_heatmap(sim: np.ndarray, seeds: list[int]) -> alt.Chart:
    """Cosine similarity of every pair, one cell per pair of seeds. Click a cell to select the pair."""
    n = len(seeds)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    df = pd.DataFrame({
        "seed_a": np.asarray(seeds)[ii.ravel()], "seed_b": np.asarray(seeds)[jj.ravel()],
        "cosine": sim.ravel().round(4),
    })
    pick = alt.selection_point(name=PAIR_SELECTION, fields=["seed_a", "seed_b"], on="click", clear="dblclick")
    order = [str(s) for s in seeds]
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X("seed_a:O", title="seed", sort=order),
            y=alt.Y("seed_b:O", title="seed", sort=order),
            color=alt.Color("cosine:Q", title="cosine", scale=alt.Scale(scheme="viridis")),
            stroke=alt.condition(pick, alt.value("white"), alt.value(None)),
            tooltip=[alt.Tooltip("seed_a:O", title="seed A"), alt.Tooltip("seed_b:O", title="seed B"),
                     alt.Tooltip("cosine:Q", format=".3f")],
        )
        .add_params(pick)
        .properties(title="Cosine similarity between images", width=HEATMAP_PX, height=HEATMAP_PX)
    )


def embedding_map(points: pd.DataFrame, method: str) -> alt.Chart:
    """Scatter of 2-D coordinates. `points` columns: x, y, source, label, image (data URI), highlighted (bool).
    Hovering a point shows its image (Vega's tooltip renders a field named `image` as a picture)."""
    base = alt.Chart(points).encode(
        x=alt.X("x:Q", title=f"{method} 1", axis=alt.Axis(labels=False)),
        y=alt.Y("y:Q", title=f"{method} 2", axis=alt.Axis(labels=False)),
        # Only the sources on the map: with no reference chosen, a legend entry "natural" referred to nothing.
        color=alt.Color("source:N", title="source", scale=alt.Scale(
            domain=[s for s in SOURCE_COLOURS.domain if s in set(points["source"])],
            range=[c for s, c in zip(SOURCE_COLOURS.domain, SOURCE_COLOURS.range) if s in set(points["source"])])),
        tooltip=["label:N", "source:N", "image"],
    )
    dots = base.mark_circle(opacity=0.8).encode(
        size=alt.condition("datum.highlighted", alt.value(400), alt.value(70)),
        stroke=alt.condition("datum.highlighted", alt.value("black"), alt.value(None)),
    )
    return dots.properties(title=f"CLIP image embeddings ({method})", height=420).interactive()


def statistics_chart(rows: list[tuple[str, Estimate]]) -> alt.Chart:
    """Point estimate with its 95% interval, one panel per statistic, one colour per source."""
    df = pd.DataFrame([{"source": src, "statistic": e.name, "value": e.value, "low": e.low, "high": e.high,
                        "n": e.n} for src, e in rows if np.isfinite(e.value)])
    base = alt.Chart(df).encode(y=alt.Y("source:N", title=None), color=alt.Color("source:N", scale=SOURCE_COLOURS,
                                                                                 legend=None))
    bars = base.mark_rule(strokeWidth=3).encode(x=alt.X("low:Q", title=None, scale=alt.Scale(zero=False)),
                                                x2="high:Q")
    dots = base.mark_point(filled=True, size=90).encode(
        x="value:Q", tooltip=["source:N", "statistic:N", alt.Tooltip("value:Q", format=".3f"),
                              alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"), "n:Q"])
    return (bars + dots).properties(width=260, height=60).facet(
        facet=alt.Facet("statistic:N", title=None), columns=2
    ).resolve_scale(x="independent")


def statistic_curve_chart(rows: pd.DataFrame, name: str) -> alt.Chart:
    """A statistic against n per source (mean over random subsets, band = +-1 SD across subsets): `rows` from
    core.analysis.diversity.curve_rows. Where two sets differ in size, compare the curves at the same n."""
    df = rows.assign(low=rows["value"] - rows["sd"], high=rows["value"] + rows["sd"])
    base = alt.Chart(df).encode(x=alt.X("n:Q", title="images (random subsets of each size)"),
                                color=alt.Color("source:N", scale=SOURCE_COLOURS))
    band = base.mark_area(opacity=0.2).encode(y="low:Q", y2="high:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("value:Q", title=name), tooltip=["source:N", "n:Q", alt.Tooltip("value:Q", format=".2f")])
    return (band + line).properties(title=f"{name} against n", height=240)
