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


AXIS_FORMAT = "~g"  # tick labels: 0.2, 1.5, 120; never "0.000000"
STATISTIC_PANEL_PX = 480  # a panel's plot width where nothing stretches it (the report's PNG); on a page, Streamlit
# sets each panel of a vconcat of single views to the main column's width (1024 px browser: ~560 px, 1400: ~940)
STATISTIC_PANEL_HEIGHT = 44  # px per panel: two sources, 22 px each


def readable_domain(values, bounds: tuple[float, float] | None = None) -> list[float] | None:
    """An x domain for one interval panel, or None to let Vega choose (zero excluded). `bounds`: the statistic's
    fixed range (e.g. (0, 1) for a share), used as is. Otherwise only a collapsed domain is replaced: when every
    estimate and interval end is the same number (recall 0 [0, 0] at small n), Vega drew one tick, "0.000000";
    such a panel gets [0, 1] when the number lies there (a share, a cosine's upper part), else the number +- 10%
    (at least +- 0.5)."""
    if bounds is not None and all(np.isfinite(bounds)):
        return [float(bounds[0]), float(bounds[1])]
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    if hi - lo > 1e-9 * max(1.0, abs(lo), abs(hi)):
        return None
    if 0.0 <= lo and hi <= 1.0:
        return [0.0, 1.0]
    pad = max(abs(lo) * 0.1, 0.5)
    return [lo - pad, hi + pad]


def statistics_chart(rows: list[tuple[str, Estimate]], panel_height: int = STATISTIC_PANEL_HEIGHT) -> alt.VConcatChart:
    """Point estimate with its 95% interval, one panel per statistic (one under the other), one colour per source.

    Each panel is a single view, not a layer, so that Streamlit stretches it to the width of the page's column
    (it stretches only a vconcat of single views; a fixed 2 x 260 px facet filled ~60% of a 1400 px browser's
    column and had to stay that narrow for a 1024 px projector): the interval is a line through the interval's
    ends and the estimate (folded into one x), drawn as a point there alone."""
    df = pd.DataFrame([{"source": src, "statistic": e.name, "value": e.value, "low": e.low, "high": e.high,
                        "n": e.n} for src, e in rows if np.isfinite(e.value)])
    names = list(dict.fromkeys(df["statistic"])) if len(df) else []
    tooltip = ["source:N", "statistic:N", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
               alt.Tooltip("high:Q", format=".3f"), "n:Q"]
    panels = []
    for name in names:
        part = df[df["statistic"] == name]
        domain = readable_domain(part[["low", "value", "high"]].to_numpy())
        scale = alt.Scale(zero=False, domain=domain) if domain else alt.Scale(zero=False)
        panels.append(
            alt.Chart(title=name)
            .transform_filter(alt.FieldEqualPredicate(field="statistic", equal=name))
            .transform_fold(["low", "value", "high"], as_=["end", "x"])
            .transform_calculate(order="datum.end == 'low' ? 0 : datum.end == 'value' ? 1 : 2")
            .mark_line(strokeWidth=3, point=alt.OverlayMarkDef(filled=True, size=90))
            .encode(x=alt.X("x:Q", title=None, scale=scale, axis=alt.Axis(format=AXIS_FORMAT)),
                    y=alt.Y("source:N", title=None),
                    color=alt.Color("source:N", scale=SOURCE_COLOURS, legend=None),
                    detail="source:N", order="order:Q",
                    # The point at the estimate alone: the ends' points are there, unfilled (a line has no fill).
                    fillOpacity=alt.condition("datum.end == 'value'", alt.value(1), alt.value(0)),
                    tooltip=tooltip)
            .properties(width=STATISTIC_PANEL_PX, height=panel_height))
    return alt.vconcat(*panels, data=df).resolve_scale(x="independent")


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
