"""Every chart of the lab: pure functions, data in, Altair chart out. No I/O, no streamlit.

Sections follow the pages: colours and axes shared by all; Diversity; the class-list pages (Synthetic vs natural,
CLIP geometry, Train on synthetic); Adherence; Ambiguity; Stable Bias; the lessons' projector styling."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.analysis.adherence import SCORE_LABEL, SWEEP_METRICS, SWEEP_SETTINGS, sweep_title
from core.analysis.bias import ClusterTable, short_prompt
from core.analysis.stats import Estimate

# -- colours and axes shared by every chart ----------------------------------------------------------------------------
SOURCE_DOMAIN = ["synthetic", "natural", "prompt text"]
SOURCE_RANGE = ["#d62728", "#1f77b4", "#2ca02c"]


def source_scale(with_text: bool = True) -> alt.Scale:
    """Fixed colours per source on every page; without the prompts where a chart has only images."""
    n = 3 if with_text else 2
    return alt.Scale(domain=SOURCE_DOMAIN[:n], range=SOURCE_RANGE[:n])


SOURCE_COLOURS = source_scale(with_text=False)


def full_legend(**kwargs) -> alt.Legend:
    """A legend whose labels are never cut short ("linear probe (logistic regr..."): Vega's default limit is 160 px."""
    return alt.Legend(labelLimit=0, **kwargs)


def category_axis() -> alt.Axis:
    """Every category labelled (Vega drops every other label when it guesses they overlap)."""
    return alt.Axis(labelOverlap=False, labelLimit=180)


# -- Diversity ---------------------------------------------------------------------------------------------------------
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


# -- the class-list pages ------------------------------------------------------------------------------------------

def shared_map(points: pd.DataFrame, method: str) -> alt.LayerChart:
    """Images and prompt texts in one 2-D projection: colour = source, shape = class. Image points show their
    thumbnail on hover (a field named `image`); prompt points show the prompt."""
    colour = alt.Color("source:N", scale=source_scale(), title="source")
    shape = alt.Shape("class:N", title="class")
    x = alt.X("x:Q", title=f"{method} 1", axis=alt.Axis(labels=False))
    y = alt.Y("y:Q", title=f"{method} 2", axis=alt.Axis(labels=False))
    images = alt.Chart(points[points["source"] != "prompt text"]).mark_point(filled=True, opacity=0.75, size=60) \
        .encode(x=x, y=y, color=colour, shape=shape, tooltip=["label:N", "class:N", "source:N", "image"])
    texts = alt.Chart(points[points["source"] == "prompt text"]).mark_point(
        filled=True, size=260, stroke="black", strokeWidth=1).encode(
        x=x, y=y, color=colour, shape=shape, tooltip=["label:N", "class:N", "source:N"])
    return alt.layer(images, texts).properties(
        title=f"Synthetic images, natural photos and prompts in CLIP space ({method})", height=480).interactive()


def interval_chart(df: pd.DataFrame, y: str, colour: str | None = None, title: str = "",
                   facet: str | None = None, width: int = 260, reference: float | None = None,
                   domains: dict[str, tuple[float, float]] | None = None) -> alt.TopLevelMixin:
    """Point estimate and 95% interval per row. Columns: value, low, high, n, `y` (and `colour`, `facet`).
    `reference`: a dashed vertical line (e.g. chance). `facet`: one panel per value of that column, two a row, each
    with its own x axis; `domains` fixes a panel's x range by its facet value (e.g. (0, 1) for a share). A panel
    whose values are all one number (recall 0 [0, 0]) gets a readable range instead of Vega's collapsed one, whose
    single tick read "0.000000" (core.present.charts.readable_domain)."""
    def panel(part: pd.DataFrame, bounds: tuple[float, float] | None = None, labelled: bool = True) -> alt.LayerChart:
        ends = part[["low", "value", "high"]].to_numpy().ravel().tolist() + ([reference] if reference is not None
                                                                              else [])
        domain = readable_domain(ends, bounds)
        scale = alt.Scale(zero=False, domain=domain) if domain else alt.Scale(zero=False)
        base = alt.Chart(part).encode(y=alt.Y(f"{y}:N", title=None, axis=category_axis() if labelled else None,
                                              sort=None))
        bars = base.mark_rule(strokeWidth=3).encode(
            x=alt.X("low:Q", title=None, scale=scale, axis=alt.Axis(format=AXIS_FORMAT)), x2="high:Q", **enc)
        dots = base.mark_point(filled=True, size=80).encode(x="value:Q", tooltip=tooltip, **enc)
        layers = [bars, dots]
        if reference is not None:
            layers.append(alt.Chart(pd.DataFrame({"x": [reference]})).mark_rule(strokeDash=[4, 4], color="gray")
                          .encode(x="x:Q"))
        # Steps of 26 px per coloured row, 52 per plain row: every chart at least ~150 px tall with three rows.
        return alt.layer(*layers).properties(width=width, height=alt.Step(26 if colour and colour != y else 52))

    enc = {}
    if colour:
        sources = colour == "source"
        enc["color"] = alt.Color(f"{colour}:N", scale=source_scale(False) if sources else alt.Undefined,
                                 legend=None if colour == y else full_legend(orient="bottom"))
        if colour != y:
            enc["yOffset"] = alt.YOffset(f"{colour}:N")
    tooltip = [f"{y}:N"] + ([f"{colour}:N"] if colour and colour != y else []) + [
        alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
        alt.Tooltip("high:Q", format=".3f"), "n:Q"]
    if facet:
        # One panel per value, each with its own data and x range (a facet shares one scale definition, so a
        # collapsed panel could not be given its own range). Two panels a row: three spilled past the main column
        # of a 1024 px projector. The rows are the same in every panel (one shared y scale): named in the left
        # panel of each row only, as a facet named them.
        panels = [panel(df[df[facet] == value], (domains or {}).get(value), labelled=i % 2 == 0)
                  .properties(title=str(value)) for i, value in enumerate(dict.fromkeys(df[facet]))]
        return alt.concat(*panels, columns=2, title=title).resolve_scale(x="independent", y="shared")
    return panel(df).properties(title=title)


def histogram_by_source(df: pd.DataFrame, field: str, title: str, x_title: str, bins: int = 30) -> alt.Chart:
    """Overlaid histograms, each source normalised to its own total (the sources differ in size)."""
    return alt.Chart(df).transform_joinaggregate(total="count()", groupby=["source"]).transform_calculate(
        share="1 / datum.total").mark_bar(opacity=0.55, binSpacing=0).encode(
        x=alt.X(f"{field}:Q", bin=alt.Bin(maxbins=bins), title=x_title),
        y=alt.Y("sum(share):Q", stack=None, title="share of the source's images"),
        color=alt.Color("source:N", scale=source_scale(False)),
        tooltip=["source:N", alt.Tooltip("sum(share):Q", format=".2f", title="share")],
    ).properties(title=title, height=320)


# -- Adherence ---------------------------------------------------------------------------------------------------------
HISTOGRAM_TITLE = "CLIPScore against the prompt"
RANK_TITLE = "Rank of the intended class among the class names"


def score_histogram(rows: pd.DataFrame) -> alt.LayerChart:
    """Histograms of CLIPScore, one colour per source (overlaid, not stacked), with each source's mean as a rule."""
    colour = alt.Color("source:N", scale=SOURCE_COLOURS, title="source")
    bars = alt.Chart(rows).mark_bar(opacity=0.5, binSpacing=0).encode(
        x=alt.X("CLIPScore:Q", bin=alt.Bin(maxbins=20), title=SCORE_LABEL),
        y=alt.Y("count():Q", stack=None, title="images"), color=colour)
    means = alt.Chart(rows).mark_rule(strokeDash=[5, 3], strokeWidth=2).encode(
        x="mean(CLIPScore):Q", color=colour, tooltip=["source:N", alt.Tooltip("mean(CLIPScore):Q", format=".3f")])
    # Streamlit fits the whole drawing (title, axes, legend) into the height: 320 leaves the plot ~200 px.
    return (bars + means).properties(title=HISTOGRAM_TITLE, height=320)


def rank_chart(rows: pd.DataFrame) -> alt.Chart:
    return alt.Chart(rows).mark_bar().encode(
        x=alt.X("rank:O", title="rank of the intended class (1 = CLIP's first choice)", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("source:N"),
        y=alt.Y("share:Q", title="share of images", axis=alt.Axis(format="%")),
        color=alt.Color("source:N", scale=SOURCE_COLOURS, title="source"),
        tooltip=["source:N", "rank:O", alt.Tooltip("share:Q", format=".0%"), "n:Q"],
    ).properties(title=RANK_TITLE, height=300)


def sweep_chart(rows: pd.DataFrame, setting: str) -> alt.FacetChart:
    """Each metric against the swept setting: estimate with its 95% interval, one panel per metric."""
    spec = SWEEP_SETTINGS[setting]
    order = [str(v) for v in dict.fromkeys(rows[setting])]
    data = rows.rename(columns={"95% low": "low", "95% high": "high"}).dropna(subset=["estimate"])
    if not spec.quantitative:
        data = data.assign(**{setting: data[setting].astype(str)})
    x = (alt.X(f"{setting}:Q", title=spec.label) if spec.quantitative
         else alt.X(f"{setting}:N", title=spec.label, sort=order))
    base = alt.Chart().encode(x=x)
    line = base.mark_line(point=True).encode(y=alt.Y("estimate:Q", title=None, scale=alt.Scale(zero=False)))
    band = base.mark_rule(strokeWidth=2, opacity=0.6).encode(y="low:Q", y2="high:Q")
    tips = base.mark_point(size=80, opacity=0).encode(
        y="estimate:Q", tooltip=[f"{setting}:{'Q' if spec.quantitative else 'N'}", "metric:N",
                                 alt.Tooltip("estimate:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                                 alt.Tooltip("high:Q", format=".3f"), "n:Q"])
    # Two panels a row: three at 260 px spilled past a 1024 px projector's main column.
    return alt.layer(band, line, tips, data=data).properties(width=240, height=200).facet(
        facet=alt.Facet("metric:N", title=None, sort=[m for m, _ in SWEEP_METRICS]), columns=2,
        title=sweep_title(setting),
    ).resolve_scale(y="independent")


# -- Ambiguity ---------------------------------------------------------------------------------------------------------
SHARES_TITLE = "Sense shares by prompt variant"


def variant_shares_chart(rows: pd.DataFrame) -> alt.Chart:
    """Share of each sense per prompt variant, with 95% intervals: one row per variant (in the given order), one
    colour per sense."""
    order = list(dict.fromkeys(rows["variant"]))
    data = rows.rename(columns={"95% low": "low", "95% high": "high"})
    base = alt.Chart(data).encode(
        y=alt.Y("variant:N", sort=order, title=None, axis=alt.Axis(labelLimit=360)),
        yOffset=alt.YOffset("sense:N"),
        color=alt.Color("sense:N", title="sense", scale=alt.Scale(scheme="tableau10")),
    )
    bars = base.mark_bar(opacity=0.35).encode(x=alt.X("share:Q", title="share of images",
                                                      scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")))
    rules = base.mark_rule(strokeWidth=2).encode(x="low:Q", x2="high:Q")
    dots = base.mark_point(filled=True, size=60).encode(
        x="share:Q", tooltip=["variant:N", "sense:N", alt.Tooltip("share:Q", format=".0%"),
                              alt.Tooltip("low:Q", format=".0%", title="95% low"),
                              alt.Tooltip("high:Q", format=".0%", title="95% high"), "n:Q"])
    # A step height (px per bar), not a fixed height: Streamlit squeezes a fixed-height offset chart into one row.
    return (bars + rules + dots).properties(title=SHARES_TITLE, height=alt.Step(26))


# -- Stable Bias -------------------------------------------------------------------------------------------------------
TEXT_IN_CELLS_UP_TO = 24  # clusters; beyond, the cells are too narrow for a number (the tooltip has it)


def cluster_heatmap(table: ClusterTable, prompts: list[str]) -> alt.LayerChart:
    """One row per prompt (every one labelled, in full), one column per cluster (largest first). Colour and number
    are the same quantity: the share of the prompt's portraits in the cluster; counts are in the tooltip and the
    counts table. Rows rather than columns for prompts: a label reads horizontally whatever its length."""
    heat = table.long().assign(row=lambda d: d["prompt"].map(short_prompt))
    base = alt.Chart(heat).encode(
        x=alt.X("cluster:N", sort=list(table.counts.index), title="cluster (largest first)",
                axis=alt.Axis(labelAngle=0, labelOverlap=False)),
        # A short axis title: a long vertical one makes Streamlit's fitting shrink the rows to its length.
        y=alt.Y("row:N", sort=[short_prompt(p) for p in prompts], title="prompt",
                axis=alt.Axis(labelLimit=0, labelOverlap=False)))
    rects = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of the prompt's images",
                        legend=alt.Legend(format=".0%", orient="bottom", gradientLength=240)),
        tooltip=["prompt:N", "cluster:N", alt.Tooltip("share:Q", format=".0%"), "count:Q", "images of the prompt:Q"])
    layers = [rects]
    if table.k <= TEXT_IN_CELLS_UP_TO:
        layers.append(base.mark_text(fontSize=11).encode(
            text=alt.condition("datum.count > 0", alt.Text("share:Q", format=".0%"), alt.value("")),
            color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black"))))
    # A step per row, not a fixed height: Streamlit fits a fixed height around the title, axes and legend, which
    # left the six rows 54 px. At least 160 px of rows, however few prompts.
    return alt.layer(*layers).properties(
        title=f"Share of each prompt's portraits in each cluster (k = {table.k})",
        height=alt.Step(max(30, -(-160 // max(1, len(prompts))))))


# -- the lessons -------------------------------------------------------------------------------------------------------
PROJECTOR_MIN_HEIGHT = 420  # px for the whole drawing: large type, a title and a legend below leave ~220 for the plot


def projector(chart, title: str) -> alt.TopLevelMixin:
    """The answer's chart titled by the lesson and with type large enough to read from the back of a room."""
    # The legend goes below the plot: beside it, it takes the width a 1024 px projector needs for the data.
    # A chart of fixed height is drawn whole within it, so the larger type would squash its plot (Lesson 2's
    # histogram was left 28 px tall): it gets more height. Step heights (one band per row) grow on their own.
    height = getattr(chart, "height", None)
    if isinstance(height, (int, float)) and height < PROJECTOR_MIN_HEIGHT:
        chart = chart.properties(height=PROJECTOR_MIN_HEIGHT)
    return (chart.properties(title=title)
            .configure_title(fontSize=20, anchor="start")
            .configure_axis(labelFontSize=15, titleFontSize=15)
            .configure_legend(labelFontSize=15, titleFontSize=15, orient="bottom")
            .configure_header(labelFontSize=15))


# -- Class-list pages: CLIP geometry and Train on synthetic -----------------------------------------------------------
def prompt_closeness_chart(cos: pd.DataFrame, selection: str) -> alt.LayerChart:
    """Per class, cos(prompt, centroid) of the natural photos (x) against the synthetic images (y), the diagonal
    dashed; a click selects a class (`selection`: the selection's name)."""
    pick = alt.selection_point(name=selection, fields=["class"], on="click", clear="dblclick")
    low = float(min(cos["natural"].min(), cos["synthetic"].min()))
    high = float(max(cos["natural"].max(), cos["synthetic"].max()))
    pad = max(0.01, 0.05 * (high - low))
    domain = [low - pad, high + pad]
    diagonal = alt.Chart(pd.DataFrame({"x": domain, "y": domain})).mark_line(strokeDash=[4, 4], color="gray") \
        .encode(x="x:Q", y="y:Q")
    points = alt.Chart(cos).mark_circle(size=180).encode(
        x=alt.X("natural:Q", title="cos(prompt, natural centroid)", scale=alt.Scale(domain=domain)),
        y=alt.Y("synthetic:Q", title="cos(prompt, synthetic centroid)", scale=alt.Scale(domain=domain)),
        color=alt.Color("class:N", legend=None),
        stroke=alt.condition(pick, alt.value("black"), alt.value(None)),
        tooltip=["class:N", alt.Tooltip("natural:Q", format=".3f"), alt.Tooltip("synthetic:Q", format=".3f")],
    ).add_params(pick)
    text = alt.Chart(cos).mark_text(dx=10, align="left").encode(x="natural:Q", y="synthetic:Q", text="class:N")
    return (diagonal + points + text).properties(title="Nearer its prompt? (click a class)", height=360)


def class_matrix_chart(df: pd.DataFrame, names: list[str], x: str, y: str, value: str, title: str, scale: alt.Scale,
                       min_step: int, legend: alt.Legend | None = None, axis_titles: bool = True,
                       value_format: str = ".2f") -> alt.Chart:
    """A class x class matrix of `value` (the offsets' cosines, a confusion matrix), every class labelled. Cells
    sized by steps, not a fixed size: Streamlit fits a fixed size around labels and title (the plot was squashed)."""
    step = max(min_step, -(-160 // max(len(names), 1)))
    colour = alt.Color(f"{value}:Q", scale=scale, **({"legend": legend} if legend is not None else {}))
    return alt.Chart(df).mark_rect().encode(
        x=alt.X(f"{x}:N", sort=names, title=x if axis_titles else None, axis=category_axis()),
        y=alt.Y(f"{y}:N", sort=names, title=y if axis_titles else None, axis=category_axis()),
        color=colour, tooltip=[f"{y}:N", f"{x}:N", alt.Tooltip(f"{value}:Q", format=value_format)],
    ).properties(title=title, width=alt.Step(step), height=alt.Step(step))


def per_class_accuracy_chart(df: pd.DataFrame, labels: list[str]) -> alt.Chart:
    """Accuracy per class on natural photos, one bar per kind of training data."""
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("class:N", title=None, axis=category_axis()), x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        yOffset="training data:N", color=alt.Color("training data:N", sort=labels, legend=full_legend()),
        tooltip=["class:N", "training data:N", alt.Tooltip("accuracy:Q", format=".2f"), "test photos:Q"],
    ).properties(title="Accuracy per class on natural photos", height=alt.Step(20))


def learning_curve_chart(df: pd.DataFrame, labels: list[str], title: str) -> alt.LayerChart:
    """Accuracy against images per class (log 2), one line per kind of training data, with 95% error bars. Ticks at
    the sizes trained on, and only there: the axis counts images (Vega would add 1.2, 1.6, ...)."""
    sizes = sorted({int(n) for n in df["images per class"]})
    base = alt.Chart(df).encode(x=alt.X("images per class:Q", scale=alt.Scale(type="log", base=2),
                                        axis=alt.Axis(values=sizes, format="d")),
                                color=alt.Color("training data:N", sort=labels, legend=full_legend(orient="bottom")))
    line = base.mark_line(point=True).encode(
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        tooltip=["images per class:Q", "training data:N", alt.Tooltip("accuracy:Q", format=".2f"),
                 alt.Tooltip("low:Q", format=".2f"), alt.Tooltip("high:Q", format=".2f"), "test photos:Q"])
    bars = base.mark_errorbar().encode(y=alt.Y("low:Q", title="accuracy"), y2="high:Q")
    return (line + bars).properties(title=title, height=380)  # one line: a two-line title is clipped at the top


def diversity_vs_accuracy_chart(df: pd.DataFrame, selection: str) -> alt.LayerChart:
    """Per class, the synthetic set's Vendi relative to the photos' against the synthetic-trained accuracy; a click
    selects a class."""
    pick = alt.selection_point(name=selection, fields=["class"], on="click", clear="dblclick")
    points = alt.Chart(df).mark_circle(size=160).encode(
        x=alt.X("relative diversity:Q", title="synthetic Vendi / natural Vendi (1 = as diverse as the photos)",
                scale=alt.Scale(zero=False)),
        y=alt.Y("accuracy:Q", title="accuracy of the synthetic-trained classifier", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("class:N", legend=None),
        stroke=alt.condition(pick, alt.value("black"), alt.value(None)),
        tooltip=["class:N", alt.Tooltip("relative diversity:Q", format=".2f"),
                 alt.Tooltip("accuracy:Q", format=".2f"), "images compared:Q", "test photos:Q"],
    ).add_params(pick).properties(title="Diversity of each class's synthetic images vs its accuracy (click a point)",
                                  height=340)
    labels = alt.Chart(df).mark_text(dx=10, align="left").encode(x="relative diversity:Q", y="accuracy:Q",
                                                                 text="class:N")
    return points + labels
