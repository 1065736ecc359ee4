import numpy as np
import pandas as pd
import pytest

from core.analysis.stats import Estimate
from core.present.charts import PAIR_SELECTION, embedding_map, similarity_heatmap, statistics_chart


def test_heatmap_spec_has_a_pair_selection_and_seed_tooltips():
    spec = similarity_heatmap(np.eye(3), [5, 6, 7]).to_dict()
    assert spec["params"][0]["name"] == PAIR_SELECTION
    assert spec["params"][0]["select"]["fields"] == ["seed_a", "seed_b"]
    assert [t["field"] for t in spec["encoding"]["tooltip"]] == ["seed_a", "seed_b", "cosine"]
    values = next(iter(spec["datasets"].values()))
    assert len(values) == 9 and {"seed_a": 5, "seed_b": 5, "cosine": 1.0} in values


def test_map_spec_shows_the_image_in_the_tooltip():
    df = pd.DataFrame({"x": [0.0], "y": [1.0], "source": ["synthetic"], "label": ["seed 0"],
                       "image": ["data:image/jpeg;base64,AAAA"], "highlighted": [False]})
    spec = embedding_map(df, "PCA").to_dict()
    assert {"field": "image", "type": "nominal"} in spec["encoding"]["tooltip"]
    assert spec["title"] == "CLIP image embeddings (PCA)"


def test_statistics_chart_drops_undefined_values():
    rows = [("synthetic", Estimate("Vendi score", 2.0, 1.5, 2.5, 8)),
            ("natural", Estimate("Vendi score", float("nan"), float("nan"), float("nan"), 1))]
    values = next(iter(statistics_chart(rows).to_dict()["datasets"].values()))
    assert [v["source"] for v in values] == ["synthetic"]


def test_map_legend_lists_only_the_sources_it_shows():
    """With no natural reference chosen, the legend must not offer a "natural" entry that refers to nothing."""
    df = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 0.0], "source": ["synthetic", "synthetic"],
                       "label": ["seed 0", "seed 1"], "image": ["", ""], "highlighted": [False, False]})
    assert embedding_map(df, "PCA").to_dict()["encoding"]["color"]["scale"]["domain"] == ["synthetic"]
    both = pd.concat([df, df.assign(source="natural")])
    assert embedding_map(both, "PCA").to_dict()["encoding"]["color"]["scale"]["domain"] == ["synthetic", "natural"]


# -- readable axes and widths (#16) ---------------------------------------------------------------------------------
def _tick_labels(chart) -> list[str]:
    """The numbers Vega draws on the chart's axes (rendered to SVG by vl-convert, the reports' renderer)."""
    import re

    import vl_convert

    svg = vl_convert.vegalite_to_svg(chart.to_dict())
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    return [t for t in texts if re.fullmatch(r"[-\u2212]?[\d.]+(e[-+]?\d+)?", t)]


def _distances(recall_high: float) -> pd.DataFrame:
    """The Synthetic vs natural page's distance rows, recall 0 for every class (tiny models: no natural photo
    falls in the synthetic manifold), its interval [0, recall_high]."""
    rows = []
    for c in ("tench", "church", "all classes"):
        for name, value, low, high in (("FD (CLIP)", 1.2, 1.0, 1.4), ("CMMD", 3.0, 2.0, 4.0),
                                       ("precision", 0.5, 0.2, 0.8), ("recall", 0.0, 0.0, recall_high)):
            rows.append({"class": c, "statistic": name, "value": value, "low": low, "high": high, "n": 10})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("recall_high", [0.0, 2e-17])
def test_a_collapsed_facet_gets_a_readable_axis(recall_high):
    """The recall panel, every value 0: its axis read a single "0.000000" (or ticks at 1e-17) while the other panels
    were fine. Each panel now has its own range: a share's whole [0, 1], with plain tick labels."""
    from app.classes import interval_chart
    from core.analysis.compare import BOUNDED_RANGES

    chart = interval_chart(_distances(recall_high), "class", title="Distances", facet="statistic", width=220,
                           domains=BOUNDED_RANGES)
    spec = chart.to_dict()
    panels = {p["title"]: p for p in spec["concat"]}
    assert list(panels) == ["FD (CLIP)", "CMMD", "precision", "recall"] and spec["columns"] == 2
    scales = {name: p["layer"][0]["encoding"]["x"]["scale"] for name, p in panels.items()}
    assert scales["recall"]["domain"] == [0.0, 1.0] and scales["precision"]["domain"] == [0.0, 1.0]
    assert "domain" not in scales["FD (CLIP)"]  # a spread-out panel: Vega's own range, zero not forced in
    assert all(p["layer"][0]["encoding"]["x"]["axis"]["format"] == "~g" for p in panels.values())
    assert spec["resolve"]["scale"]["x"] == "independent"
    labels = _tick_labels(chart)
    assert {"0", "0.2", "0.4", "0.6", "0.8", "1"} <= set(labels)
    assert not [t for t in labels if "0000" in t or len(t) > 5], labels


def test_a_collapsed_interval_chart_without_a_known_range_still_reads():
    """Without a range given, a panel whose values are all one number gets a range around it, not zero width."""
    from app.classes import interval_chart

    same = pd.DataFrame({"class": ["a", "b", "c"], "value": [2.0] * 3, "low": [2.0] * 3, "high": [2.0] * 3,
                         "n": [5] * 3})
    chart = interval_chart(same, "class", title="t")
    domain = chart.to_dict()["layer"][0]["encoding"]["x"]["scale"]["domain"]
    assert domain[0] < 2.0 < domain[1]
    labels = _tick_labels(chart)
    assert len(labels) >= 3 and not [t for t in labels if len(t) > 5], labels


def _diversity_rows(n: int = 8):
    from core.analysis.stats import diversity_statistics

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16))
    syn = diversity_statistics(x / np.linalg.norm(x, axis=1, keepdims=True))
    y = rng.normal(size=(n, 16))
    nat = diversity_statistics(y / np.linalg.norm(y, axis=1, keepdims=True))
    return [("synthetic", e) for e in syn] + [("natural", e) for e in nat]


def test_statistics_chart_panels_stretch_to_the_page_column():
    """The Diversity page's statistics: a fixed 2 x 260 px facet filled ~60% of a 1400 px browser's column. Streamlit
    stretches a vconcat of single views (no layer inside) to the column: one panel per statistic, one under the
    other, each a single view; Streamlit's own spec preparation picks "fit-x" for it."""
    from streamlit.elements.vega_charts import _prepare_vega_lite_spec

    rows = _diversity_rows()
    spec = statistics_chart(rows).to_dict()
    assert "facet" not in spec and "concat" not in spec
    names = list(dict.fromkeys(e.name for _, e in rows))
    assert [p["title"] for p in spec["vconcat"]] == names
    composition = {"layer", "concat", "hconcat", "vconcat", "facet", "repeat"}
    assert all(not composition & set(p) for p in spec["vconcat"])
    assert _prepare_vega_lite_spec(spec, use_container_width=True)["autosize"]["type"] == "fit-x"
    assert spec["resolve"]["scale"]["x"] == "independent"
    # Where nothing stretches it (the report's PNG) each panel is still wide enough to read.
    assert all(p["width"] >= 400 and p["height"] >= 40 for p in spec["vconcat"])


def test_statistics_chart_draws_each_estimate_with_its_interval():
    """One line per source from the interval's low end through the estimate to its high end; a filled point at the
    estimate only."""
    import re

    import vl_convert

    rows = [("synthetic", Estimate("Vendi score", 2.0, 1.5, 2.5, 8)), ("natural", Estimate("Vendi score", 3.0, 2.8,
                                                                                          3.9, 8))]
    chart = statistics_chart(rows)
    panel = chart.to_dict()["vconcat"][0]
    fold = next(t for t in panel["transform"] if "fold" in t)
    assert fold["fold"] == ["low", "value", "high"] and panel["encoding"]["x"]["field"] == fold["as"][1]
    assert panel["encoding"]["fillOpacity"]["condition"]["test"] == "datum.end == 'value'"
    svg = vl_convert.vegalite_to_svg(chart.to_dict())
    paths = re.findall(r'<path[^>]*aria-roledescription="point"[^>]*>', svg) or re.findall(r"<path[^>]*>", svg)
    filled = [p for p in paths if 'fill-opacity="1"' in p and "M" in p]
    assert len(filled) >= 2  # the two estimates
    ticks = [float(t) for t in _tick_labels(chart)]
    assert min(ticks) <= 1.5 and max(ticks) >= 3.8  # both intervals in view


def test_a_collapsed_statistic_panel_gets_a_readable_axis():
    rows = [("synthetic", Estimate("variance in first 2 PCs", 1.0, 1.0, 1.0, 8)),
            ("natural", Estimate("variance in first 2 PCs", 1.0, 1.0, 1.0, 8))]
    panel = statistics_chart(rows).to_dict()["vconcat"][0]
    assert panel["encoding"]["x"]["scale"]["domain"] == [0.0, 1.0]
    labels = _tick_labels(statistics_chart(rows))
    assert len(labels) >= 3 and not [t for t in labels if len(t) > 5], labels


def test_class_list_chart_builders_keep_every_label_and_integer_ticks():
    import altair as alt

    from core.present.charts import class_matrix_chart, learning_curve_chart, prompt_closeness_chart

    names = ["tench", "church", "golf_ball"]
    cm = pd.DataFrame([{"true class": a, "predicted": b, "photos": i * 3 + j} for i, a in enumerate(names)
                       for j, b in enumerate(names)])
    spec = class_matrix_chart(cm, names, "predicted", "true class", "photos", "Confusion", alt.Scale(scheme="blues"),
                              min_step=44, value_format="d").to_dict()
    assert spec["width"] == {"step": 54} and spec["height"] == {"step": 54}  # ceil(160 / 3) beats the minimum
    assert spec["encoding"]["x"]["sort"] == names and spec["encoding"]["x"]["axis"]["labelOverlap"] is False
    assert spec["encoding"]["tooltip"][2]["format"] == "d"
    curve = pd.DataFrame([{"images per class": n, "training data": "synthetic only", "accuracy": 0.5, "low": 0.4,
                           "high": 0.6, "test photos": 10} for n in (2, 4, 16)])
    layer = learning_curve_chart(curve, ["synthetic only"], "Learning curve").to_dict()["layer"][0]
    assert layer["encoding"]["x"]["axis"] == {"format": "d", "values": [2, 4, 16]}  # no 1.2, 1.6 ticks
    cos = pd.DataFrame({"class": names, "natural": [0.20, 0.25, 0.30], "synthetic": [0.31, 0.22, 0.28]})
    layers = prompt_closeness_chart(cos, "pick").to_dict()["layer"]
    low, high = layers[1]["encoding"]["x"]["scale"]["domain"]
    assert low < 0.20 and high > 0.31 and layers[1]["encoding"]["y"]["scale"]["domain"] == [low, high]
