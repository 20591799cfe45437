"""Molecule Sculpting: compose the shipped fragment GFlowNets (sEH, SA, QED) and see what the composition samples.

Thin page: sampling, scoring and composing are calls into ``sculpt_core`` (through the cached wrappers of
``sculpt_core.app.molecules``); every figure comes from ``sculpt_core.domains.molecules.viz``.
"""

from __future__ import annotations

import streamlit as st

from sculpt_core.app import molecules as M
from sculpt_core.app import mol_figures as MF
from sculpt_core.app import prefetch as MP
from sculpt_core.app import mol_views as MV
from sculpt_core.app.mol_compare import paper_row, set_figures
from sculpt_core.app.exports import composition_meta, meta_stem, meta_title
from sculpt_core.app.grid_figures import export_config
from sculpt_core.app.navigation import ensure_app_navigation
from sculpt_core.app.widgets import operator_controls
from sculpt_core.core.operators import build_composition, composition_key
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.metrics import TABLE1_NAMES, TABLE1_THRESHOLDS
from sculpt_core.domains.molecules import viz as V

ensure_app_navigation()
ss = st.session_state

st.title("Molecule Sculpting")
st.caption("Fragment-based molecules (72 fragments, trees of at most 9) from β-conditioned GFlowNets trained on the "
           "sEH binding proxy, synthetic accessibility (SA) and drug-likeness (QED). Every figure is computed from "
           "the molecules sampled for this view; rewards are normalised as in the paper (sEH/8, (10−SA)/9, QED).")

zoo, manifest_error = M.mol_zoo()
if manifest_error:
    st.error(f"The model zoo's manifest could not be read: {manifest_error}")
if not zoo:
    st.warning("No molecule base models are shipped in the assets folder. Train one with "
               "`python -m sculpt_core mol train --reward seh --steps 3000 --out seh.pt`.")
    st.stop()

seh_reason = M.seh_reason()
if seh_reason is not None:  # said first, so it is read before anything samples
    message, detail = MF.seh_missing_text(seh_reason)
    st.warning(message)
    with st.expander("Why sEH is unavailable (details)"):
        st.code(detail, language=None)

# ----- page state: URL → widgets (once per session), then defaults ---------------------------------------------
if "mol_qp_loaded" not in ss:  # only what the URL names overrides the session (a bad value: its default)
    url_state, url_warnings = M.parse_query(st.query_params.to_dict(), zoo)
    ss.update({f"m_{key}": getattr(url_state, key) for key in M.URL_KEYS if key in st.query_params})
    if "beta" in st.query_params:
        ss["m_beta_url"] = url_state.beta
    axes_url, order_url, display_warnings = M.parse_display(st.query_params.to_dict())
    if axes_url != (None, None):  # applied where the KDE's axes are chosen, while the link's bases are shown
        ss["m_axes_url"] = (tuple(ss.get("m_bases", ())), axes_url)
    if order_url is not None:
        ss["m_order"] = order_url
    url_warnings += display_warnings
    ss["mol_qp_loaded"] = True
    for warning in url_warnings:
        st.warning(warning)
defaults = {"m_bases": M.default_mol_bases(zoo, seh_ok=seh_reason is None), "m_op": "hm", "m_alpha": 0.5, "m_labels": "1,2", "m_weights": "",
            "m_method": "reaching", "m_u": "trajectory", "m_scoring": "fast", "m_n": 64, "m_seed": 0,
            "m_beta": M.DEFAULT_BETA}
for key, value in defaults.items():
    ss.setdefault(key, value)
ss["m_bases"] = [b for b in ss["m_bases"] if b in zoo][:3]

# ----- controls (sidebar) ------------------------------------------------------------------------------------
sb = st.sidebar
sb.header("Composition")
chosen = sb.multiselect("Base models (2–3)", zoo, key="m_bases", max_selections=3,
                        help="Order matters: the first is p1 (label 1), the second p2, …")
models, load_errors = [], []
for name in chosen:
    try:
        models.append(M.load_mol(name))
    except SculptError as exc:
        load_errors.append(f"{name}: {exc}")
m = len(models)
def _moved(key: str):
    """on_change of a slider: it leads the prefetch (the next move is most likely the same slider)."""
    return lambda: ss.__setitem__("m_lead", key)


op, alpha_ok, alpha = operator_controls(sb, "m", m, on_alpha_change=_moved("alpha"))
window = None
if models and not load_errors:
    try:
        window = M.beta_window(models)
    except SculptError as exc:
        st.error(str(exc))
low, high = window if window is not None else (0.0, 96.0)
url_beta = ss.pop("m_beta_url", None)
if not low <= ss["m_beta"] <= high:
    if url_beta is not None and window is not None:
        st.warning(f"URL parameter beta={url_beta:g} is outside the range these models were trained on "
                   f"[{low:g}, {high:g}]; using β = {min(max(url_beta, low), high):g}.")
    ss["m_beta"] = min(max(ss["m_beta"], low), high)
beta = float(sb.slider("β (reward exponent of every base, p_i ∝ R_i^β)", float(low), float(high), step=1.0,
                       key="m_beta", disabled=window is None, on_change=_moved("beta")))
method = sb.radio("Method", list(M.MOL_METHODS), format_func=M.MOL_METHODS.get, key="m_method")
compare = method == "compare"
u_source, scoring = "trajectory", "fast"
if method in ("classifier", "compare"):
    scoring = sb.radio("Successor scoring (classifier)", list(M.MOL_SCORINGS), format_func=M.MOL_SCORINGS.get,
                       captions=M.MOL_SCORING_CAPTIONS, key="m_scoring")
if method in ("reaching", "compare"):
    u_source = sb.radio("Reaching probabilities u_i(s)", list(M.MOL_U_CHOICES), format_func=M.MOL_U_CHOICES.get,
                        captions=M.MOL_U_CAPTIONS, key="m_u")
    if u_source == "flow" and (flow_note := M.flow_fit_note(models, beta)) is not None:
        sb.info(flow_note[0].upper() + flow_note[1:] + ".", icon="ℹ️")
n = int(sb.select_slider("Molecules per view", options=list(M.N_CHOICES), key="m_n",
                         help="More molecules: smoother contours, slower reruns (measured in chromium on an idle "
                              "2-core machine, reaching at 64: an α move shows its first 16 molecules in about "
                              "0.2 s and all 64 in about 1.2 s)."))
seed = int(sb.number_input("Seed", 0, M.SEED_MAX, step=1, key="m_seed"))

url_query = M.MolPageState(list(chosen), op, float(ss["m_alpha"]), beta, ss.get("m_labels", "1,2"),
                           ss.get("m_weights", ""), method, ss.get("m_u", "trajectory"), ss.get("m_scoring", "fast"),
                           n, seed).to_query()
shown_display = {k: v for k, v in st.query_params.to_dict().items() if k in M.DISPLAY_KEYS}  # set at the end
if st.query_params.to_dict() != url_query | shown_display:  # the view lives in the URL, so it can be shared
    st.query_params.from_dict(url_query | shown_display)

for err in load_errors:
    st.error(f"Could not load {err}")
if m < 2:
    st.info("Choose two or three base models in the sidebar to compose them.")
    st.stop()
if load_errors or window is None:
    st.stop()

try:
    composition = build_composition(op, m, float(alpha) if alpha_ok else None, ss.get("m_labels", ""),
                                      ss.get("m_weights", ""))
except SculptError as exc:
    st.error(f"Operator undefined for the chosen models: {exc}")
    st.stop()

runs = list(M.COMPARE_METHODS) if compare else [method]
classifier, notes = None, {}
if "classifier" in runs:  # a method that does not apply is a neutral note with what to use instead
    not_applicable = M.method_note("classifier", composition)
    if not_applicable is None:
        classifier, clf_note = M.cached_classifier(chosen, beta)
        not_applicable = (f"Classifier guidance is not available here: {clf_note}. Reaching mixing needs no "
                          "classifier." if classifier is None else M.method_note("classifier", composition, classifier))
    if not_applicable:
        notes["classifier"] = not_applicable
        if not compare:
            st.info(not_applicable)
            st.stop()
    else:
        st.caption(f"Classifier: {clf_note}.")
active = [r for r in runs if r not in notes]

fingerprints = tuple(mod.fingerprint() for mod in models)
seh_ok = seh_reason is None
clf_token = M.classifier_token() if classifier is not None else None
st.markdown(f"**Target:** {composition.describe()}  `{composition.formula()}`  at β = {beta:g}")
progress_slot = st.empty()  # the stale note and the progress bar, always at this place
view_key = (fingerprints, beta, composition_key(composition), method, u_source, scoring, n, seed)
if ss.get("m_view_key") != view_key:  # this view first: the previous view's unstarted neighbours are dropped
    MP.prefetcher().cancel()
ss["m_view_key"] = view_key
specs = [MV.SetSpec(meth, fingerprints, models, composition, meth, u_source, scoring,
                    classifier if meth == "classifier" else None, clf_token) for meth in active]
specs += [MV.SetSpec(mod.name, (fp,), [mod], None, "base") for mod, fp in zip(models, fingerprints)]
# A set not sampled yet comes as its first batch (16 molecules) unless that was shown by the run before: the view
# is drawn from it at once, then grown to the full set (the prefetch thread; or this page's next run).
got, growing = MV.sample_view(specs, beta, n, seed, seh_ok, progress_slot, ss.get("m_shown"), url_query,
                              complete=ss.get("m_growing", ()))
ss["m_growing"] = growing
results = {meth: s for meth, s in zip(active, got) if s is not None}
base_sets = {mod.name: s for mod, s in zip(models, got[len(active):])}
lead = ss.get("m_lead", "alpha")
moved_by = float(alpha) - ss.get("m_alpha_shown", float(alpha)) if lead == "alpha" else beta - ss.get("m_beta_shown", beta)
neighbours = (fingerprints, models, beta, window, op, float(alpha) if alpha_ok else None, ss.get("m_labels", ""),
              ss.get("m_weights", ""), method, u_source, n, seed, classifier, scoring, seh_ok, clf_token)
steer = {"methods": active, "lead": lead, "direction": -1 if moved_by < 0 else 1}
if growing:
    if MP.prefetch_enabled():  # grown in the background while this run draws the view from the first batches,
        # after the first batch of the likeliest next view (the last slider one more step the same way)
        grow = MV.grow_jobs(specs, beta, n, seed, seh_ok, growing)
        first = M.neighbour_jobs(*neighbours, **steer, first_next=True)
        MP.prefetcher().schedule(view_key, (first if len(first) + len(grow) <= MP.MAX_PENDING else []) + grow)
    MV.show_growing(growing, n, MP.prefetch_enabled())
if not results:
    st.stop()
counted = [(M.MOL_METHODS[meth] if compare else "composition", results.get(meth)) for meth in active]
counted += [(f"p{i + 1} = {name}", s) for i, (name, s) in enumerate(base_sets.items())]
st.caption(MV.counts_caption(counted, n))  # every figure says how many molecules it is computed on
primary = next(iter(results))
composed = results[primary]

seh_missing = seh_reason is not None or not all(s.has_seh for s in results.values())
meta = composition_meta(chosen, op, composition, beta, method, u=u_source if method in ("reaching", "compare") else None,
                        scoring=scoring if method in ("classifier", "compare") else None, n=n, seed=seed)
stem = meta_stem("sculpt_mol", meta)
if seh_missing and seh_reason is None:  # weights found, yet some molecule could not be scored
    st.info("Some sampled molecules have no sEH score (the proxy could not score them): sEH figures are left out "
            "for this view; SA and QED are exact.")

label = composition.describe()
figures = {meth: set_figures(s, *M.cached_diversity(tuple(s.smiles))) for meth, s in results.items()}
if compare:  # the methods side by side, the same cards in the same order
    st.subheader("Methods side by side")
    MV.show_method_columns([(M.MOL_METHODS[meth] + MV.size_note(results.get(meth), n), figures.get(meth),
                             notes.get(meth)) for meth in runs])
else:
    high = composed.high_fractions()
    cols = st.columns(6)
    cols[0].metric("molecules / s", f"{composed.molecules_per_s:.0f}", border=True,
                   help=f"{len(composed.smiles)} valid molecules in {composed.seconds:.2f} s "
                        f"({composed.invalid_dropped} invalid dropped); scoring took {composed.score_seconds:.2f} s.")
    for col, name in zip(cols[1:4], TABLE1_NAMES):
        value = high[name]
        col.metric(f"high {name} (≥ {dict(zip(TABLE1_NAMES, TABLE1_THRESHOLDS))[name]:g})",
                   "n/a" if value is None else f"{100 * value:.0f}%", border=True,
                   help="Not scored: the sEH proxy weights are missing (see the note above)." if value is None else None)
    all_high = composed.all_high()
    cols[4].metric("all high", "n/a" if all_high is None else f"{100 * all_high:.0f}%", border=True,
                   help="High in sEH, SA and QED at once (Table 1's last bin).")
    cols[5].metric("unique", f"{100 * M.cached_diversity(tuple(composed.smiles))[0]:.0f}%", border=True,
                   help="Distinct molecules (InChI) among the samples.")
match = paper_row([mod.meta.get("reward") for mod in models], composition, beta)
MV.show_paper_row(match, [(f"ours, {M.MOL_METHODS[meth]}{MV.size_note(s, n)}", figures[meth])
                          for meth, s in results.items()])

# ----- reward KDE contours ----------------------------------------------------------------------------------
# The axes follow the chosen bases' rewards whenever those change; otherwise the user's pick stays, kept outside
# the widgets too (a run that stops before the plot may drop widget state, and the browser then shows the widget's
# default while the server kept the old value). The values are set before the widgets on every run, so the browser
# is always sent the pair that is plotted: a selector never names another reward than the plot's.
available_axes = [r for r in TABLE1_NAMES if not (r == "seh" and seh_missing)]
base_rewards = [mod.meta.get("reward") for mod in models]
axes_for = (tuple(base_rewards), tuple(available_axes))
fresh = ss.get("m_axes_for") != axes_for
kept = (None, None) if fresh else ss.get("m_axes", (None, None))
link_bases, axes_url = ss.pop("m_axes_url", (None, None))
if axes_url is not None and link_bases == tuple(chosen):  # a shared link's axes: the user's pick, for its bases
    fresh, kept = False, axes_url
    ss["m_x"], ss["m_y"] = axes_url
x_axis, y_axis = M.kde_axes(base_rewards, available_axes, None if fresh else ss.get("m_x", kept[0]),
                            None if fresh else ss.get("m_y", kept[1]))
ss["m_x"], ss["m_y"] = x_axis, y_axis  # every run, so the browser is always sent the plotted pair
ss["m_axes_for"] = axes_for
c1, c2 = st.columns(2)
x_axis = c1.selectbox("x axis", available_axes, format_func=M.REWARD_LABELS.get, key="m_x")
y_choices = [r for r in available_axes if r != x_axis]
y_axis = c2.selectbox("y axis", y_choices, format_func=M.REWARD_LABELS.get, key="m_y")
ss["m_axes"] = (x_axis, y_axis)
jx, jy = TABLE1_NAMES.index(x_axis), TABLE1_NAMES.index(y_axis)
names = {meth: (f"{label} · {meth}" if compare else label) + MV.size_note(s, n)  # one set per method compared
         for meth, s in results.items()}
label = names[primary]
base_names = {name: f"p{i + 1} = {name}" + MV.size_note(s, n) for i, (name, s) in enumerate(base_sets.items())}
sets = {base_names[name]: s.rewards[:, [jx, jy]] for name, s in base_sets.items() if s is not None}
sets.update({names[meth]: s.rewards[:, [jx, jy]] for meth, s in results.items()})
fig = MF.reward_kde_figure(sets, M.REWARD_LABELS[x_axis], M.REWARD_LABELS[y_axis], composed=label,
                           thresholds=(TABLE1_THRESHOLDS[jx], TABLE1_THRESHOLDS[jy]), title=meta_title(meta))
st.plotly_chart(fig, width="stretch", theme=None, key="fig_kde", config=export_config(f"{stem}_kde_{x_axis}_{y_axis}"))
st.caption("Lines: Gaussian KDE contours of each sample set's rewards; points: the composed samples; dashed: the "
           "Table 1 thresholds (sEH 0.5, SA 0.6, QED 0.25). The axes range to the samples' rewards. The camera "
           "button above the plot saves it as a PNG named after this view.")

# ----- Table 1 bins -----------------------------------------------------------------------------------------
if seh_missing:
    with st.container(border=True):
        st.markdown("**Table 1 bins (sEH × SA × QED, high or low): not available without the sEH reward.**")
        st.caption("This is where the percent of samples in each of the paper's eight reward bins is drawn, for "
                   "the composition and its bases. It appears once the sEH proxy weights are found (see the note "
                   "at the top of the page).")
else:
    rows = [(names[meth], s.table1_percent()) for meth, s in results.items()]
    rows += [(base_names[name], s.table1_percent()) for name, s in base_sets.items()
             if s is not None and s.has_seh]  # a base set with a molecule sEH could not score has no Table 1 row
    st.plotly_chart(V.table1_figure(rows, paper_key=match.key, title=meta_title(meta)), width="stretch", theme=None,
                    key="fig_table1", config=export_config(f"{stem}_table1"))
    st.caption("Percent of samples in each Table 1 bin; bin '110' = sEH high, SA high, QED low"
               + (f"; grey: the paper's row {match.key}." if match.key else "."))

# ----- gallery ----------------------------------------------------------------------------------------------
st.subheader("Samples")
if compare:
    st.caption(f"The gallery shows the {M.MOL_METHODS[primary]} samples; the CSV has every method's.")
targets = [r for r in M.targeted_rewards(composition, base_rewards) if not (r == "seh" and seh_missing)]
if ss.get("m_order") not in M.GALLERY_ORDERS.values():  # a run that stopped early dropped the widget's state
    ss["m_order"] = ss.get("m_order_kept", M.GALLERY_ORDERS["first"])
order = st.radio("Show", list(M.GALLERY_ORDERS.values()), horizontal=True, key="m_order")
ss["m_order_kept"] = order
best = order.startswith("best")
shown = composed.gallery_order(best=best, rewards=targets or None)[:12]
if best:
    st.caption("Ranked on " + (", ".join(M.REWARD_LABELS[r] for r in targets) if targets else "every reward shown")
               + ": the rewards of the bases this composition uses (" + composition.describe() + "), each divided "
               "by its Table 1 threshold; the smallest ratio of a molecule ranks it.")
legends = [composed.legend(i) for i in shown]
gallery, stats = st.columns([3, 2])
gallery.image(V.molecule_gallery_png([composed.smiles[i] for i in shown], legends), width="stretch")
div_rows = [(names[meth], *M.cached_diversity(tuple(s.smiles))) for meth, s in results.items()]
div_rows += [(base_names[name], *M.cached_diversity(tuple(s.smiles))) for name, s in base_sets.items()
             if s is not None]
with stats:
    st.metric("diversity", "n/a" if div_rows[0][2] is None else f"{div_rows[0][2]:.2f}", border=True,
              help="Mean pairwise Tanimoto distance (Morgan fingerprints, radius 3, 2048 bits) of the composed "
                   "samples (the first 500); 0 = all the same molecule.")
    st.plotly_chart(MF.diversity_figure(div_rows, composed=label), width="stretch", theme=None, key="fig_diversity",
                    config=export_config(f"{stem}_diversity"))
    st.caption("The composition beside its bases: a composition that collapses onto few molecules shows here.")
csv_text = "".join(line for k, (meth, s) in enumerate(results.items())  # one header, then every method's rows
                   for line in s.csv({**meta, "method": meth}).splitlines(keepends=True)[1 if k else 0:])
st.download_button("Samples (CSV)", data=csv_text, file_name=stem + ".csv", mime="text/csv",
                   on_click="ignore", key="m_dl",
                   help="Columns: " + ", ".join(meta) + ", then smiles, seh_reward, sa_reward, qed (one row per "
                        "molecule; sEH empty when it could not be scored).")

with st.expander("Base models"):
    for mod, fp in zip(models, fingerprints):
        st.markdown(f"- **{mod.name}**: reward `{mod.meta.get('reward')}`, {mod.meta.get('steps')} training steps, "
                    f"β ∈ [{mod.beta_range[0]:g}, {mod.beta_range[1]:g}], fingerprint `{fp}`")

page_query = url_query | M.display_query(x_axis, y_axis, M.kde_axes(base_rewards, available_axes), order)
if st.query_params.to_dict() != page_query:  # the axes and the gallery order too, once this run has chosen them
    st.query_params.from_dict(page_query)
ss["m_shown"] = url_query  # what the figures show, for the stale note of the next view
if growing:
    MV.arm_growing()  # this run is drawn: the growing note's fragment may rerun the page now

# ----- while the user looks: sample the views one arrow-key step away (same cache entries as above) ----------
if MP.prefetch_enabled():  # the views one step away (after the growing sets: scheduled above, for the same view)
    MP.prefetcher().extend(view_key, M.neighbour_jobs(*neighbours, **steer))
ss["m_alpha_shown"], ss["m_beta_shown"] = float(alpha), beta  # the way the next move goes, seen from here
