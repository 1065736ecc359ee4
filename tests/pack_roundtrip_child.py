"""The far side of the demo-pack round trip, in a fresh Python process (started by tests/test_pack_roundtrip.py):
import a pack into the empty cache DDL_CACHE_DIR names, with no generator and no CLIP model to be had, render each
page's link and write the numbers it shows as JSON.

    python tests/pack_roundtrip_child.py PACK.zip LINKS.json OUT.json   (LINKS: {page file: URL parameters})
"""

import json
import os
import sys
from pathlib import Path
from unittest import mock

os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from pack_roundtrip_support import numbers, render  # noqa: E402

from core.pipeline.cache import Cache  # noqa: E402
from core.pipeline.config import cache_dir  # noqa: E402
from core.pipeline.models import ModelUnavailableError  # noqa: E402
from core.present.pack import import_pack  # noqa: E402


def unavailable(*args, **kwargs):
    raise ModelUnavailableError("No model weights on this machine (demo-pack round-trip test): a page asked for one.")


def main(pack: str, links_file: str, out: str) -> None:
    links = json.loads(Path(links_file).read_text())
    cache = Cache(cache_dir())
    assert cache.count_images() == 0, "the round trip must start from an empty cache"
    report = import_pack(Path(pack), cache)
    # A laptop with no generator weights (tiny-random is built in code: make building it fail too) and no CLIP.
    blocked = ["core.pipeline.models.load_pipeline", "core.pipeline.models.load_clip", "app.ui.load_pipeline",
               "app.ui.load_clip", "core.pipeline.engine.locate_generator", "core.pipeline.models.locate_generator",
               "core.pipeline.tiny.ensure_tiny_sd_folder"]
    patches = [mock.patch(target, unavailable) for target in blocked]
    patches += [mock.patch(f"{module}.generator_present", lambda preset: False)
                for module in ("app.ui", "core.pipeline.engine")]
    for p in patches:
        p.start()
    results = {page: numbers(render(page, params)) for page, params in links.items()}
    Path(out).write_text(json.dumps({"imported": report.summary.describe(), "pages": results}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
