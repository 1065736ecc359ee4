"""The one module that wraps `core` for Streamlit: shared models (st.cache_resource), the generation lock, the
device summary and the sidebar status. Pages import this, never each other.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from app import queue as ui_queue
from core.pipeline import config
from core.pipeline.cache import Cache, CacheError
from core.pipeline.dataset import open_cache
from core.pipeline.engine import Engine, Plan, Run
from core.pipeline.generate import RunRequest
from core.pipeline.local import all_clip_models, generator_preset
from core.pipeline.models import (
    ClipModel,
    ModelUnavailableError,
    clip_present,
    generator_present,
    load_clip,
    load_pipeline,
)
from core.pipeline.queue import LimitError
from core.pipeline.registry import DEFAULT_CLIP, DEFAULT_GENERATOR
from core.present.markup import md_literal


@st.cache_resource(show_spinner=False)
def device() -> config.DeviceSpec:
    return config.select_device()


@st.cache_resource(show_spinner=False)
def generation_lock() -> threading.Lock:
    """One lock for the process: diffusers pipelines are not thread-safe (scheduler state), so every session's
    generation batches take turns."""
    return threading.Lock()


def cache() -> Cache:
    # Not cached as a resource: DDL_CACHE_DIR is read each time (tests switch it); Cache() is cheap. Opened datasets
    # (sweeps' output, core.pipeline.dataset) lie under it read-only: their runs answer the same lookups as cached ones.
    return open_cache(config.cache_dir())


def _release(obj) -> None:
    """Called by st.cache_resource when a model is swapped out: free accelerator memory at once."""
    del obj
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


@st.cache_resource(max_entries=1, on_release=_release, show_spinner="Loading the generator...")
def pipeline(folder: str):
    """The one loaded pipeline (max_entries=1: choosing another model releases this one)."""
    return load_pipeline(Path(folder), device())


@st.cache_resource(max_entries=1, on_release=_release, show_spinner="Loading CLIP...")
def clip(clip_preset_key: str) -> ClipModel:
    return load_clip(all_clip_models()[clip_preset_key], device())


def _selected(key: str, default: str) -> str:
    """The widget's value on the page that has it, else the session's last choice, the URL's, the default."""
    state = st.session_state
    return state.get(key) or state.get(f"selected_{key}") or st.query_params.get(key) or default


def remember_selection(generator: str, clip_model: str) -> None:
    """Keep the choice for the sidebar of other pages (Streamlit forgets a widget's state off its page)."""
    st.session_state["selected_generator"], st.session_state["selected_clip"] = generator, clip_model


def selected_generator() -> str:
    return _selected("generator", DEFAULT_GENERATOR)


def selected_clip() -> str:
    return _selected("clip", DEFAULT_CLIP)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def start_page() -> None:
    """Every page calls this first: routing through Home.py's st.navigation, the login on a shared server
    (app.queue), then the sidebar status."""
    _leave_legacy_pages_mode()
    ui_queue.require_login()
    _sidebar_status()


def _leave_legacy_pages_mode() -> None:
    """Streamlit treats an app with a pages/ folder as a legacy multipage app until st.navigation has run once in
    the process. So a deep link (/diversity) as a fresh server's first request would run the page script alone,
    without Home.py's navigation and page config, and stay so. Switch to st.navigation mode and rerun: Home.py
    then routes the same URL (page hashes derive from the URL path in both modes). Pinned Streamlit 1.67;
    tests/test_e2e.py opens a deep link on a fresh server to keep this honest."""
    from streamlit.runtime.pages_manager import PagesManager

    # Once per session: AppTest resets the flag before every run, and a rerun there would drop a form submit.
    if PagesManager.uses_pages_directory and not st.session_state.get("_routed_by_navigation"):
        st.session_state["_routed_by_navigation"] = True
        PagesManager.uses_pages_directory = False
        st.rerun()


def _sidebar_status() -> None:
    """Device, selected models (and whether their weights are here), cache size: on every page."""
    with st.sidebar:
        st.subheader("Status")
        try:
            dev = device()
            st.markdown(f"**Device:** {dev.describe()}")
        except ValueError as exc:
            st.error(str(exc))
        try:
            gen = generator_preset(selected_generator())
        except (KeyError, ValueError):
            gen = None  # the page says why
        clp = all_clip_models().get(selected_clip())
        if gen:
            here = "weights here" if generator_present(gen) else "weights not downloaded yet"
            st.markdown(f"**Generator:** {md_literal(gen.label)}  \n{md_literal(gen.model_id)}: {here}")
        if clp:
            here = "weights here" if clip_present(clp) else "weights not downloaded yet"
            st.markdown(f"**CLIP:** {md_literal(clp.label)}: {here}")
        # A placeholder, so a page that adds images can refresh the line in the same run.
        st.session_state["_cache_status_slot"] = st.empty()
        try:
            c = cache()
        except CacheError as exc:
            st.error(str(exc))
            st.stop()
        if c.recovered:
            st.warning(c.recovered)
        with st.expander("Check the cache"):
            st.caption("Every indexed image is read and its checksum compared; unfinished or unindexed files found.")
            check, fix = st.columns(2)
            if check.button("Verify", key="cache_verify"):
                report = c.verify()
                (st.success if report.ok else st.warning)(report.summary())
            if fix.button("Repair", key="cache_repair", help="Drop entries whose file is missing or corrupt (they "
                                                            "are regenerated when asked for), delete temp files."):
                before = c.repair()
                st.info(f"Found: {before.summary()} Now: {c.verify().summary()}")
    refresh_cache_status()


def refresh_cache_status() -> None:
    """(Re)write the sidebar's cache line: call after adding images to the cache."""
    slot = st.session_state.get("_cache_status_slot")
    if slot is not None:
        c = cache()
        slot.markdown(f"**Cache:** {c.count_images()} images, {_human_bytes(c.size_bytes())}  \n{md_literal(c.root)}")


def engine() -> Engine:
    """The run engine for this process's cache and device, with the shared pipeline, CLIP model, lock and the fair
    queue every session's runs take turns in (one batch per turn, round-robin over people: app.queue)."""
    return Engine(cache(), device(), lambda folder: pipeline(str(folder)), load_clip=clip, lock=generation_lock(),
                  queue=ui_queue.queue())


def runs(requests: list[RunRequest], *, generate: bool) -> list[Run]:
    """The cached images of each request; with `generate`, first make the missing ones (core.pipeline.engine does the
    work).

    Every page that shows generated images goes through here. The UI's part: the download bar, one progress bar
    across all requests, a Cancel button, and the messages. Requests must already be validated
    (core.pipeline.generate.validate_request) and have preset defaults. A missing model shows its message and stops the
    page.
    """
    eng = engine()
    download_bar = st.empty()
    try:
        plan = eng.plan(requests, generate=generate,
                        on_download=lambda fraction, message: download_bar.progress(fraction, text=message))
    except ModelUnavailableError as exc:
        download_bar.empty()
        st.error(str(exc))
        st.stop()
    download_bar.empty()
    if generate and plan.to_generate:
        _generate(eng, plan)
    elsewhere = plan.made_elsewhere(eng.device)
    if elsewhere:
        st.caption(f"Images made on {', '.join(elsewhere)} on another machine (a demo pack or a shared cache), "
                   f"reopened without the generator; this machine would make slightly different pixels.")
    return eng.runs(plan)


@contextmanager
def working(text: str):
    """A progress bar and a Cancel button while core work runs; yields `progress(done, total)` for its callback.

    Clicking Cancel makes Streamlit stop this script at its next UI call (the bar's next update): work the core
    committed before then (generated batches, embedded batches) stays in the cache. Both disappear when the work
    ends."""
    cancel_slot = st.empty()
    # A page may run several such steps in one run: each Cancel button needs its own key.
    st.session_state["_cancel_buttons"] = st.session_state.get("_cancel_buttons", 0) + 1
    cancel_slot.button("Cancel", help="Stop after the current step; finished work stays in the cache.",
                       key=f"cancel-{st.session_state['_cancel_buttons']}")
    bar = st.progress(0.0, text=f"{text}...")

    def progress(done: int, total: int, detail: str = "") -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=detail or f"{text}: {done} of {total}")

    try:
        yield progress
    finally:
        bar.empty()
        cancel_slot.empty()


def _generate(eng: Engine, plan: Plan) -> None:
    try:
        with working("Waiting for the generator") as progress:
            totals = eng.generate(plan, on_progress=lambda p: progress(round(p.fraction * 1000), 1000, p.describe()),
                                  person=ui_queue.person(), on_wait=ui_queue.waiting(progress),
                                  label=ui_queue.run_label([req.prompt for req, _, _ in plan.to_generate]))
    except LimitError as exc:  # refused before any work: the message says why and when to try again
        st.error(md_literal(exc))
        st.stop()
    except (ModelUnavailableError, CacheError) as exc:
        refresh_cache_status()
        st.error(md_literal(exc))
        st.stop()
    refresh_cache_status()
    st.success(f"{totals.generated} images generated, {totals.reused} reused from the cache.")


def embed(cache: Cache, clip_key: str, images, get_clip, text: str = "Embedding images with CLIP"):
    """core.analysis.diversity.embed_set with a progress bar and Cancel while images are embedded (none when all are
    cached). Each embedded batch is committed at once, so a Cancel keeps what was done."""
    from core.analysis.diversity import embed_set

    missing = len(set(images.shas)) - len(cache.get_embeddings(clip_key, list(images.shas)))
    if not missing:
        return embed_set(cache, clip_key, images, get_clip)  # all cached: no bar, no button
    with working(text) as progress:
        # Each batch's forward pass takes a turn in the fair queue, like generation's batches.
        try:
            ticket = ui_queue.queue().submit(ui_queue.person(), missing, kind="embed", cost=EMBED_COST, label=text,
                                             batch=config.embed_batch_size(device().device))
        except LimitError as exc:
            st.error(md_literal(exc))
            st.stop()
        ticket.on_wait = ui_queue.waiting(progress)
        try:
            return embed_set(cache, clip_key, images, get_clip, progress=progress, lock=ticket)
        finally:
            ticket.close()


# An image embedded with CLIP costs about 1/1000 of an SD-Turbo image (4 steps at 512 px = 4 units of
# core.pipeline.engine.work_per_image): 4,600 vs 5 images/s on an H200 (bench/README.md). Only the queue's wait
# estimates use it.
EMBED_COST = 0.004


_PROJECTIONS: dict = {}  # (embeddings' sha256, shape, method) -> project_2d's answer, for every session
MAX_PROJECTIONS = 64


def projection(embeddings, method: str):
    """core.analysis.stats.project_2d, remembered for the process. t-SNE (tens of seconds for a few hundred points) runs
    in the background behind the elapsed time and a Cancel button; PCA takes milliseconds and runs here."""
    import hashlib

    from core.analysis.stats import project_2d

    key = (hashlib.sha256(embeddings.tobytes()).hexdigest(), embeddings.shape, method)
    if key not in _PROJECTIONS:
        if method == "tsne":
            value = in_background(lambda: project_2d(embeddings, method), f"Projecting {len(embeddings)} points "
                                  f"with t-SNE")
        else:
            value = project_2d(embeddings, method)
        while len(_PROJECTIONS) >= MAX_PROJECTIONS:
            _PROJECTIONS.pop(next(iter(_PROJECTIONS)))
        _PROJECTIONS[key] = value
    return _PROJECTIONS[key]


def in_background(fn, text: str):
    """fn() on a worker thread while the page shows the elapsed time and a Cancel button; its result (or its
    exception). For long core calls with no progress of their own (t-SNE): a Cancel stops the page at once, and
    the abandoned call's result is dropped. `fn` must not call Streamlit (it runs outside the script's thread)."""
    import time

    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: B036 - handed to the script's thread below
            out["error"] = exc

    worker = threading.Thread(target=run, name="ddl-background", daemon=True)
    start = time.monotonic()
    with working(text) as progress:
        worker.start()
        while worker.is_alive():
            elapsed = time.monotonic() - start
            progress(0, 1, f"{text}: {elapsed:.0f} s")  # a Cancel click stops the script here
            worker.join(0.25)
    if "error" in out:
        raise out["error"]
    return out["value"]


# -- page building blocks shared by the pages ------------------------------------------------------------------------
def in_range(value, low, high, fallback):
    """`value` if it is a number within [low, high], else `fallback` (NaN fails every comparison: fallback)."""
    try:
        return value if low <= value <= high else fallback
    except TypeError:
        return fallback


def pick(options: list, value, fallback) -> int:
    """The index of `value` in `options`, else of `fallback`: for widgets whose default comes from a link."""
    return options.index(value) if value in options else options.index(fallback)


def grid(previews: list[bytes], captions: list[str], per_row: int = 8) -> None:
    for row in range(0, len(previews), per_row):
        for col, preview, caption in zip(st.columns(per_row), previews[row : row + per_row],
                                         captions[row : row + per_row]):
            col.image(preview, caption=caption, width="stretch")
