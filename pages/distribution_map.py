"""Distribution Map: pairwise earth mover's distances between bases and compositions, drawn as a t-SNE or MDS map.

Thin page: the shipped reproduction of the paper's Fig. 4 opens first (nothing is computed); "Build a map"
samples a domain's distributions and computes their distances through ``sculpt_core.app.maps``; every figure
comes from ``sculpt_core.app.map_figures``.
"""

from __future__ import annotations

import streamlit as st

from sculpt_core.app import maps as MP
from sculpt_core.app.map_figures import heatmap_figure, map_figure
from sculpt_core.app.navigation import ensure_app_navigation
from sculpt_core.app.page_url import UrlKey, load_url_state, write_url_state
from sculpt_core.core.maps import parse_alphas, plan_items
from sculpt_core.errors import SculptError

ensure_app_navigation()
ss = st.session_state

st.title("Distribution Map")
st.caption("Each point is a distribution — a base model or a composition. Distances are exact earth mover's "
           "distances between them (molecules: Tanimoto ground cost on Morgan fingerprints between sample sets; "
           "grid: Euclidean cell distance between exact distributions; diffusion: Euclidean distance between "
           "sample sets). The map places base 1 → base 2 along +x and base 3 above, centred on the bases.")

SOURCES = {"fig4": "Paper Fig. 4 (shipped, molecules)", "build": "Build a map"}
URL_KEYS = (UrlKey("source", "dm_source", "fig4", tuple(SOURCES)),
            UrlKey("embedding", "dm_embed", "tsne", tuple(MP.EMBEDDINGS)),  # not "embed": Streamlit reserves it
            UrlKey("seed", "dm_seed", MP.DEFAULT_SEED, lo=0, hi=10_000, integer=True),
            UrlKey("perplexity", "dm_perp", 4.0, lo=1.0, hi=12.0),
            UrlKey("distances", "dm_fig4_source", "ours", ("ours", "paper")),
            UrlKey("domain", "dm_domain", "grid", tuple(MP.DOMAINS)))
load_url_state(URL_KEYS, "dm_qp_loaded")

sb = st.sidebar
sb.header("Map")
source = sb.radio("Distributions", list(SOURCES), format_func=SOURCES.get, key="dm_source")
method = sb.radio("Embedding", list(MP.EMBEDDINGS), format_func=MP.EMBEDDINGS.get, key="dm_embed")
seed = int(sb.number_input("Embedding seed", 0, 10_000, step=1, key="dm_seed"))
perplexity = float(sb.slider("t-SNE perplexity", 1.0, 12.0, step=0.5, key="dm_perp", disabled=method != "tsne",
                             help="Must be below the number of distributions; a larger value is clamped."))

write_url_state(URL_KEYS)

record = None
if source == "fig4":
    record, problem = MP.shipped_fig4()
    if record is None:
        st.warning(f"No precomputed Fig. 4 map: {problem}")
        st.stop()
    which = st.radio("Distances", ["ours", "paper"], horizontal=True, key="dm_fig4_source",
                     format_func={"ours": "ours (shipped models)", "paper": "the paper's (Table G.5)"}.get)
    result = MP.fig4_result(record, which)
else:
    domain = sb.selectbox("Domain", list(MP.DOMAINS), format_func=MP.DOMAINS.get, key="dm_domain")
    available, problem = MP.domain_bases(domain)
    if problem:
        st.error(f"The model zoo could not be read: {problem}")
    if len(available) < 2:
        st.warning(f"{MP.DOMAINS[domain]} needs at least two base models; none or one is available.")
        st.stop()
    if ss.get("dm_bases_domain") != domain:
        ss["dm_bases"] = MP.default_bases(domain, available)
        ss["dm_bases_domain"] = domain
        m0 = len(ss["dm_bases"])
        ss["dm_labels"] = "1,1; 2,2" if m0 == 2 else "1,2; 1,3; 2,3; 1,2,3; 1,1; 2,2; 3,3"
        ss["dm_sweep"] = m0 == 2
        ss["dm_method"] = MP.DOMAIN_METHODS[domain][0]
    with st.form("dm_form"):
        c1, c2 = st.columns(2)
        names = c1.multiselect("Bases (2–3; order = labels 1, 2, 3)", available, key="dm_bases", max_selections=3)
        comp_method = c2.selectbox("Method of the compositions", MP.DOMAIN_METHODS[domain], key="dm_method")
        label_text = c1.text_input("Label compositions y (separated by ';')", key="dm_labels",
                                   help="1,2 = harmonic mean, 1,1 = contrast, 1,2,3 = all three; empty for none")
        c2.checkbox("α sweep (two bases)", key="dm_sweep")
        sweep_labels = c2.text_input("Sweep labels", value="1,2", key="dm_sweep_labels")
        alpha_text = c2.text_input("α values (start:stop:step or a list)", value="0.05:0.95:0.1", key="dm_alphas")
        n = None
        if domain in MP.SIZE_CHOICES:
            n = int(c1.select_slider("Samples per distribution", MP.SIZE_CHOICES[domain],
                                     value=MP.SIZE_CHOICES[domain][2], key="dm_n"))
        solver = c1.radio("Transport", ["exact", "sinkhorn"], horizontal=True, key="dm_solver",
                          help="Sinkhorn: entropic approximation; its error against the exact value of the "
                               "first pair is shown.")
        submitted = st.form_submit_button("Compute map", type="primary")
    if submitted:
        try:
            from sculpt_core.core.operators import parse_labels

            sweep = ss["dm_sweep"]
            items = plan_items(names, MP.parse_label_sets(label_text), parse_labels(sweep_labels) if sweep else None,
                               parse_alphas(alpha_text) if sweep else (), comp_method)
            bar = st.progress(0.0, text="starting…")
            unit = "molecules" if domain == "molecules" else ("distributions" if domain == "grid" else "sets")

            def show(stage: str, done: int, total: int, left: float | None) -> None:
                bar.progress(min(done / max(total, 1), 1.0), text=MP.progress_text(stage, done, total, left, unit))

            ss["dm_result"] = MP.compute_map(domain, names, items, n=n or 0, seed=int(ss["dm_seed"]),
                                             solver=solver, progress=show)
            bar.empty()
        except SculptError as exc:
            st.error(str(exc))
        except Exception as exc:  # never a traceback in the page
            st.error(f"The map could not be computed ({type(exc).__name__}: {exc}).")
    result = ss.get("dm_result")
    if result is None:
        st.info("Choose the bases and compositions above and press **Compute map**.")
        st.stop()
    check = result.info.get("sinkhorn_check")
    if check:
        st.caption(f"Sinkhorn vs exact on {check['pair']}: {check['sinkhorn']:.4f} vs {check['exact']:.4f} "
                   f"({100 * (check['relative_error'] or 0):+.2f} %).")

try:
    emb = MP.embedding(result, method, seed, perplexity)
except SculptError as exc:
    st.error(f"The embedding failed: {exc}")
    st.stop()
for note in emb.notes:
    st.caption(note)

st.subheader(result.title)
fig = map_figure(emb.coords, result.labels, result.specs, title=f"{MP.EMBEDDINGS[method].split(' (')[0]} map")
st.plotly_chart(fig, width="stretch", theme=None, key="dm_map")
st.caption("Squares: bases; circles: compositions, coloured by the base they repeat (grey: several bases); a line: "
           "an α sweep in α order. Axes: base 1 → base 2 along +x, base 3 above, origin at the bases' centroid"
           + (" (t-SNE scaled to max |coordinate| = 1)." if method == "tsne" else " (MDS: in EMD units)."))
st.plotly_chart(heatmap_figure(result.matrix, result.labels, "Pairwise earth mover's distances"), width="stretch",
                theme=None, key="dm_heat")

if record is not None:
    pairs = MP.paper_pairs(record)
    lookup = {p["pair"]: p for p in pairs}
    cols = st.columns(4)
    for col, pair in zip(cols[:3], ("p_SEH ↔ p_SA", "p_SEH ↔ p_QED", "p_SA ↔ p_QED")):
        row = lookup.get(pair)
        if row:
            col.metric(f"d({pair.replace('p_', '').replace(' ↔ ', ', ')})", f"{row['ours']:.2f}",
                       f"paper {row['paper']:.2f}", delta_color="off", border=True)
    cols[3].metric("rank agreement with the paper", f"{MP.rank_agreement(record):.2f}", border=True,
                   help="Spearman correlation of our 78 pairwise distances with the paper's.")
    with st.expander("All 78 pairs: ours next to the paper's"):
        st.dataframe(pairs, width="stretch", hide_index=True)

c1, c2, c3 = st.columns(3)
c1.download_button("Distance matrix (CSV)", result.matrix_csv(), file_name="sculpt_emd_matrix.csv", mime="text/csv",
                   on_click="ignore", key="dm_dl_matrix")
c2.download_button("Coordinates (CSV)", result.coords_csv(emb), file_name=f"sculpt_map_{method}.csv",
                   mime="text/csv", on_click="ignore", key="dm_dl_coords")
c3.download_button("Figure (HTML)", lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                   file_name=f"sculpt_map_{method}.html", mime="text/html", on_click="ignore", key="dm_dl_fig")
with st.expander("How this map was made"):
    st.json({"map": result.info, "embedding": emb.figures()}, expanded=False)
