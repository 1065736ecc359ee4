"""The request protocol's Streamlit side (core.pipeline.params is the other): every analysis page reads its request
from the URL or the session's last one, offers the same model pickers and the same natural-reference picker,
stops on the same sentences and writes its URL back the same way.

    url_req = form.url_request(RunRequest, PAGE)      # the link, a warning per value it sets wrongly
    req, submitted = form.run_request(PAGE, url_req, text_prefix="div_", keep=VIEW_PARAMS)
    #   the pickers and the form; then checked (form.stop_on: one sentence per fault, the same on every page);
    #   on Generate the URL becomes the request (form.write_url) and the session remembers it
    synthetic = form.cached_set(req, ui.runs([req], generate=submitted)[0].images)
    reference = form.reference_picker(PAGE, req.prompt, len(synthetic))  # natural photos, the same on every page

Pages with another request (class lists, Stable Bias, Ambiguity) use the same pieces: url_request,
generator_picker / clip_picker inside their own form, stop_on, write_url.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import streamlit as st

from app import ui
from core.analysis.diversity import ImageSet, natural_set, synthetic_set
from core.pipeline import config
from core.pipeline.cache import CacheError
from core.pipeline.generate import RunRequest, request_warnings, validate_request
from core.pipeline.local import all_clip_models, all_generators, generator_preset
from core.pipeline.natural import DownloadError, download_reference_set, reference_sources, store_upload
from core.pipeline.registry import GeneratorPreset
from core.present.markup import md_literal

NO_REFERENCE = "none"


# -- the URL ---------------------------------------------------------------------------------------------------------
def remember_url(page_key: str) -> None:
    """Keep this session's settings: switching pages clears the URL, coming back restores it."""
    st.session_state[f"{page_key}_url"] = st.query_params.to_dict()


def url_request(request_type, page_key: str, marker: str = "prompt"):
    """The request the URL holds (or, when the URL holds none, the one this page last ran in this session), with a
    warning per value the link sets wrongly. None: nothing asked yet."""
    saved = st.session_state.get(f"{page_key}_url")
    if marker not in st.query_params and saved:
        st.query_params.from_dict(saved)
    req, problems = request_type.from_params(st.query_params.to_dict())
    for problem in problems:
        st.warning(md_literal(problem))  # they quote the link's values
    return req


def write_url(params: dict[str, str], page_key: str, keep: Sequence[str] = ()) -> None:
    """The URL becomes the request that runs, plus the page's view parameters in `keep`."""
    extra = {k: st.query_params[k] for k in keep if k in st.query_params}
    st.query_params.from_dict({**params, **extra})
    remember_url(page_key)


def stop_on(problems: Sequence[str]) -> None:
    """Each problem as an error (it says what to change), then stop the page; nothing when there are none."""
    for problem in problems:
        st.error(md_literal(problem))
    if problems:
        st.stop()


# -- the models ------------------------------------------------------------------------------------------------------
def generators(current: str | None = None) -> dict[str, GeneratorPreset]:
    """The registry's generators, the model folders on this machine, and a folder a link names (already checked by
    the request's reader: core.pipeline.generate.generator_key)."""
    options = all_generators()
    if current and current not in options:
        try:
            options[current] = generator_preset(current)
        except (KeyError, ValueError):
            pass
    return options


def generator_picker(current: str, *, container=st) -> tuple[str, GeneratorPreset]:
    """The generator selectbox (every page the same: registry models and local folders) and its note."""
    options = generators(current)
    keys = list(options)
    key = container.selectbox("Generator", keys, index=ui.pick(keys, current, keys[0]),
                              format_func=lambda k: options[k].label, key="generator")
    container.caption(options[key].note)
    return key, options[key]


def clip_picker(current: str, *, container=st) -> str:
    options = all_clip_models()
    keys = list(options)
    return container.selectbox("CLIP model", keys, index=ui.pick(keys, current, keys[0]),
                               format_func=lambda k: options[k].label, key="clip")


def run_request(page_key: str, url_req: RunRequest | None, *, text_prefix: str, settings_prefix: str | None = None,
                keep: Sequence[str] = ()) -> tuple[RunRequest, bool]:
    """The one-prompt form of the Diversity and Adherence pages: generator, prompt, the run's settings, negative
    prompt, CLIP model. Returns (the checked request, whether Generate was pressed); stops the page with a message
    when there is nothing to run or the request has problems. `text_prefix` / `settings_prefix`: the widgets' keys
    (stable, so a written URL does not replace them)."""
    base = url_req or RunRequest(prompt="a photo of a tench", generator=ui.selected_generator())
    gen_key, preset = generator_picker(base.generator)
    with st.form(f"{page_key}-run"):
        # Widget defaults come from the URL, clamped into each widget's range (a tampered link must not crash the
        # form); the request itself is validated below and its problems shown. No max_chars: the browser would drop
        # a longer paste without a word; validate_request says what is wrong.
        prompt = st.text_input("Prompt", value=base.prompt, key=f"{text_prefix}prompt")
        n, steps, guidance, size, first_seed = run_settings_inputs(
            base, preset, base.generator == gen_key,
            key_prefix=text_prefix if settings_prefix is None else settings_prefix)
        negative = st.text_input("Negative prompt (optional)", value=base.negative_prompt, key=f"{text_prefix}negative")
        clip_choice = clip_picker(base.clip)
        submitted = st.form_submit_button("Generate", type="primary")
    ui.remember_selection(gen_key, clip_choice)
    req = url_req
    if submitted:
        req = RunRequest(prompt, n, gen_key, steps, guidance, size, first_seed, negative, clip_choice)
    if req is None:
        st.info("Type a prompt and press Generate.")
        st.stop()
    req = checked_run(req)
    if submitted:
        write_url(req.to_params(), page_key, keep)
    remember_url(page_key)
    return req, submitted


def cached_set(req: RunRequest, images) -> ImageSet:
    """The run's cached images as a set. When some are missing, say how many and how to make them; when none are
    there yet, stop the page (nothing to analyse)."""
    if len(images) < req.n:
        st.warning(f"{len(images)} of {req.n} images are in the cache. Press Generate to make the other "
                   f"{req.n - len(images)} (the cached ones are reused).")
    if not images:
        st.stop()
    return synthetic_set(images)


def checked_run(req: RunRequest) -> RunRequest:
    """`req` with its generator's defaults, or the page stops on its problems; warnings (a prompt longer than the
    text encoder reads) are shown and the run goes on."""
    preset = generator_preset(req.generator)  # a key the reader or the picker has checked: no folder scan
    req = req.with_preset_defaults(preset)
    stop_on(validate_request(req, preset))
    for warning in request_warnings(req):
        st.warning(md_literal(warning))
    return req


def run_settings_inputs(base: RunRequest, preset, same_generator: bool, *, key_prefix: str = "",
                        n_label: str = "Images (N)") -> tuple[int, int, float, int, int]:
    """N, steps, guidance, size and first seed as one row of inputs (call inside the page's form).

    Defaults come from a link: each is clamped into its widget's range (a tampered link must not crash the form);
    the request itself is validated by the page, which shows its problems."""
    from core.pipeline.generate import MAX_IMAGES, MAX_SIZE, MIN_SIZE

    c1, c2, c3, c4, c5 = st.columns(5)
    n = c1.number_input(n_label, 1, MAX_IMAGES, ui.in_range(base.n, 1, MAX_IMAGES, 16), key=f"{key_prefix}n")
    steps = c2.number_input("Steps", 1, preset.max_steps,
                            ui.in_range(base.steps if same_generator and base.steps else preset.default_steps, 1,
                                     preset.max_steps, preset.default_steps), key=f"{key_prefix}steps-{preset.key}")
    guidance = c3.number_input(
        "Guidance", 0.0, 30.0, float(ui.in_range(base.guidance if same_generator and base.guidance is not None
                                              else preset.default_guidance, 0.0, 30.0, preset.default_guidance)),
        step=0.5, key=f"{key_prefix}guidance-{preset.key}", disabled=not preset.supports_guidance,
        help=None if preset.supports_guidance else "This model ignores classifier-free guidance.")
    size = c4.number_input("Size (px)", MIN_SIZE, MAX_SIZE,
                           ui.in_range(base.size if same_generator and base.size else preset.default_size, MIN_SIZE,
                                    MAX_SIZE, preset.default_size),
                           step=preset.size_multiple, key=f"{key_prefix}size-{preset.key}")
    first_seed = c5.number_input("First seed", 0, 2**31 - 1, ui.in_range(base.first_seed, 0, 2**31 - 1, 0),
                                 key=f"{key_prefix}seed")
    return int(n), int(steps), float(guidance), int(size), int(first_seed)


# -- the natural reference -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """The natural photos a page compares with: `natural` (None: no reference chosen, or none usable yet), drawn
    from `available` photos of `class_name` in `source_id`."""

    source_id: str
    class_name: str | None = None
    natural: ImageSet | None = None
    available: int = 0
    classes: tuple[str, ...] = ()  # every class of the source


def reference_picker(page_key: str, prompt: str, n_synthetic: int, *, label: str = "Natural photos from",
                     default: str | None = None, widget_prefix: str = "") -> Reference:
    """Choose a natural-photo source and class (URL parameters `ref`, `ref_class`), with every source the error
    messages name: no reference, Imagenette (offered for download), the DDL_NATURAL_ROOTS folders, photos uploaded
    here, a demo pack's photos. Returns the sample of as many photos as there are synthetic images (fixed seed).
    `widget_prefix`: the page's keys for the two selectboxes (default '<page_key>_')."""
    sources = reference_sources(config.cache_dir(), config.natural_roots())
    source_ids = [NO_REFERENCE, *sources]
    wanted = st.query_params.get("ref")
    if wanted is not None and wanted not in source_ids:
        st.warning(f"The link's natural-photo source '{md_literal(wanted)}' is not on this machine: choose one "
                   f"below.")
        wanted = None
    wanted_default = default if default in source_ids else NO_REFERENCE
    if wanted is None:
        wanted = wanted_default
    keys = widget_prefix or f"{page_key}_"
    ref_id = st.selectbox(label, source_ids, index=source_ids.index(wanted), key=f"{keys}ref",
                          format_func=lambda k: "no natural photos" if k == NO_REFERENCE else sources[k][0])
    if ref_id == NO_REFERENCE:
        if wanted_default == NO_REFERENCE:
            st.query_params.pop("ref", None)
        else:  # the page's default is a source: the URL must say that none was chosen
            st.query_params["ref"] = NO_REFERENCE
        st.query_params.pop("ref_class", None)
        return Reference(ref_id)
    st.query_params["ref"] = ref_id
    folder = sources[ref_id][1]
    if ref_id == "imagenette" and not folder.root.is_dir():
        offer_imagenette(folder.root.parent)
        return Reference(ref_id)
    if ref_id == "uploads":
        _offer_uploads(folder.root)
    try:
        classes = folder.classes()
    except (FileNotFoundError, ValueError) as exc:
        st.info(md_literal(exc))
        return Reference(ref_id)
    if not classes:
        return Reference(ref_id)
    url_class = st.query_params.get("ref_class")
    if url_class is not None and url_class not in classes:
        st.warning(f"The link's class '{md_literal(url_class)}' is not in this folder: choose one below.")
    guess = next((c for c in classes if c.replace("_", " ").lower() in prompt.lower()), classes[0])
    ref_class = st.selectbox("Class", classes, index=ui.pick(classes, url_class, guess), key=f"{keys}ref_class")
    st.query_params["ref_class"] = ref_class
    photos, skipped = folder.scan(ref_class)
    if skipped:
        with st.expander(f"{len(skipped)} file(s) in '{md_literal(ref_class)}' were left out"):
            for message in skipped:
                st.text(message)  # names files: plain text
    if not photos:
        st.warning(f"The class '{md_literal(ref_class)}' has no usable images.")
        return Reference(ref_id, ref_class, classes=tuple(classes))
    return Reference(ref_id, ref_class, natural_set(photos, n=n_synthetic), len(photos), tuple(classes))


IMAGENETTE_MISSING = "Imagenette (fast.ai's 10-class ImageNet subset, 160 px, about 100 MB) is not downloaded yet."


def offer_imagenette(target, intro: str = IMAGENETTE_MISSING) -> None:
    """Imagenette is not on this machine yet: say so (`intro`) and offer the download into `target`, with a progress
    bar, then rerun the page; a failed download leaves its message (what else to choose) and no empty bar."""
    st.info(intro)
    if st.button("Download Imagenette"):
        bar = st.progress(0.0)
        try:
            download_reference_set(target, progress=lambda f, msg: bar.progress(f, text=msg))
            st.rerun()
        except DownloadError as exc:
            bar.empty()  # no empty progress bar left behind the message
            st.error(md_literal(exc))


def _offer_uploads(root) -> None:
    with st.expander("Upload photos", expanded=not root.is_dir()):
        up_class = st.text_input("Class name for these photos", key="upload_class")
        files = st.file_uploader("Photos", accept_multiple_files=True, key="upload_files",
                                 type=["jpg", "jpeg", "png", "webp", "bmp"])
        if st.button("Add photos") and files:
            for f in files:
                try:
                    store_upload(root, up_class, f.getvalue())
                except (ValueError, CacheError) as exc:
                    st.error(md_literal(f"{f.name}: {exc}"))
