"""How the Grid Sculpting page (and the home page) draw their results in Streamlit: the colour-scale control,
charts whose camera button saves a PNG named after the view, the downloads, the "compare all" cards (one
column per method: its metric card, its heatmap and its error map, so cards line up with their panels) and the
base models, and the previous view kept on screen (marked stale, with a progress bar) while a sampled view
computes. Figures come from :mod:`sculpt_core.app.grid_figures`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from sculpt_core.app import grid as G
from sculpt_core.app import grid_figures as F
from sculpt_core.app.exports import meta_stem, meta_title
from sculpt_core.app.png_export import panels_png
from sculpt_core.domains.grid import viz as V

#: "Compare all" draws at most this many cards in a row (wider rows make panels too small to read).
COMPARE_COLUMNS = 3


def scale_control(key: str, container: Any = None, default: str = "shared") -> str:
    """The colour-scale choice (shared, per panel, log10) as a small horizontal radio keyed ``key``."""
    where = container if container is not None else st
    st.session_state.setdefault(key, default)
    if st.session_state[key] not in F.SCALES:
        st.session_state[key] = default
    return where.radio("Colour scale", list(F.SCALES), format_func=F.SCALES.get, horizontal=True, key=key,
                       help=F.SCALE_HELP)


def figure_mode_control(key: str, container: Any = None, default: str = "image", disabled: bool = False) -> str:
    """How the main figure is drawn (:data:`~sculpt_core.app.grid_figures.FIGURE_MODES`), a radio keyed ``key``
    (``disabled`` where the view is always interactive: the choice is kept, and stays in the URL)."""
    where = container if container is not None else st
    st.session_state.setdefault(key, default)
    if st.session_state[key] not in F.FIGURE_MODES:
        st.session_state[key] = default
    return where.radio("Figure", list(F.FIGURE_MODES), format_func=F.FIGURE_MODES.get, horizontal=True, key=key,
                       disabled=disabled, help=F.FIGURE_MODE_HELP + (" Compare all is always interactive."
                                                                     if disabled else ""))


def show_figure(panels: Sequence[F.Panel], scale: str, meta: dict[str, str], points: np.ndarray | None,
                mode: str, key: str) -> None:
    """The composed panel beside its targets, as one PNG (``mode`` "image") or as a plotly figure whose camera
    button saves a PNG named after the view ("interactive")."""
    if mode == "interactive":
        chart(single_figure(panels, scale, meta, points), key, meta_stem("sculpt_grid", meta))
    else:
        # PNG kept as PNG: with the default "auto" Streamlit re-encodes an image without alpha as JPEG
        st.image(panels_png(panels, meta_title(meta), scale, points=points, compress_level=1), width="content",
                 output_format="PNG")


def chart(fig: go.Figure, key: str, filename: str, container: Any = None) -> None:
    """``st.plotly_chart`` with the page's settings; the camera button saves ``filename``.png."""
    (container if container is not None else st).plotly_chart(fig, width="stretch", theme=None, key=key,
                                                              config=F.export_config(filename))


def figure_png(figure: go.Figure, panels: Sequence[F.Panel], title: str, scale: str,
               points: np.ndarray | None = None) -> bytes:
    """The figure as a PNG: plotly's own export when kaleido is installed, else the Pillow drawing of the
    panels with axes, colour bars and the title (:func:`sculpt_core.app.png_export.panels_png`)."""
    import importlib.util

    if importlib.util.find_spec("kaleido") is not None:
        try:
            return figure.to_image(format="png", scale=2)
        except Exception:  # kaleido without a usable Chrome: draw the panels ourselves
            pass
    return panels_png(panels, title, scale, points=points)


def show_downloads(p: np.ndarray, meta: dict[str, str], figure: Callable[[], go.Figure],
                   panels: Sequence[F.Panel], scale: str = "shared", title: str | None = None,
                   points: np.ndarray | None = None) -> None:
    """CSV and NPY of ``p`` and the figure as HTML and PNG, each named after the view; the CSV repeats the
    view's parameters (method, operator, labels, α, β, …) as columns, the PNG has them (or ``title``) as title
    and the sample overlay ``points`` over its first panel."""
    title = title if title is not None else meta_title(meta)
    stem = meta_stem("sculpt_grid", meta)
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Distribution (CSV)", data=lambda: G.distribution_csv(p, meta), file_name=stem + ".csv",
                       mime="text/csv", on_click="ignore", key="dl_csv", width="stretch",
                       help="Columns: " + ", ".join(meta) + ", z0, z1, p (one row per cell).")
    c2.download_button("Distribution (NPY)", data=lambda: G.distribution_npy(p), file_name=stem + ".npy",
                       mime="application/octet-stream", on_click="ignore", key="dl_npy", width="stretch")
    c3.download_button("Figure (HTML)", data=lambda: figure().to_html(include_plotlyjs=True, full_html=True),
                       file_name=stem + ".html", mime="text/html", on_click="ignore", key="dl_html", width="stretch")
    c4.download_button("Figure (PNG)", data=lambda: figure_png(figure(), panels, title, scale, points),
                       file_name=stem + ".png", mime="image/png", on_click="ignore", key="dl_png", width="stretch",
                       help="The heatmaps with axes, colour bars and the view's parameters as title (drawn with "
                            "Pillow; by plotly when kaleido is installed). The camera button above a figure saves "
                            "it as the browser draws it, also named after the view.")


STALE_CAPTION = ("Stale: the figures below are the previous view, kept on screen (faded) until the new one is "
                 "sampled.")


class StaleWhileComputing:
    """Never a blank page while a view is sampled. The previous view's elements stay on screen (Streamlit keeps an
    element until the rerun writes its position again, and fades it meanwhile); on the first progress report this
    marks it stale in ``slot`` (above the results) with a progress bar of the counts done and the time left.
    :meth:`clear` removes both once the new view is ready. ``what`` names the unit counted."""

    def __init__(self, slot: Any = None, what: str = "trajectories") -> None:
        self.slot = slot if slot is not None else st.empty()
        self.what = what
        self.bar = None
        self.t0 = time.perf_counter()
        self.reports: list[tuple[int, int]] = []

    def text(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.t0
        left = "estimating the time left" if done <= 0 else f"about {elapsed / done * (total - done):.1f} s left"
        return f"Sampling {self.what}: {done:,} / {total:,} · {elapsed:.1f} s elapsed, {left}"

    def __call__(self, done: int, total: int) -> None:
        self.reports.append((done, total))
        if self.bar is None:
            self.t0 = time.perf_counter()
            with self.slot.container():
                st.caption(STALE_CAPTION)
                self.bar = st.progress(0.0, text=self.text(done, total))
        self.bar.progress(min(done / max(total, 1), 1.0), text=self.text(done, total))

    def clear(self) -> None:
        """Remove the stale note and the progress bar (nothing to do when nothing was sampled)."""
        if self.bar is not None:
            self.slot.empty()
            self.bar = None


def single_figure(panels: Sequence[F.Panel], scale: str, meta: dict[str, str],
                  points: np.ndarray | None = None) -> go.Figure:
    """The composed panel beside its targets, titled with the view's parameters."""
    return F.heatmap_panels(panels, scale, row_height=360, title=meta_title(meta), points=points)


def show_compare(views: Sequence[G.ComposeView], scale: str, meta: dict[str, str]) -> tuple[go.Figure, list]:
    """One card per result in rows of :data:`COMPARE_COLUMNS`: the target first (with the reaching distortion
    δ(x) under it when there is one), then each method's L1 metric, heatmap and error map (composed − target).
    Returns the export figure (every panel in one figure) and its panels."""
    target = views[0].target
    cards: list[tuple[str, np.ndarray, G.ComposeView | None]] = [("target (learned bases)", target, None)]
    cards += [(V.l1_title(v.label + (" (sampled)" if v.sampled else ""), v.l1), v.p, v) for v in views]
    ranges = F.color_ranges([z for _, z, _ in cards], scale)
    span = F.error_range([v.p - v.target for v in views])
    delta = next((v.delta for v in views if v.delta is not None), None)
    stem = meta_stem("sculpt_grid", meta)
    for row_start in range(0, len(cards), COMPARE_COLUMNS):
        row = cards[row_start:row_start + COMPARE_COLUMNS]
        cols = st.columns(COMPARE_COLUMNS)
        for k, (col, (title, z, view)) in enumerate(zip(cols, row)):
            i = row_start + k
            with col:
                if view is None:
                    st.metric("target: L1 to true target", G.fmt(views[0].l1_bases), border=True,
                              help="How far the target built from the learned bases is from the true one.")
                    st.caption(views[0].describe)
                else:
                    st.metric(f"{view.label}: L1 to target", G.fmt(view.l1), border=True,
                              help="Exact L1 to the target from the same learned bases; true-target L1 below.")
                    st.caption(f"L1 to true target: {G.fmt(view.l1_true)}" + (" · sampled" if view.sampled else ""))
                fig = F.heatmap_panels([(title, z)], scale, row_height=360, ranges=[ranges[i]], title_chars=34)
                chart(fig, f"fig_compare_{i}", f"{stem}_{'target' if view is None else view.label}")
                if view is not None:
                    err = F.error_figure(view.p, view.target, f"{view.label} − target", span=span, row_height=320,
                                         title_chars=34)
                    chart(err, f"fig_error_{i}", f"{stem}_{view.label}_error")
                elif delta is not None:
                    chart(V.delta_figure(delta, title="reaching distortion log10 δ(x)", height=320),
                          "fig_compare_delta", f"{stem}_delta")
    st.caption("Error maps: composed − target per cell, on one symmetric colour scale for every method (red: the "
               "method puts too much mass there, blue: too little). δ(x) = u_M(x)/N_M(x) of reaching mixing "
               "(white: δ = 1, no distortion).")
    panels = [(t, z) for t, z, _ in cards]
    return F.heatmap_panels(panels, scale, cols=COMPARE_COLUMNS, title=meta_title(meta)), panels


def show_bases(names: Sequence[str], dists: Sequence[np.ndarray], targets: Sequence[np.ndarray | None],
               scale: str, filename: str) -> None:
    """Each base's model p over its target ∝ R^β, one column per base, each with a colour bar."""
    panels = F.bases_panels(names, dists, targets)
    chart(F.heatmap_panels(panels, scale, cols=len(names), row_height=300 if len(names) > 2 else 320),
          "fig_bases", filename)


__all__ = ["COMPARE_COLUMNS", "STALE_CAPTION", "StaleWhileComputing", "chart", "figure_mode_control", "figure_png",
           "scale_control", "show_bases", "show_compare", "show_downloads", "show_figure", "single_figure"]
