import numpy as np
import pandas as pd

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
