"""A fresh Python process reopening a cached run, as the Diversity page does on a cold start.

`python -m bench.reopen_child CACHE_ROOT PROMPT N STEPS SIZE` imports the lab, resolves the settings from the model
folder (no weights loaded), opens the cache and lists the cached images; it prints one JSON line with the time of
each phase, counted from the moment this module starts running (the interpreter's own start-up is what the parent
measures on top). DDL_CACHE_DIR (inherited) says where the tiny model folder is, as for the app.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    root, prompt, n, steps, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    marks = {}

    def mark(name):
        marks[name] = time.perf_counter() - T0

    from pathlib import Path

    from core.pipeline.cache import Cache
    from core.pipeline.config import select_device
    from core.pipeline.generate import RunRequest, cached_images, resolve_settings
    from core.pipeline.models import locate_generator
    from core.pipeline.registry import GENERATORS, TINY_RANDOM
    mark("import_core")
    device = select_device()  # imports torch
    mark("select_device")
    preset = GENERATORS[TINY_RANDOM]
    req = RunRequest(prompt, n=n, generator=TINY_RANDOM, steps=steps, size=size,
                     clip=TINY_RANDOM).with_preset_defaults(preset)
    folder = locate_generator(preset)
    mark("locate_generator")
    settings = resolve_settings(req, folder, device)  # imports diffusers + transformers for their versions
    mark("resolve_settings")
    cache = Cache(Path(root))
    mark("open_cache")
    images = cached_images(settings, req.prompt, req.seeds, cache)
    mark("cached_images")
    print(json.dumps({"found": len(images), "marks": marks}), flush=True)


if __name__ == "__main__":
    main()
