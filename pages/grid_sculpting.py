"""Grid Sculpting: choose base models, an operator, α, β and a method; see the exact composed distribution.

Thin page: every computation is a call into ``sculpt_core`` (through the helpers and cached wrappers of
``sculpt_core.app.grid`` and ``sculpt_core.app.caches``); every figure comes from ``sculpt_core.domains.grid.viz``.
"""

from __future__ import annotations


import streamlit as st

from sculpt_core.app import caches as C
from sculpt_core.app import grid as G
from sculpt_core.app import grid_views as GV
from sculpt_core.app import grid_training as GT
from sculpt_core.app.exports import composition_meta, meta_title
from sculpt_core.app.navigation import ensure_app_navigation
from sculpt_core.app.widgets import operator_controls
from sculpt_core.core.operators import build_composition, composition_key
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.train_classifier import train_grid_classifier
from sculpt_core.domains.grid import viz as V

ensure_app_navigation()

ss = st.session_state
ss.setdefault("sculpt_session_models", {})  # name -> {"token", "model", "reward"}
ss.setdefault("sculpt_classifiers", {})  # (tokens, beta) -> {"token", "clf", "info"}

st.title("Grid Sculpting")
st.caption("Every heatmap is an exact distribution p[z0, z1] over the 32×32 grid: z0 (moves along dimension 0) "
           "on the vertical axis, z1 on the horizontal axis, the start state in the lower-left corner.")

zoo, manifest_error = C.zoo_names()
if manifest_error:
    st.error(f"The model zoo's manifest could not be read: {manifest_error}")
session_models: dict = ss["sculpt_session_models"]
available = list(zoo) + [n for n in session_models if n not in zoo]


def resolve(name: str):
    """(cache token, model) of a zoo or session model."""
    if name in session_models:
        entry = session_models[name]
        return entry["token"], entry["model"]
    return C.zoo_token(name), C.load_zoo_model(name)


# ----- page state: URL → widgets (once per session), defaults, pending selection -------------------
if "grid_qp_loaded" not in ss:
    url_state, url_warnings = G.parse_query(st.query_params.to_dict(), available)
    ss.update({"g_bases": url_state.bases, "g_op": url_state.op, "g_alpha": url_state.alpha,
               "g_labels": url_state.labels, "g_method": url_state.method, "g_u": url_state.u,
               "g_points": url_state.points, "g_beta_url": url_state.beta, "g_scale": url_state.scale,
               "g_fig": url_state.fig, "grid_qp_loaded": True})
    if url_state.weights:
        ss["g_weights"] = url_state.weights
    for warning in url_warnings:
        st.warning(warning)
defaults = {"g_bases": G.default_bases(available), "g_op": "hm", "g_alpha": 0.5, "g_labels": "1,2", "g_weights": "",
            "g_method": "oracle", "g_u": "exact", "g_points": 0, "g_scale": "shared", "g_fig": "image"}
for key, value in defaults.items():
    ss.setdefault(key, value)
GT.take_new_base(available)  # a model just trained joins the selection when there is room (else it asks below)
ss["g_bases"] = [b for b in ss["g_bases"] if b in available][:3]

# ----- controls (sidebar) -----------------------------------------------------------------------------
sb = st.sidebar
sb.header("Composition")
chosen = sb.multiselect("Base models (2–3)", available, key="g_bases", max_selections=3,
                        help="Zoo models and models trained in this session. Order matters: the first is p1.")
loaded = []
load_errors = []
for name in chosen:
    try:
        loaded.append(resolve(name))
    except SculptError as exc:
        load_errors.append(f"{name}: {exc}")
tokens = tuple(t for t, _ in loaded)
models = [m for _, m in loaded]
m = len(models)

operator_box = sb.container()  # the live fragment below draws the operator controls (op, labels, α) here

window = G.beta_window(models)
if window is not None:
    low, high, beta_default = window
    url_beta = ss.pop("g_beta_url", None)
    if url_beta is not None:
        ss["g_beta"] = url_beta
    if "g_beta" not in ss or not (low <= ss["g_beta"] <= high):
        if "g_beta" in ss:
            st.warning(f"β = {ss['g_beta']:g} is outside the range these models were trained on "
                       f"[{low:g}, {high:g}]; using β = {min(max(ss['g_beta'], low), high):g}.")
            ss["g_beta"] = min(max(ss["g_beta"], low), high)
        else:
            ss["g_beta"] = beta_default
    beta = sb.slider("β (base reward exponent, p_i ∝ R_i^β)", float(low), float(high), step=0.05, key="g_beta")
    beta = round(float(beta), 4)
else:
    beta = None
    if ss.pop("g_beta_url", None) is not None:
        st.warning("URL parameter beta ignored: the chosen base models are not β-conditioned.")
    sb.slider("β (base reward exponent, p_i ∝ R_i^β)", float(G.BETA_TRAIN_RANGE[0]), float(G.BETA_TRAIN_RANGE[1]), 1.0,
              step=0.05, disabled=True, key="g_beta_off")
    if models:
        sb.caption(G.fixed_betas_text(models))

method = sb.radio("Method", list(G.METHOD_CHOICES), format_func=G.METHOD_CHOICES.get, key="g_method")
if method in ("reaching", "compare"):
    u_source = sb.radio("Reaching probabilities u_i(s)", list(G.U_CHOICES), format_func=G.U_CHOICES.get, key="g_u",
                        horizontal=False)
else:
    u_source = ss.get("g_u", "exact")
n_points = sb.slider("Sampled points overlay (0 = off)", 0, G.POINTS_MAX, step=250, key="g_points")

# ----- what the controls mean ------------------------------------------------------------------------
for err in load_errors:
    st.error(f"Could not load {err}")
if not available:
    st.warning("No base models yet: the zoo is empty (assets missing). Train one below with "
               "'Train a base model', or build the zoo with `python -m sculpt_core zoo build-grid`.")
elif m < 2:
    st.info("Choose two or three base models in the sidebar to compose them.")

bases = None
if models and not load_errors:
    try:
        bases = G.cached_bases(tokens, beta, models)
    except SculptError as exc:
        st.error(str(exc))


# ----- classifier --------------------------------------------------------------------------------------
def current_classifier():
    """(classifier, token, note) for the chosen bases at this β, or (None, None, why not)."""
    key = (tokens, beta)
    trained = ss["sculpt_classifiers"].get(key)
    if trained is not None:
        return trained["clf"], trained["token"], f"trained in this session ({trained['info'].get('steps')} steps)"
    if all(n in zoo and n not in session_models for n in chosen):
        try:
            found = C.zoo_classifier(chosen)
        except SculptError as exc:
            return None, None, f"the shipped classifier could not be loaded: {exc}"
        if found is not None:
            clf, entry = found
            if beta is not None and window is not None and abs(beta - window[2]) > 1e-9:
                return None, None, (f"the shipped classifier was trained at β = {window[2]:g}, not β = {beta:g}; "
                                    "train one for this β below")
            return clf, "zooclf:" + "+".join(chosen) + f":{C.manifest_stamp()}", "shipped with the zoo"
    return None, None, "no classifier is shipped or trained for " + " + ".join(chosen) + (
        f" at β = {beta:g}" if beta is not None else "")


def classifier_panel(reason: str) -> None:
    """Explain that no classifier exists and offer to train one (progress bar)."""
    st.info(f"Classifier guidance needs a classifier for these bases: {reason}. Train one here (Algorithm A.1; "
            "a smaller network than the shipped classifiers, so expect a larger L1), or use the oracle — the "
            "composition a perfect classifier would reach.")
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    steps = c1.number_input("Classifier training steps", 10, 3000, G.CLASSIFIER_STEPS_DEFAULT, 10, key="clf_steps")
    if c2.button("Train a classifier for " + " + ".join(chosen), key="train_clf"):
        cfg = G.classifier_train_config(m, int(steps))
        bar = st.progress(0.0, text="Training the classifier…")

        def progress(step: int, info: dict) -> None:
            elapsed = info.get("elapsed_s", 0.0)
            eta = elapsed / step * (cfg.steps - step)
            bar.progress(min(step / cfg.steps, 1.0),
                         text=f"step {step}/{cfg.steps} · terminal loss {info.get('loss_terminal', float('nan')):.3f}"
                              f" · {elapsed:.0f} s elapsed, about {eta:.0f} s left")

        try:
            clf, info = train_grid_classifier(models, cfg, progress=progress, beta=beta)
        except SculptError as exc:
            st.error(f"Classifier training failed: {exc}")
            return
        ss["sculpt_classifiers"][(tokens, beta)] = {"token": G.new_token("clf"), "clf": clf,
                                                    "info": {"seconds": info.get("seconds"), "steps": cfg.steps}}
        st.rerun()


# ----- results: a fragment, so an operator or α move reruns only this part ---------------------------------------
def compose_view(composition, computing, meth: str, u: str, clf=None, clf_token=None) -> G.ComposeView:
    if G.is_sampled(meth, u):  # the slow views: sampled in chunks behind a progress bar, the previous view kept
        return G.cached_sampled_compose(tokens, beta, composition_key(composition), G.TRAJECTORY_SAMPLES, bases,
                                        composition, progress=computing)
    return G.cached_compose(tokens, beta, composition_key(composition), meth, u, clf_token,
                            G.TRAJECTORY_SAMPLES, bases, composition, clf)


def safe_view(composition, computing, meth: str, u: str, clf=None, clf_token=None) -> G.ComposeView | None:
    try:
        return compose_view(composition, computing, meth, u, clf, clf_token)
    except SculptError as exc:
        st.error(f"{G.METHOD_CHOICES.get(meth, meth)}: {exc}")
    except Exception as exc:  # never a traceback in the page
        st.error(f"{G.METHOD_CHOICES.get(meth, meth)} failed unexpectedly ({type(exc).__name__}: {exc}).")
    return None


def show_compare_all(composition, op: str, scale: str, computing) -> None:
    """Every method side by side (oracle, classifier when there is one, reaching, ensemble)."""
    clf, clf_token, clf_note = current_classifier()
    runs = [("oracle", "exact", None, None)]
    not_applicable = G.method_note("classifier", composition, clf)
    if clf is not None and not_applicable is None:
        runs.append(("classifier", "exact", clf, clf_token))
    runs += [("reaching", u_source, None, None), ("ensemble", "exact", None, None)]
    views = [v for v in (safe_view(composition, computing, *r) for r in runs) if v is not None]
    computing.clear()
    if views:
        meta = composition_meta(chosen, op, composition, beta, "compare", u=u_source)
        fig, panels = GV.show_compare(views, scale, meta)
        GV.show_downloads(views[0].p, {**meta, "method": views[0].method}, lambda: fig, panels, scale,
                          title=meta_title(meta))
    if not_applicable is not None:
        st.caption(not_applicable)
    elif clf is None:
        st.caption(f"Classifier guidance left out: {clf_note}.")
        with st.expander("Train a classifier to add classifier guidance to the comparison"):
            classifier_panel(clf_note)


def show_method(composition, op: str, scale: str, computing, clf=None, clf_token=None, clf_note: str = "") -> None:
    """The chosen method's composed distribution beside its targets, its L1 cards and downloads."""
    if method == "classifier":
        if (not_applicable := G.method_note("classifier", composition, clf)) is not None:
            computing.clear()
            st.info(not_applicable)  # a method that cannot express this composition: a note, not an error
            return
        if clf is None:
            classifier_panel(clf_note)
            return
        st.caption(f"Classifier: {clf_note}.")
    view = safe_view(composition, computing, method, u_source, clf, clf_token)
    computing.clear()
    if view is None:
        return
    meta = composition_meta(chosen, op, composition, beta, method, u=u_source if method == "reaching" else None)
    c1, c2, c3 = st.columns(3)
    c1.metric("L1 to target", G.fmt(view.l1), border=True,
              help="Exact L1 between the composed distribution and the target built from the same "
                   "(learned) base models: the error of the composition method itself.")
    c2.metric("L1 to true target", G.fmt(view.l1_true), border=True,
              help="L1 to the target built from the true rewards (includes the base models' own error).")
    if view.delta is not None:
        c3.metric("distortion δ range", G.delta_range_text(view.delta), border=True,
                  help="δ(x) = u_M(x)/N_M(x); 1 everywhere means no distortion.")
    else:
        c3.metric("L1 target vs true target", G.fmt(view.l1_bases), border=True,
                  help="How far the target built from the learned bases is from the true one: the part of "
                       "the error that comes from the base models, not from the composition method.")
    title = view.label + (f" · histogram of {view.n_samples} samples" if view.sampled else " · exact")
    panels = [(V.l1_title(title, view.l1), view.p), ("target (learned bases)", view.target)]
    if view.true_target is not None:
        panels.append(("true target (rewards)", view.true_target))
    points = None
    if n_points and view.log_pf is not None:
        points = G.cached_points(tokens, beta, composition_key(composition), method, u_source, clf_token,
                                 int(n_points), bases, view.log_pf)
    elif n_points and view.sampled:
        st.caption("Sample overlay: this histogram is itself made of samples.")
    GV.show_figure(panels, scale, meta, points, ss.get("g_fig", "image"), "fig_composed")
    if view.sampled:
        st.caption(f"Trajectory-product u cannot be tabulated: the composed panel is a Monte-Carlo "
                   f"histogram of {view.n_samples} sampled trajectories, so its L1 includes sampling noise.")
    if view.delta is not None:
        with st.expander("Distortion δ(x) of reaching mixing", expanded=False):
            st.plotly_chart(V.delta_figure(view.delta), width="stretch", theme=None, key="fig_delta")
            st.caption("Reaching mixing samples p_M(x) = δ(x)·G(p_1(x), …), G the operator's combination: "
                       "where δ is constant the composition is exact. Colours show log10 δ (white: δ = 1).")
    GV.show_downloads(view.p, meta, lambda: GV.single_figure(panels, scale, meta, points), panels, scale,
                      points=points)


@st.fragment
def live_composition() -> None:
    """The operator controls (drawn into the sidebar's operator box), the URL and every result that depends on
    them. Moving α, the operator, the labels or the weights reruns this fragment only: the base models and the
    training form below stay as they are (the bases, β, the method and the colour scale rerun the whole page)."""
    op, alpha_ok, alpha = operator_controls(operator_box, "g", m)
    if op != op_of_full_run:  # the training form's "replace a base" offer depends on the operator: redraw it all
        st.rerun()
    G.cancel_prefetch()  # the previous view's neighbours: this run computes a view of its own
    url_query = G.GridPageState(list(chosen), op, float(ss["g_alpha"]), beta, ss.get("g_labels", "1,2"),
                                ss.get("g_weights", ""), method, u_source, int(n_points),
                                ss.get("g_scale", "shared"), ss.get("g_fig", "image")).to_query()
    if st.query_params.to_dict() != url_query:  # the view lives in the URL, so it can be shared
        st.query_params.from_dict(url_query)
    if m < 2:
        return
    try:
        composition = build_composition(op, m, float(alpha) if alpha_ok else None, ss.get("g_labels", ""),
                                        ss.get("g_weights", ""))
    except SculptError as exc:
        st.error(f"Operator undefined for the chosen models: {exc}")
        return
    if bases is None:
        return
    st.markdown(f"**Target:** {composition.describe()}  `{composition.formula()}`")
    computing = GV.StaleWhileComputing()  # the previous view stays, marked stale, while a new one is sampled
    scale = ss.get("g_scale", "shared")
    if method == "compare":
        show_compare_all(composition, op, scale, computing)
        return
    clf, clf_token, clf_note = current_classifier() if method == "classifier" else (None, None, "")
    show_method(composition, op, scale, computing, clf, clf_token, clf_note)
    if alpha_ok and (clf is not None or method != "classifier") \
            and G.method_note(method, composition, clf) is None:  # the next arrow-key step, composed meanwhile
        G.prefetch_alpha_neighbours(tokens, beta, bases, op, alpha, ss.get("g_labels", ""), ss.get("g_weights", ""),
                                    method, u_source, clf, clf_token, int(n_points))


if bases is not None and m >= 2:  # outside the fragment: the scale colours the base models too
    scale_col, figure_col = st.columns(2)
    GV.scale_control("g_scale", scale_col)
    GV.figure_mode_control("g_fig", figure_col, disabled=method == "compare")
op_of_full_run = ss.get("g_op")
live_composition()

# ----- base models -------------------------------------------------------------------------------------------
if bases is not None:
    st.subheader("Base models")
    dists, targets = G.cached_base_panels(tokens, beta, bases)
    GV.show_bases([mod.name for mod in models], dists, targets, ss.get("g_scale", "shared"),
                  "sculpt_grid_bases_" + "+".join(chosen) + (f"_b{beta:g}" if beta is not None else ""))
    st.caption(" · ".join(f"p{i + 1} = {mod.name} (reward {mod.meta.get('reward', '?')}, β = {bases.betas[i]:g}, "
                          f"exact L1 to its target at this β {G.base_l1_text(dists[i], targets[i])})"
                          for i, mod in enumerate(models)))

# ----- train a base model -----------------------------------------------------------------------------------
GT.training_section(available, session_models)
