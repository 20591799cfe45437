"""Diffusion Sculpting: compose 2-D diffusion models (learned zoo models, exact Gaussian-mixture specs, your own
specs) and compare what each sampling method draws with the exact composed density.

Thin page: every computation is a call into ``sculpt_core`` (through ``sculpt_core.app.diffusion`` and
``sculpt_core.app.diffusion_state``); every figure comes from ``sculpt_core.domains.diffusion.viz``.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from sculpt_core.app import diffusion as D
from sculpt_core.app import diffusion_state as S
from sculpt_core.app.exports import composition_meta, csv_with_meta, meta_stem
from sculpt_core.app.grid_figures import readable_loss_axes
from sculpt_core.app.navigation import ensure_app_navigation
from sculpt_core.app.widgets import operator_controls
from sculpt_core.core.operators import composition_key
from sculpt_core.domains.diffusion import viz as V
from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS
from sculpt_core.errors import SculptError

ensure_app_navigation()
STEM = "sculpt_diffusion"  # downloads: sculpt_diffusion_<bases>_<operator>_y…_a…_<method>_…
PAGE_START = time.perf_counter()

ss = st.session_state
ss.setdefault("sculpt_diffusion_specs", {})  # name -> spec dictionary (added in the page or from the URL)
ss.setdefault("sculpt_diffusion_models", {})  # name -> {"token", "model"} (trained in the page)
ss.setdefault("sculpt_diffusion_classifiers", {})  # (base tokens, labels) -> {"token", "clf"}
user_specs: dict = ss["sculpt_diffusion_specs"]
trained: dict = ss["sculpt_diffusion_models"]

st.title("Diffusion Sculpting")
st.caption("Densities on the square [−L, L]² as probability per bin (40 × 40 bins), x to the right and y up. "
           "Bases are 2-D Gaussian mixtures, so every composed density is exact; the samples come from the "
           "reverse VE SDE (σ = 25) driven by the chosen method's score.")

zoo, zoo_error = D.zoo_names()
if zoo_error:
    st.error(f"The model zoo's manifest could not be read: {zoo_error}")
METHODS = D.methods()

# ----- page state: URL → widgets (once per session), defaults, a pending new base ----------------------
if "diff_qp_loaded" not in ss:
    url, url_warnings = S.parse_query(st.query_params.to_dict(), zoo, METHODS, trained)
    user_specs.update(url.specs)
    ss.update({"d_bases": url.bases, "d_op": url.op, "d_alpha": url.alpha, "d_labels": url.labels,
               "d_gamma": url.gamma, "d_method": url.method, "d_n": url.n, "d_steps": url.steps, "d_seed": url.seed,
               "d_model": url.model, "d_sampler": url.sampler, "d_prior": url.prior, "d_extent": url.extent,
               "diff_qp_loaded": True})
    if url.weights:
        ss["d_weights"] = url.weights
    for warning in url_warnings:
        st.warning(warning)
available = S.catalogue(zoo, user_specs, trained)
for key, value in {"d_bases": S.default_bases(zoo), "d_op": "hm", "d_alpha": 0.5, "d_labels": "1,2", "d_gamma": 1.0,
                   "d_method": "oracle", "d_n": S.DEFAULT_N, "d_steps": S.DEFAULT_STEPS, "d_seed": 0, "d_model": 1,
                   "d_sampler": "em", "d_prior": "gaussian", "d_extent": S.DEFAULT_EXTENT, "d_emd": False}.items():
    ss.setdefault(key, value)
if ss["d_method"] not in [*METHODS, S.COMPARE]:
    ss["d_method"] = "oracle"
pending = ss.pop("d_pending_base", None)
if pending in available:
    ss["d_bases"] = S.with_new_base(ss["d_bases"], pending, ss.get("d_op"))
ss["d_bases"] = [b for b in ss["d_bases"] if b in available][:3]

# ----- controls (sidebar) ---------------------------------------------------------------------------------
sb = st.sidebar
sb.header("Composition")
chosen = sb.multiselect("Bases (2–3)", available, key="d_bases", max_selections=3, format_func=S.base_label,
                        help="Zoo models use their learned score (the oracle always uses the exact one); exact specs "
                             "and your own specs use the closed-form score. Order matters: the first is p1.")
bases: list[D.Base] = []
load_errors = []
for ident in chosen:
    try:
        bases.append(D.resolve(ident, user_specs, trained))
    except SculptError as exc:
        load_errors.append(f"{S.base_label(ident)}: {exc}")
m = len(bases)
op, alpha_ok, alpha = operator_controls(sb, "d", m)
gamma = sb.slider("γ (guidance scale on ∇ log Q(y | x_t))", *S.GAMMA_RANGE, step=0.05, key="d_gamma",
                  help="Scales the label-posterior gradient of guided methods (oracle, classifier). γ = 1 is exact.")
method = sb.radio("Method", [*METHODS, S.COMPARE], format_func=D.method_label, key="d_method")
if method == "base":
    ss["d_model"] = min(max(int(ss["d_model"]), 1), max(m, 1))
    model_index = sb.selectbox("Which base", list(range(1, max(m, 1) + 1)), key="d_model",
                               format_func=lambda k: f"p{k} = {S.short_name(chosen[k - 1])}" if k <= len(chosen) else str(k))
else:
    model_index = int(ss.get("d_model", 1))
sb.header("Live view")
n = sb.number_input("Particles", *S.N_RANGE, step=100, key="d_n",
                    help="Fewer particles answer faster; the L1 noise floor grows as 1/√n.")
steps = sb.number_input("Reverse-time steps", *S.STEPS_RANGE, step=10, key="d_steps")
seed = sb.number_input("Seed", 0, S.SEED_MAX, step=1, key="d_seed")
with sb.expander("Sampler, prior, square"):
    sampler = st.selectbox("Sampler", list(S.SAMPLER_LABELS), format_func=S.SAMPLER_LABELS.get, key="d_sampler")
    prior = st.radio("Start at t = 1", list(S.PRIOR_LABELS), format_func=S.PRIOR_LABELS.get, key="d_prior")
    extent = st.slider("Half-width L of the square", *S.EXTENT_RANGE, step=0.5, key="d_extent")
    with_emd = st.checkbox("EMD to an exact sample (slower)", key="d_emd",
                           help=f"Exact optimal transport on {D.EMD_POINTS} points, with its floor: two exact samples.")

url_specs = {S.short_name(b): S.compact_spec(x.spec) for b, x in zip(chosen, bases) if b.startswith(S.USER_PREFIX)}
url_query = S.DiffusionPageState(list(chosen), op, float(ss["d_alpha"]), ss.get("d_labels", "1,2"),
                                 ss.get("d_weights", ""), float(gamma), method, int(n), int(steps), int(seed),
                                 int(model_index), sampler, prior, float(extent), url_specs).to_query()
if st.query_params.to_dict() != url_query:  # the view lives in the URL, so it can be shared
    st.query_params.from_dict(url_query)
settings = D.RunSettings(int(n), int(steps), sampler, int(seed), prior, float(gamma), int(model_index), float(extent))

# ----- the composition --------------------------------------------------------------------------------------
for err in load_errors:
    st.error(f"Could not load {err}")
if m < 2:
    st.info("Choose two or three bases in the sidebar to compose them.")
comp = None
if m >= 2 and not load_errors:
    try:
        comp = S.diffusion_composition(op, m, float(alpha) if alpha_ok else None, ss.get("d_labels", ""),
                                       ss.get("d_weights", ""))
    except SculptError as exc:
        st.error(f"Operator undefined for the chosen bases: {exc}")

exact = q = None
if comp is not None:
    key = (D.tokens(bases), composition_key(comp))
    try:
        exact = D.cached_exact(*key, [b.spec for b in bases], comp)
        q, q_info = D.cached_target(*key, float(extent), D.BINS, exact)
    except SculptError as exc:
        st.error(f"The composition has no exact density here: {exc}")
        exact = q = None

if bases and not load_errors:
    panels = []
    for i, b in enumerate(bases):
        try:
            panels.append((f"p{i + 1} = {S.short_name(b.ident)}", D.cached_base_density(b.token, float(extent),
                                                                                         D.BINS, b.spec)))
        except SculptError as exc:
            st.error(f"p{i + 1} = {b.label} has no density to show here: {exc}")
    if q is not None:
        st.markdown(f"**Target:** {comp.describe()}  `{comp.formula()}`")
        panels.append(("exact composed target", q))
    if q is not None and q_info.get("mass_in_square", 1.0) < 0.9:
        st.warning(f"Only {q_info['mass_in_square']:.1%} of the target's mass lies inside [−{extent:g}, {extent:g}]²: "
                   "the binned figures describe its tail. Widen the square under 'Sampler, prior, square'.")
    if panels:
        st.plotly_chart(V.density_row(panels, float(extent), height=290), width="stretch", theme=None,
                        key="fig_densities")
    st.caption(" · ".join(f"p{i + 1}: {b.label}, {b.spec.n_components} components" for i, b in enumerate(bases))
               + (f" · target mass inside the square {q_info['mass_in_square']:.4f}" if q is not None else ""))


# ----- results ---------------------------------------------------------------------------------------------------
def classifier_for() -> tuple[object, str | None, str]:
    return D.find_classifier(bases, comp, ss["sculpt_diffusion_classifiers"])


def classifier_panel() -> None:
    """Train a small guidance classifier for the chosen bases (progress bar); it joins the session's classifiers."""
    st.caption("A small time-conditioned classifier trained on the bases' own reverse trajectories (the diffusion "
               "analogue of Algorithm A.1); expect a larger L1 than the oracle, which is what a perfect one reaches.")
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    clf_steps = c1.number_input("Classifier training steps", 10, 5000, 500, 10, key="d_clf_steps")
    if c2.button("Train a classifier for " + " + ".join(S.short_name(b) for b in chosen), key="d_train_clf"):
        bar = st.progress(0.0, text="Training the classifier…")

        total = D.classifier_train_steps(int(clf_steps))

        def progress(step: int, info: dict) -> None:
            bar.progress(min(step / total, 1.0), text=f"step {step}/{total} · terminal loss "
                                                      f"{info.get('loss_terminal', float('nan')):.3f}")

        try:
            clf = D.train_classifier_here(bases, comp, int(clf_steps), progress)
        except SculptError as exc:
            st.error(f"Classifier training failed: {exc}")
            return
        ss["sculpt_diffusion_classifiers"][D.classifier_key(bases, comp)] = {"token": D.new_token("clf"), "clf": clf}
        st.rerun()


def safe_run(meth: str, clf=None, clf_token=None, s: D.RunSettings | None = None) -> D.DiffusionRun | None:
    try:
        return D.cached_run(bases, comp, meth, s or settings, q, clf, clf_token)
    except SculptError as exc:
        st.error(f"{D.method_label(meth)}: {exc}")
    except Exception as exc:  # never a traceback in the page
        st.error(f"{D.method_label(meth)} failed unexpectedly ({type(exc).__name__}: {exc}).")
    return None


def emd_pair(run: D.DiffusionRun) -> tuple[float | None, float | None]:
    if not with_emd:
        return None, None
    try:
        return (D.run_emd(run.x, exact, int(seed)),
                D.cached_emd_floor(D.tokens(bases), composition_key(comp), int(n), int(seed), exact))
    except SculptError as exc:
        st.error(f"EMD: {exc}")
        return None, None


def view_meta(meth: str) -> dict[str, str]:
    """The view's parameters for a download: CSV columns and the file name (γ only for the guided methods, the
    sampler settings only for samples; "target" is the exact composed density)."""
    sampled = {} if meth == "target" else {"n": int(n), "steps": int(steps), "sampler": sampler, "prior": prior,
                                           "seed": int(seed)}
    if meth == "base":
        sampled = {"model": f"p{int(model_index)}", **sampled}
    return composition_meta([S.short_name(b) for b in chosen], op, comp, None, meth,
                            gamma=f"{float(gamma):g}" if meth in ("oracle", "classifier") else None, **sampled)


def meta_csv(text: str, meta: dict[str, str]) -> str:
    """``text`` (a CSV with a header line) with the view's parameters as its first columns."""
    header, *rows = text.splitlines()
    return csv_with_meta(header.split(","), (r.split(",") for r in rows), meta)


def downloads(run: D.DiffusionRun | None) -> None:
    cols = st.columns(4)
    target = view_meta("target")
    cols[0].download_button("Density (NPY)", data=lambda: D.npy_bytes(q), file_name=meta_stem(STEM, target) + ".npy",
                            mime="application/octet-stream", on_click="ignore", key="dl_q_npy", width="stretch",
                            help="The exact composed target's probability per bin, q[ix, iy] (ix bins x).")
    cols[1].download_button("Density (CSV)", data=lambda: meta_csv(V.density_csv(q, float(extent)), target),
                            file_name=meta_stem(STEM, target) + ".csv", mime="text/csv", on_click="ignore",
                            key="dl_q_csv", width="stretch",
                            help="Columns: " + ", ".join(target) + ", then ix, iy, x, y, p (one row per bin).")
    if run is not None:
        meta = view_meta(run.method)
        cols[2].download_button(f"Samples (NPY, {len(run.x)} × 2)", data=lambda: D.npy_bytes(run.x),
                                file_name=meta_stem(STEM, meta) + ".npy", mime="application/octet-stream",
                                on_click="ignore", key="dl_x_npy", width="stretch")
        cols[3].download_button("Samples (CSV)", data=lambda: meta_csv(V.samples_csv(run.x), meta),
                                file_name=meta_stem(STEM, meta) + ".csv", mime="text/csv", on_click="ignore",
                                key="dl_x_csv", width="stretch",
                                help="Columns: " + ", ".join(meta) + ", then x, y (one row per particle).")


def metric_row(run: D.DiffusionRun, emd_value, emd_floor, s: D.RunSettings) -> None:
    c = st.columns(5)
    c[0].metric("binned L1", D.fmt(run.l1), border=True,
                help="L1 between the samples' histogram (inside the square) and the exact per-bin target.")
    c[1].metric("L1 noise floor", D.fmt(run.l1_floor), border=True,
                help=f"Mean L1 of {len(run.x)} exact draws from the same binned target: what a perfect sampler shows.")
    c[2].metric("L1 / floor", D.fmt(run.ratio, 2), border=True, help="≈ 1: as good as exact samples.")
    c[3].metric("EMD (floor)", "off" if emd_value is None else f"{emd_value:.3f} ({emd_floor:.3f})", border=True,
                help="Turn on under 'Sampler, prior, square'." if emd_value is None else
                "Exact OT to an exact sample; the floor is the EMD between two exact samples.")
    c[4].metric("sampling time", f"{run.seconds:.2f} s", border=True)
    st.caption(f"{len(run.x)} particles, {s.steps} {S.SAMPLER_LABELS[s.sampler]} steps, seed {s.seed}"
               f" · outside the square {run.frac_outside:.2%} · scores: "
               + ", ".join(f"p{i + 1} {s}" for i, s in enumerate(run.scores)))


ANSWER: dict = {}


def answered() -> None:
    """Record when this run first showed samples (the bench reads it: a preview counts)."""
    ANSWER.setdefault("ms", (time.perf_counter() - PAGE_START) * 1000)


def result_view(run: D.DiffusionRun, meth: str, s: D.RunSettings, preview: bool = False) -> None:
    """Metrics and the samples figure of one run (no widgets, so a preview can be drawn in the same place)."""
    emd_value, emd_floor = (None, None) if preview else emd_pair(run)
    metric_row(run, emd_value, emd_floor, s)
    title = D.method_label(meth) if meth != "base" else f"p{model_index} alone"
    st.plotly_chart(V.density_row([(f"{title}: samples over the target", q),
                                   (V.l1_title("histogram of the samples", run.l1, run.l1_floor), run.hist)],
                                  float(extent), shared_scale=True, height=380, points={0: run.x[:D.SHOW_POINTS]}),
                    width="stretch", theme=None, key=None if preview else "fig_samples")
    if preview:
        st.caption(f"Preview ({s.n} particles, {s.steps} steps) while the full run ({settings.n} particles, "
                   f"{settings.steps} steps) computes.")
    else:
        st.empty()  # the same number of elements as the preview, so the full view covers all of it


def show_single(meth: str) -> None:
    note = S.method_note(meth, comp)
    if note:
        st.info(note)
        downloads(None)
        return
    clf = clf_token = None
    if meth == "classifier":
        clf, clf_token, clf_note = classifier_for()
        if clf is None:
            st.info(f"Classifier guidance: {clf_note}.")
            with st.expander("Train a guidance classifier", expanded=True):
                classifier_panel()
            downloads(None)
            return
        st.caption(f"Classifier: {clf_note}.")
    if meth == "superdiff" and sampler != "em":
        st.info("SuperDiff tracks each base's density along an Euler–Maruyama path: pick that sampler.")
        return
    slot = st.empty()  # a quick preview of a slow guided run first, replaced by the full run
    quick = D.needs_preview(bases, comp, meth, settings, clf_token)
    if quick is not None:
        preview = safe_run(meth, clf, clf_token, quick)
        if preview is not None:
            with slot.container():
                result_view(preview, meth, quick, preview=True)
            answered()
    run = safe_run(meth, clf, clf_token)
    slot.empty()  # drop the preview's elements (a container drawn over a longer one would keep its tail)
    if run is None:
        return
    with slot.container():
        result_view(run, meth, settings)
    answered()
    if len(run.times):
        st.subheader("From noise to the composition")
        labels = [f"{t:.3f}" for t in run.times]
        if ss.get("d_t") not in labels:
            ss["d_t"] = labels[-1]
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        t_label = c1.select_slider("time t (1 = noise, ε = the composition)", labels, key="d_t")
        animate = c2.checkbox("Play as an animation", key="d_anim")
        k = labels.index(t_label)
        if animate:
            st.plotly_chart(V.animation_figure(run.snapshots, run.times, float(extent)), width="stretch", theme=None,
                            key="fig_anim")
        else:
            st.plotly_chart(V.snapshot_figure(run.snapshots[k], run.times[k], float(extent),
                                              q if run.times[k] < 0.2 else None), width="stretch", theme=None,
                            key="fig_snapshot")
        st.caption(f"{run.snapshots.shape[1]} of the particles after {len(run.times)} of the {settings.steps} steps "
                   "(the view zooms out while they are spread by the noise).")
    downloads(run)


def show_compare() -> None:
    runs: list[D.DiffusionRun] = []
    notes: list[str] = []
    for meth in [x for x in METHODS if x != "base"]:
        note = S.method_note(meth, comp)
        clf = clf_token = None
        if note is None and meth == "classifier":
            clf, clf_token, clf_note = classifier_for()
            note = None if clf is not None else f"Classifier guidance left out: {clf_note}."
        if note is None and meth == "superdiff" and sampler != "em":
            note = "SuperDiff left out: it needs the Euler–Maruyama sampler."
        if note:
            notes.append(note)
            continue
        run = safe_run(meth, clf, clf_token)
        if run is not None:
            runs.append(run)
    if runs:
        cols = st.columns(len(runs))
        rows = []
        for col, run in zip(cols, runs):
            emd_value, emd_floor = emd_pair(run)
            col.metric(f"{run.method}: L1 / floor", D.fmt(run.ratio, 2), border=True)
            col.caption(f"L1 {D.fmt(run.l1)} (floor {D.fmt(run.l1_floor)}) · {run.seconds:.2f} s"
                        + ("" if emd_value is None else f" · EMD {emd_value:.3f} (floor {emd_floor:.3f})"))
            row = {"method": D.method_label(run.method), "binned L1": round(run.l1, 4),
                   "L1 floor": round(run.l1_floor, 4), "L1 / floor": round(run.ratio, 3)}
            if emd_value is not None:
                row.update({"EMD": round(emd_value, 4), "EMD floor": round(emd_floor, 4)})
            rows.append({**row, "sampling seconds": round(run.seconds, 3)})
        panels = [("exact composed target", q)] + [(V.l1_title(r.method, r.l1), r.hist) for r in runs]
        st.plotly_chart(V.density_row(panels, float(extent), shared_scale=True, height=300), width="stretch",
                        theme=None, key="fig_compare")
        st.dataframe(rows, hide_index=True, width="stretch")
        answered()
    for note in notes:
        st.info(note)
    if "classifier" in METHODS and not any(r.method == "classifier" for r in runs):
        with st.expander("Train a classifier to add classifier guidance to the comparison"):
            classifier_panel()
    downloads(runs[0] if runs else None)


if comp is not None and q is not None:
    st.subheader("Samples: " + ("every method" if method == S.COMPARE else D.method_label(method)))
    if method == S.COMPARE:
        show_compare()
    else:
        show_single(method)
ss["d_answer_ms"] = ANSWER.get("ms")  # when this run first showed samples (None: it showed none)

# ----- your own base distribution ------------------------------------------------------------------------------
with st.expander("Add your own base (a Gaussian mixture)", expanded=False):
    st.caption("Weights are normalised; standard deviations in [0.05, 5]; means within ±10. "
               "JSON: {\"weights\": [...], \"means\": [[x, y], ...], \"stds\": [...]} or \"covs\": [[[a, b], [b, c]], ...].")
    spec_name = st.text_input("Name", key="d_spec_name", placeholder="my_spec")
    tab_table, tab_json = st.tabs(["Table", "JSON (paste or upload)"])
    with tab_table:
        rows = tab_table.data_editor(S.spec_rows(BUILTIN_SPECS["band"]), num_rows="dynamic", key="d_spec_table",
                                     width="stretch")
        add_table = st.button("Add the table's mixture", key="d_add_table")
    with tab_json:
        text = st.text_area("Spec JSON", key="d_spec_json", height=120)
        upload = st.file_uploader("…or a .json file (used instead of the text when given)", type=["json"],
                                  key="d_spec_upload")
        add_json = st.button("Add the JSON spec", key="d_add_json")
    if add_table or add_json:
        try:
            name = S.check_name(spec_name or "", [S.short_name(a) for a in available])
            if add_table:
                records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
                data, spec = S.spec_from_rows(records, name)
            else:
                source = upload.getvalue().decode("utf-8", errors="replace") if upload is not None else text
                data, spec = S.spec_from_json(source, name)
            user_specs[name] = S.compact_spec(spec)
            ss["d_pending_base"] = S.USER_PREFIX + name
            st.rerun()
        except SculptError as exc:
            st.error(f"Cannot add this spec: {exc}")

# ----- train a base model -------------------------------------------------------------------------------------------
last = ss.get("d_last_training")
with st.expander("Train a score model on a spec", expanded=last is not None and not last.get("seen", False)):
    if last is not None:
        st.success(f"Trained {last['name']} in {last['seconds']:.1f} s ({last['steps']} steps, score error "
                   f"{last['score_error']:.3f}); it is now among the bases.")
        if last["history"]:
            loss_steps, loss_values = zip(*last["history"])
            st.plotly_chart(readable_loss_axes(V.loss_curve(loss_steps, loss_values), loss_values),
                            width="stretch", theme=None, key="fig_loss_last")
        last["seen"] = True
    sources = [S.SPEC_PREFIX + s for s in BUILTIN_SPECS] + [S.USER_PREFIX + s for s in user_specs]
    with st.form("d_train", clear_on_submit=False):
        source = st.selectbox("Spec to learn", sources, format_func=S.base_label, key="d_train_spec")
        c1, c2, c3 = st.columns(3)
        train_steps = c1.number_input("Training steps", 10, 5000, D.TRAIN_STEPS_DEFAULT, 10, key="d_train_steps")
        train_seed = c2.number_input("Seed", 0, S.SEED_MAX, 0, key="d_train_seed")
        train_name = c3.text_input("Name", key="d_train_name", placeholder="automatic")
        submitted = st.form_submit_button("Train", type="primary")
    if submitted:
        try:
            spec = D.resolve(source, user_specs, trained).spec
            name = (train_name or "").strip() or next(f"{S.short_name(source)}_dsm{k}" for k in range(1, 10 ** 4)
                                                      if f"{S.short_name(source)}_dsm{k}" not in trained)
            name = S.check_name(name, [S.short_name(a) for a in available])
            total = D.train_settings(int(train_steps))[0]
            bar = st.progress(0.0, text="Training…")
            history: list[tuple[int, float]] = []

            def progress(step: int, info: dict) -> None:
                history.append((step, info["loss"]))
                bar.progress(min(step / total, 1.0), text=f"step {step}/{total} · DSM loss {info['loss']:.4f}")

            model = D.train_score_model(spec, int(train_steps), int(train_seed), name, progress)
            trained[name] = {"token": D.new_token(), "model": model}
            ss["d_pending_base"] = S.TRAINED_PREFIX + name
            ss["d_last_training"] = {"name": name, "seconds": model.meta["seconds"], "steps": model.meta["steps"],
                                     "score_error": model.meta.get("score_error", float("nan")), "history": history,
                                     "seen": False}
            st.rerun()
        except SculptError as exc:
            st.error(f"Cannot train: {exc}")

if user_specs:
    with st.expander("Your specs as JSON"):
        st.code(json.dumps(user_specs, indent=1), language="json")
