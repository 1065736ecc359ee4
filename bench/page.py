"""Benchmark: the Diversity page rendering a cached run (Streamlit's AppTest, in this process).

A tiny-random run is generated into a fresh cache (DDL_CACHE_DIR pointed at it for the duration), the page is opened
once with the run's URL (that first render embeds the images and makes the thumbnails), then timed:

- new session: a fresh AppTest each time (a new browser tab opening the shared link) with Streamlit's cache_data
  kept, as in a running server that has shown this run before;
- cache_data cleared (the target): the same, with `st.cache_data` cleared before each render, so the statistics
  (bootstrap) and the projection are computed again: a server that has never shown this run, or was restarted,
  with everything on disk.

Optionally the same with a natural reference class (the shared Imagenette photos through DDL_NATURAL_ROOTS).
Each render must show the run's images and no exception; the models are never loaded (everything is cached).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from .stats import Row, Samples, Section, Stopwatch, fmt_s

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGENETTE = (REPO_ROOT.parent / "shared" / "data" / "imagenette224").resolve()
PROMPT = "a photo of a tench"
TARGET_S = 1.5


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _render(params: dict, clear_data: bool, n: int):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if clear_data:
        st.cache_data.clear()
    at = AppTest.from_file(str(REPO_ROOT / "Home.py"), default_timeout=300)
    at.switch_page("pages/diversity.py")
    for k, v in params.items():
        at.query_params[k] = v
    # Everything is on disk: loading a model or generating would be a bug (and would wreck the timing).
    with mock.patch("core.pipeline.models.load_pipeline", side_effect=AssertionError("the generator was loaded")), \
            mock.patch("core.pipeline.engine.generate_missing", side_effect=AssertionError("generation ran")), \
            Stopwatch() as sw:
        at.run()
    if at.exception:
        raise RuntimeError(f"the Diversity page raised: {at.exception}")
    shown = len(at.get("image"))
    if shown != n:
        raise RuntimeError(f"the Diversity page showed {shown} of {n} images")
    return sw


def _quiet_streamlit() -> None:
    """AppTest runs Streamlit without a server: its 'No runtime found' / 'missing ScriptRunContext' warnings are
    expected there and would bury the benchmark's log."""
    from streamlit import config
    from streamlit.logger import set_log_level

    config.set_option("logger.level", "error")  # what AppTest re-applies to Streamlit's loggers on each run
    set_log_level("error")  # the loggers that exist already


def _harness_baseline(repeats: int) -> Samples:
    """AppTest's own cost: a one-line script (a real server pays part of this once, at start-up)."""
    from streamlit.testing.v1 import AppTest

    out = Samples()
    for _ in range(repeats + 1):
        with Stopwatch() as sw:
            AppTest.from_string("import streamlit as st\nst.write('x')").run()
        out.add(sw.wall)
    out.wall.pop(0)  # the warm-up
    return out


def _breakdown(req, settings, n: int, repeats: int, with_reference: bool) -> dict[str, float]:
    """The page's own work, piece by piece, as pages/diversity.py calls it, all from the disk cache (median s)."""
    import statistics

    import numpy as np

    from core.analysis.diversity import PREVIEW_SIZE, embed_set, natural_set, synthetic_set, thumbnails
    from core.analysis.stats import diversity_statistics, project_2d
    from core.pipeline.cache import Cache
    from core.pipeline.config import cache_dir
    from core.pipeline.generate import cached_images
    from core.pipeline.models import clip_key
    from core.pipeline.natural import NaturalFolder
    from core.pipeline.registry import CLIP_MODELS

    def never():
        raise AssertionError("CLIP was needed: the embeddings are not cached")

    cache = Cache(cache_dir())
    key = clip_key(CLIP_MODELS[req.clip])
    pieces: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        with Stopwatch() as sw:
            value = fn(*args)
        pieces.setdefault(name, []).append(sw.wall)
        return value

    for _ in range(repeats):
        images = timed("cached_images (index + sha256 of every PNG)", cached_images, settings, req.prompt,
                       req.seeds, cache)
        syn = synthetic_set(images)
        timed(f"grid previews ({PREVIEW_SIZE} px, from SQLite)", thumbnails, cache, syn, PREVIEW_SIZE)
        sets, embs = [syn], [timed("embeddings (SQLite)", embed_set, cache, key, syn, never)]
        if with_reference:
            photos = timed("natural class scan (hash every photo)", NaturalFolder(IMAGENETTE).images, "tench")
            nat = natural_set(photos, n=len(syn))
            sets.append(nat)
            embs.append(timed("embeddings (SQLite)", embed_set, cache, key, nat, never))
        for e in embs:
            timed("diversity_statistics (jackknife, per set)", diversity_statistics, e)
        timed("PCA map (project_2d)", project_2d, np.concatenate(embs), "pca")
        for one in sets:
            timed("map thumbnails (80 px, from SQLite)", thumbnails, cache, one)
    # several calls per render (one per set): the median of each call, times the calls per render
    return {name: statistics.median(v) * (len(v) // repeats) for name, v in pieces.items()}


def bench_page(pipe, n: int, repeats: int, tmp_root: Path, log, with_reference: bool = True,
               cache_root: Path | None = None) -> tuple[list[Row], Section]:
    """`cache_root`: a cache that already holds the n-image tiny-random run of PROMPT (the reopen benchmark's);
    else the run is generated into a fresh one."""
    import streamlit as st

    from core.pipeline.cache import Cache
    from core.pipeline.config import select_device
    from core.pipeline.engine import Engine
    from core.pipeline.generate import RunRequest
    from core.pipeline.registry import GENERATORS, TINY_RANDOM

    _quiet_streamlit()
    cache_root = cache_root or tmp_root / "page-cache"
    rows = []
    breakdowns = {}
    with _env(DDL_CACHE_DIR=str(cache_root), DDL_NATURAL_ROOTS=str(IMAGENETTE)):
        device = select_device()
        preset = GENERATORS[TINY_RANDOM]
        req = RunRequest(PROMPT, n=n, generator=TINY_RANDOM, clip=TINY_RANDOM).with_preset_defaults(preset)
        with Stopwatch() as sw:  # the engine, as the page's Generate button runs it (embedding left to the page)
            (run,), report = Engine(Cache(cache_root), device, lambda folder: pipe).run([req])
        settings = run.settings
        log(f"[page] the {n}-image tiny-random run: {report.reused} images were in the cache, {report.generated} "
            f"generated ({fmt_s(sw.wall)})")
        variants = [("no reference", {"prompt": PROMPT, "n": str(n), "generator": TINY_RANDOM,
                                      "clip": TINY_RANDOM})]
        if with_reference and IMAGENETTE.is_dir():
            variants.append(("natural reference", {**variants[0][1], "ref": f"folder:{IMAGENETTE.name}",
                                                   "ref_class": "tench"}))
        try:
            for label, params in variants:
                with mock.patch("core.pipeline.models.load_pipeline", side_effect=AssertionError("generator loaded")):
                    first = _render_first(params, n)
                log(f"[page] {label}: first render (embeds {n} images with the tiny CLIP, makes thumbnails) "
                    f"{fmt_s(first.wall)}")
                _render(params, clear_data=True, n=n)  # warm-up: imports, SQLite, the OS page cache
                kept, cleared = Samples(), Samples()
                for i in range(repeats):
                    for clear in ((False, True) if i % 2 == 0 else (True, False)):
                        sw = _render(params, clear_data=clear, n=n)
                        (cleared if clear else kept).add(sw.wall, sw.cpu)
                log(f"[page] {label}: new session median {fmt_s(kept.median)}, cache_data cleared median "
                    f"{fmt_s(cleared.median)}")
                breakdowns[label] = _breakdown(req, settings, n, repeats, with_reference=label != "no reference")
                common = {"images": n, "variant": label, "repeats": repeats, "first_render_s": first.wall}
                rows.append(Row(
                    benchmark=f"Diversity page from cache ({n} img, {label}): cache_data cleared",
                    lab_label="page", other_label="-", lab=cleared, other=None, ratio=None, ratio_kind="s",
                    target=f"< {TARGET_S:g} s", ok=cleared.median < TARGET_S, details=common,
                    note="" if label != "no reference" else
                    f"Diversity page: the first render of the run (embedding {n} images with the tiny CLIP, "
                    f"thumbnails) took {fmt_s(first.wall)}; later renders read all of it from the disk cache"))
                rows.append(Row(
                    benchmark=f"Diversity page from cache ({n} img, {label}): new session", lab_label="page",
                    other_label="-", lab=kept, other=None, ratio=None, ratio_kind="s", target="info", ok=None,
                    details=common))
            harness = _harness_baseline(repeats)
            log(f"[page] AppTest harness alone (a one-line script): median {fmt_s(harness.median)}")
        finally:
            st.cache_data.clear()
            st.cache_resource.clear()  # the tiny CLIP the first render loaded
    labels = list(breakdowns)
    names = list(dict.fromkeys(name for b in breakdowns.values() for name in b))
    lines = [[name] + [fmt_s(breakdowns[label].get(name)) for label in labels] for name in names]
    lines.append(["sum of the pieces"] + [fmt_s(sum(breakdowns[label].values())) for label in labels])
    lines.append(["AppTest harness alone (one-line script)"] + [fmt_s(harness.median)] * len(labels))
    cleared_medians = {r.details["variant"]: r.lab.median for r in rows if r.ok is not None}
    lines.append(["whole render, cache_data cleared (measured)"]
                 + [fmt_s(cleared_medians.get(label)) for label in labels])
    section = Section(
        title=f"Diversity page from cache, where the time goes ({n} images; core calls timed alone, median of "
              f"{repeats})",
        headers=["piece"] + labels, lines=lines,
        notes=["The rest of a render is Streamlit itself: the script's widgets and charts (Altair validation, "
               "Arrow serialisation), and hashing the arguments of st.cache_data functions."],
        data={"breakdown_s": breakdowns, "harness_median_s": harness.median})
    return rows, section


def _render_first(params: dict, n: int):
    """The first render: embeddings and thumbnails are made here (CLIP loads), so only the generator is barred."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    at = AppTest.from_file(str(REPO_ROOT / "Home.py"), default_timeout=300)
    at.switch_page("pages/diversity.py")
    for k, v in params.items():
        at.query_params[k] = v
    with Stopwatch() as sw:
        at.run()
    if at.exception:
        raise RuntimeError(f"the Diversity page raised on its first render: {at.exception}")
    if len(at.get("image")) != n:
        raise RuntimeError(f"the Diversity page showed {len(at.get('image'))} of {n} images on its first render")
    return sw
