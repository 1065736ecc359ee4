"""Shared by tests/test_pack_roundtrip.py and the fresh process it starts (tests/pack_roundtrip_child.py): the pages
and links of the demo-pack round trip, and what "the same numbers" means for a page.

A page's numbers: every text, metric, table and chart data row in its main area (not the sidebar, which shows
this machine's cache size), rendered from the cache by a fresh AppTest with the page's link."""

from __future__ import annotations

import json
import math
import os
import re

TINY = {"generator": "tiny-random", "clip": "tiny-random"}
SOURCE = "folder:imagenette224"
CALIBRATION = "folder:imagenet_samples_ambiguous"  # flat <wnid>_<name>.JPEG photos: the pack carries the folder
# (page file, its link). Every page that shows generated images, with small tiny-random runs.
SCENARIOS: list[tuple[str, dict[str, str]]] = [
    ("pages/diversity.py", {"prompt": "a photo of a tench", "n": "4", **TINY, "ref": SOURCE, "ref_class": "tench"}),
    ("pages/ambiguity.py", {"prompt": "a photo of a crane", "n": "4", **TINY, "cal": CALIBRATION}),
    ("pages/adherence.py", {"prompt": "a photo of a golf ball", "n": "4", **TINY, "ref": SOURCE,
                            "ref_class": "golf_ball", "sweep": "guidance", "sweep_values": "1, 7.5"}),
    ("pages/synthetic_vs_natural.py", {"classes": "tench,church", "ref": SOURCE, "n": "4", "n_nat": "6", **TINY}),
    ("pages/train_on_synthetic.py", {"classes": "tench,church", "ref": SOURCE, "n": "4", "n_nat": "6", **TINY}),
    ("pages/clip_geometry.py", {"classes": "tench,church", "ref": SOURCE, "n": "4", "n_nat": "6", **TINY}),
    ("pages/stable_bias.py", {"adj": "-,ambitious", "prof": "baker,CEO", "n": "4", "cuts": "2,3", **TINY}),
    *[(f"pages/lesson_{name}.py", dict(TINY))
      for name in ("ambiguity", "adherence", "diversity", "concept", "geometry")],
]
TIMEOUT = 300
# Links whose rows come from an action beyond a page's link (uploading photos): "<page file>#<what>".
UPLOADS_LINK = "pages/diversity.py#uploads"
UPLOAD_CLASS = "my_tench_photos"


def render(page: str, params: dict[str, str]):
    """The page (a key such as UPLOADS_LINK names its page before '#') opened from its link."""
    from app_support import open_page

    return open_page(page.split("#")[0], params, TIMEOUT)


def _clean(value, root: str):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, str):
        return value.replace(root, "<cache>")
    if isinstance(value, dict):
        return {str(k): _clean(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, root) for v in value]
    return value


def numbers(at) -> dict:
    """Everything the page's main area shows, as plain JSON (floats rounded to 1e-6)."""
    import pyarrow as pa

    root = os.environ.get("DDL_CACHE_DIR", "<none>")
    out: dict[str, list] = {"exception": [str(e.value) for e in at.exception], "text": [], "tables": [],
                            "charts": []}
    for e in at.main:
        kind = getattr(e, "type", "")
        if kind in ("markdown", "caption", "text", "success", "info", "warning", "error", "title", "subheader",
                    "header", "latex", "code"):
            out["text"].append(f"{kind}: {e.value}")
        elif kind == "metric":
            out["text"].append(f"metric: {e.label} = {e.value}")
        elif kind in ("dataframe", "table"):
            out["tables"].append(e.value.to_dict(orient="split"))
        elif kind == "vega_lite_chart":
            rows = [pa.ipc.open_stream(d.data.data).read_pandas().to_dict("records") for d in e.proto.datasets]
            spec = json.loads(e.proto.spec)
            out["charts"].append({"mark": spec.get("mark"), "rows": rows})
    cleaned = _clean(out, root)
    # Messages about what this machine did (generated, reused, where a run came from) are not results.
    cleaned["text"] = [t for t in cleaned["text"] if not re.search(r"images generated|reused from the cache|"
                                                                    r"on another machine", t)]
    return cleaned


def first_difference(a, b, path: str = "") -> str | None:
    """Where two JSON values first differ, as 'path: a != b' (None if equal): a readable failure message."""
    if type(a) is not type(b):
        return f"{path}: {a!r:.300} != {b!r:.300}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only on one side"
            if (d := first_difference(a[k], b[k], f"{path}/{k}")) is not None:
                return d
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            if (d := first_difference(x, y, f"{path}[{i}]")) is not None:
                return d
        return None if len(a) == len(b) else f"{path}: {len(a)} items != {len(b)}"
    return None if a == b else f"{path}: {a!r:.300} != {b!r:.300}"
