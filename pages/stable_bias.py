"""Stable Bias portraits: "Photo portrait of a {adjective} {profession}" for chosen adjectives and professions,
clustered hierarchically (12 / 24 / 48 clusters from one tree), read as a cluster-by-prompt table
(Luccioni et al., NeurIPS 2023; core.analysis.bias holds the method and says what is the paper's and what is the
lab's)."""

from dataclasses import asdict, replace

import numpy as np
import streamlit as st

from app import classes as uc
from app import form, ui
from app import report as ui_report
from core.analysis.bias import (
    ADJECTIVES,
    CUT_OPTIONS,
    DEFAULT_ADJECTIVES,
    DEFAULT_PROFESSIONS,
    EXEMPLARS,
    NO_ADJECTIVE,
    PROFESSIONS,
    PROMPT_START,
    BiasSpec,
    cluster_name,
    cluster_table,
    cluster_tree,
    clusters_reading,
    cut_tree_at,
    exemplars,
    is_nested,
    table_for_display,
    validate_bias_spec,
)
from core.analysis.diversity import synthetic_set
from core.pipeline.cache import key_of
from core.pipeline.generate import RunRequest
from core.pipeline.local import all_clip_models, generator_preset
from core.pipeline.models import ModelUnavailableError, clip_key
from core.present.charts import cluster_heatmap
from core.present.literature import PRESETS
from core.present.markup import md_literal
from core.present.report import generation_defaults, report_file_stem

PAGE = "stable_bias"
GENERATE = "Generate missing portraits and cluster"


@st.cache_data(show_spinner="Clustering...", max_entries=16)
def clusters_of(embeddings: np.ndarray, cuts: tuple[int, ...]) -> dict[int, np.ndarray]:
    return cut_tree_at(cluster_tree(embeddings), cuts)


def adjective_label(a: str) -> str:
    return "(no adjective)" if a == NO_ADJECTIVE else a


def report_settings(spec: BiasSpec, first, k: int) -> dict:
    """The run's settings for the report; `first`: a run's GenerationSettings (what 'the generator's default' was)."""
    defaults = {"steps": first.steps, "guidance": first.guidance, "size": first.width}
    return {"experiment": {**asdict(spec), "adjectives": ", ".join(map(adjective_label, spec.adjectives)),
                           "professions": ", ".join(spec.professions),
                           **{name: f"the generator's default ({used})" for name, used in defaults.items()
                              if getattr(spec, name) is None}},
            "prompts": spec.prompts(), "clusters shown (k)": k}


def lab_defaults(spec: BiasSpec, k: int, ks: list[int], exemplar_note: str) -> dict[str, str]:
    """Each setting of the run and whether it is the lab's default, with the lab's choices in the paper's preset."""
    subset = f"{', '.join(map(adjective_label, DEFAULT_ADJECTIVES))} x {', '.join(DEFAULT_PROFESSIONS)}"
    return {
        **generation_defaults(spec.requests()[0], generator_preset(spec.generator)),
        "generator": f"{spec.generator}: " + ("this page's default (the paper's preset)"
                                              if spec.generator == BiasSpec.generator else
                                              f"set for this run (this page's default is {BiasSpec.generator})"),
        "adjectives and professions": f"the lab's default subset, {subset}" if (spec.adjectives, spec.professions)
        == (DEFAULT_ADJECTIVES, DEFAULT_PROFESSIONS) else f"chosen for this run (the lab's default subset: {subset})",
        "clusters shown": f"k = {k}" + (" (the middle cut: the lab's default)" if k == ks[len(ks) // 2] else ""),
        "exemplars": exemplar_note, **uc.preset_lab_choices([PRESETS["luccioni2023"]])}


ui.start_page()
st.title("Stable Bias: who does the model draw for a job?")
st.markdown("Prompt the generator with *Photo portrait of a {adjective} {profession}*, embed every portrait with "
            "CLIP, and cluster them hierarchically: a profession whose portraits all land in one cluster is drawn "
            "as one kind of person, whatever the adjective. The method of Luccioni et al.; the clusters here are "
            "the lab's reading of it (see below).")

url_spec = form.url_request(BiasSpec, PAGE, marker="prof")
# A generator chosen in this session (here or on another page) carries over; a fresh visit starts from the paper's
# preset (BiasSpec's default), not from the lab-wide default, which the preset box would call a departure.
chosen_generator = st.session_state.get("generator") or st.session_state.get("selected_generator")
base = url_spec or BiasSpec(generator=chosen_generator if chosen_generator in form.generators()
                            else BiasSpec.generator)
preset_choice = uc.preset_picker(PAGE, base)
if preset_choice is not None:
    base = preset_choice.apply(base)
if preset_choice is None and not uc.literature_matches(base, PAGE):
    uc.show_citation(PRESETS["luccioni2023"], base)

gen_key, preset = form.generator_picker(base.generator)
with st.form("stable-bias"):
    c1, c2 = st.columns(2)
    adjectives = c1.multiselect("Adjectives", [NO_ADJECTIVE, *ADJECTIVES], default=list(base.adjectives),
                                format_func=adjective_label)
    professions = c2.multiselect("Professions", list(PROFESSIONS), default=list(base.professions))
    settings_base = RunRequest("", base.n, base.generator, base.steps, base.guidance, base.size, base.first_seed)
    n, steps, guidance, size, first_seed = form.run_settings_inputs(settings_base, preset, base.generator == gen_key,
                                                                  key_prefix="bias-",
                                                                  n_label="Images per prompt (N)")
    c3, c4 = st.columns(2)
    clip_choice = form.clip_picker(base.clip, container=c3)
    cuts = c4.multiselect("Numbers of clusters (cut from one tree)", list(CUT_OPTIONS),
                          default=[k for k in base.cuts if k in CUT_OPTIONS],
                          help="The paper's: 12, 24 and 48. Every cut needs more images than clusters.")
    submitted = st.form_submit_button(GENERATE, type="primary")
ui.remember_selection(gen_key, clip_choice)

spec = url_spec
if submitted:
    st.session_state.pop(uc.applied_preset_key(PAGE), None)
    spec = BiasSpec(tuple(adjectives), tuple(professions), int(n), gen_key, clip_choice, int(steps), float(guidance),
                    int(size), int(first_seed), tuple(sorted(int(k) for k in cuts)))
if spec is None:
    st.info(f"Choose adjectives and professions and press **{GENERATE}**. Portraits already in the cache are "
            f"reused; only missing ones are generated.")
    st.stop()
form.stop_on(validate_bias_spec(spec))
if submitted:
    form.write_url(spec.to_params(), PAGE, keep=("k",))
form.remember_url(PAGE)

# Generate what is missing (on the button), else analyse what the cache holds.
prompts = spec.prompts()
runs = ui.runs(spec.requests(), generate=submitted)
first = runs[0].settings
run_line = (f"**Run:** {len(prompts)} prompts x N = {spec.n} · {md_literal(generator_preset(spec.generator).label)} · "
            f"{md_literal(first.model_id)} @ {first.revision[:12]} · {first.steps} steps · "
            f"guidance {first.guidance:g} · "
            f"{first.width} px · seeds {spec.first_seed}-{spec.first_seed + spec.n - 1} · **CLIP:** "
            f"{md_literal(all_clip_models()[spec.clip].label)}. Adjectives, professions, N, generator and seeds: the "
            f"lab's defaults unless you chose them.")
# The page's output: each result is drawn once and recorded in the experiment report (drawn only when downloaded).
out = ui_report.start(f"Stable Bias: {', '.join(spec.professions)}", "Stable Bias portraits", PAGE)
out.caption(run_line)
uc.cite_presets(out, [PRESETS["luccioni2023"]], spec)  # the page shows it under its form
missing = sum(run.missing for run in runs)
if missing:
    st.warning(f"{missing} of {spec.n * len(runs)} portraits are not in the cache yet. Press **{GENERATE}** to "
               f"make them (cached ones are reused).")
images = [im for run in runs for im in run.images]
image_prompts = [run.request.prompt for run in runs for _ in run.images]
portraits = replace(synthetic_set(images), labels=[f"{p} · seed {im.seed}" for p, im in zip(image_prompts, images)])
if len(images) <= max(spec.cuts):
    if not missing:  # (with images missing, the warning above already says what to press)
        st.warning(f"The cache holds {len(images)} of these portraits; cutting into {max(spec.cuts)} clusters needs "
                   f"more than {max(spec.cuts)}. Press **{GENERATE}**.")
    st.stop()
bar = st.progress(0.0, text="Embedding the portraits with CLIP (cached embeddings are read, new ones computed)...")
try:
    emb = ui.embed(ui.cache(), clip_key(all_clip_models()[spec.clip]), portraits, lambda: ui.clip(spec.clip))
except (ModelUnavailableError, ValueError, OSError) as exc:
    bar.empty()
    st.error(md_literal(exc))
    st.stop()
bar.empty()

# Cluster: one Ward tree, cut at every chosen k.
labels_by_k = clusters_of(emb, spec.cuts)
ks = sorted(labels_by_k)
nested = all(is_nested(labels_by_k[a], labels_by_k[b]) for a, b in zip(ks, ks[1:]))
st.header("Clusters by prompt")
k = st.radio("Clusters", ks, horizontal=True, format_func=lambda v: f"{v} clusters",
             key=uc.bound(PAGE, "k", uc.url_choice("k", ks, ks[len(ks) // 2]), ",".join(map(str, ks))))
st.query_params["k"] = str(k)
form.remember_url(PAGE)
table = cluster_table(labels_by_k[k], image_prompts, prompts, k)
table_reading = f"**{md_literal(clusters_reading(table))}**"  # quotes prompts
out.heading(f"Clusters by prompt (k = {k})", 1, on_page=False)  # the page's heading stands above the radio
out.text(table_reading)
heatmap = cluster_heatmap(table, prompts)
out.chart(heatmap, key="bias_heatmap", width="stretch")
st.caption(f"Rows: the prompts, '{PROMPT_START.strip()}' left out; each cell: the share of the row's portraits in "
           f"that cluster (its colour and its number), the count in its tooltip and in the table below.")
shares = table.shares.map(lambda v: f"{v:.0%}")
# Full width, one under the other, headers without the prompts' common start: every prompt's column in view.
st.markdown(f"**Counts** (each prompt column sums to its images; '{PROMPT_START.strip()}' left out of the headers)")
st.table(table_for_display(table.counts))  # wraps: every prompt's column in view
# The report's copies of the two tables: with their full headers.
out.table(table.counts.rename_axis("cluster").reset_index(), "Counts (each prompt column sums to its images)",
          on_page=False)
st.markdown("**Shares** (of each prompt's images)")
st.table(table_for_display(shares))
out.table(shares.rename_axis("cluster").reset_index(), "Shares (of each prompt's images)", on_page=False)
method_note = (f"{len(images)} portraits: {len(prompts)} prompts x N = {spec.n}. Clusters: Ward linkage (scipy) "
               f"on L2-normalised CLIP image embeddings, one tree cut at {', '.join(map(str, ks))} clusters"
               f"{' (nested: each finer cluster lies inside one coarser cluster)' if nested else ''}; numbered by "
               f"size. The cuts 12 / 24 / 48 are the paper's; the features and the linkage are the lab's reading (the "
               f"paper's could not be re-checked). Clusters find what looks alike to CLIP: which of its directions "
               f"are gender, skin tone, age, clothing or background is for you to see in the exemplars below.")
out.caption(method_note)

out.heading(f"What each cluster looks like (k = {k})", 1)
jpegs = uc.thumbs(portraits, 128)
picks = exemplars(emb, labels_by_k[k], EXEMPLARS)
for c in range(k):
    rows = picks.get(c, np.zeros(0, int))
    column = table.counts.loc[cluster_name(c)].drop("all prompts")
    top = column.idxmax() if column.sum() else "-"
    line = (f"**{cluster_name(c)}** · {int(column.sum())} portraits · most from '{md_literal(top)}' "
            f"({int(column.max())})")
    exemplar_set = ([jpegs[i] for i in rows], [portraits.labels[i].replace("Photo portrait of a ", "") for i in rows])
    out.text(line).images(*exemplar_set, per_row=EXEMPLARS + 2)
exemplar_note = f"Up to {EXEMPLARS} portraits per cluster: those nearest the cluster's mean embedding (cosine)."
out.caption(exemplar_note)

out.settings(report_settings(spec, first, k))
out.provenance([run.settings for run in runs], all_clip_models()[spec.clip],
               clip_key(all_clip_models()[spec.clip]))
out.lab_defaults(lab_defaults(spec, k, ks, exemplar_note))
out.offer(report_file_stem(PAGE, key_of(spec.to_params())[:10], f"k{k}"))
