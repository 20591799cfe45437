"""Molecule page figures as the page draws them: reward KDE contours whose axes range to the data (not to a
fixed [0, 1]), the diversity and uniqueness of every sample set beside the samples, and the text shown when the
sEH proxy weights are missing. Pure functions of arrays and SMILES (no Streamlit); the densities come from
:func:`sculpt_core.domains.molecules.viz.kde_density`, the metrics from ``domains/molecules/metrics.py``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from sculpt_core.domains.molecules.viz import BASE_COLORS, COMPOSED_COLOR, kde_density

#: Padding around the data, as a fraction of its span, and the smallest span an axis shows.
PAD = 0.08
MIN_SPAN = 0.05


def data_range(values: np.ndarray, pad: float = PAD, min_span: float = MIN_SPAN) -> tuple[float, float]:
    """The axis range of ``values``: their finite min..max, padded by ``pad`` of the span (at least
    ``min_span`` wide, so a set of one value still gets an axis); (0, 1) when there is no finite value."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    span = hi - lo
    return lo - pad * span, hi + pad * span


def reward_kde_figure(sets: Mapping[str, np.ndarray], x_label: str, y_label: str, composed: str | None = None,
                      thresholds: tuple[float, float] | None = None, title: str | None = None,
                      height: int = 450) -> go.Figure:
    """KDE contour lines of every set's 2-D rewards (name → ``[N, 2]``) on axes that range to the data, the
    composed set's points, and the Table 1 thresholds as dashed lines where they fall inside the axes (a
    threshold outside is named at the axis edge)."""
    fig = go.Figure()
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1, 2) for v in sets.values()]
    pts = np.concatenate(arrays) if arrays else np.zeros((0, 2))
    xr, yr = data_range(pts[:, 0]), data_range(pts[:, 1])
    palette = iter(BASE_COLORS * 4)
    for name, arr in zip(sets, arrays):
        color = COMPOSED_COLOR if name == composed else next(palette)
        grid = kde_density(arr, xr, yr)
        if grid is not None:
            xs, ys, dens = grid
            fig.add_trace(go.Contour(x=xs, y=ys, z=dens, name=name, showscale=False, contours_coloring="lines",
                                     line={"width": 2.5 if name == composed else 1.5},
                                     colorscale=[[0, color], [1, color]], ncontours=6, showlegend=True,
                                     hoverinfo="skip"))
        if name == composed:
            fig.add_trace(go.Scatter(x=arr[:, 0], y=arr[:, 1], mode="markers", name=f"{name} (samples)",
                                     marker={"size": 4, "color": color, "opacity": 0.45},
                                     hovertemplate="%{x:.3f}, %{y:.3f}<extra></extra>"))
    notes = []
    if thresholds is not None:
        tx, ty = thresholds
        if xr[0] <= tx <= xr[1]:
            fig.add_vline(x=tx, line_dash="dash", line_color="#555555")
        else:
            notes.append(f"{x_label} threshold {tx:g} {'←' if tx < xr[0] else '→'}")
        if yr[0] <= ty <= yr[1]:
            fig.add_hline(y=ty, line_dash="dash", line_color="#555555")
        else:
            notes.append(f"{y_label} threshold {ty:g} {'↓' if ty < yr[0] else '↑'}")
    if notes:
        fig.add_annotation(text=" · ".join(notes) + " (outside the data's range)", xref="paper", yref="paper",
                           x=0.0, y=0.0, xanchor="left", yanchor="bottom", showarrow=False,
                           font={"size": 10, "color": "#555555"})
    fig.update_layout(height=height, margin={"l": 60, "r": 10, "t": 70 if title else 30, "b": 50},
                      template="plotly_white", legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
                      xaxis={"title": {"text": x_label}, "range": list(xr), "tickformat": ".2f", "nticks": 8},
                      yaxis={"title": {"text": y_label}, "range": list(yr), "tickformat": ".2f", "nticks": 8})
    if title:
        fig.update_layout(title={"text": title, "x": 0.0, "xanchor": "left", "y": 0.98, "font": {"size": 13}})
    return fig


def diversity_figure(rows: Sequence[tuple[str, float, float | None]], composed: str | None = None,
                     height: int = 330) -> go.Figure:
    """Uniqueness (% distinct molecules) and diversity (mean pairwise Tanimoto distance, Morgan radius 3) of
    each sample set, ``rows`` = (name, uniqueness in [0, 1], diversity or None), as two bar panels."""
    names = [r[0] for r in rows]
    palette = iter(BASE_COLORS * 4)
    colors = [COMPOSED_COLOR if n == composed else next(palette) for n in names]
    uniq = [100 * r[1] for r in rows]
    div = [r[2] if r[2] is not None else 0.0 for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=uniq, orientation="h", marker_color=colors, name="unique %",
                         text=[f"{u:.0f}%" for u in uniq], textposition="auto", xaxis="x", yaxis="y",
                         hovertemplate="%{y}: %{x:.1f}% unique<extra></extra>"))
    fig.add_trace(go.Bar(y=names, x=div, orientation="h", marker_color=colors, name="diversity",
                         text=["n/a" if r[2] is None else f"{r[2]:.2f}" for r in rows], textposition="auto",
                         xaxis="x2", yaxis="y2", hovertemplate="%{y}: diversity %{x:.3f}<extra></extra>"))
    fig.update_layout(
        height=height, template="plotly_white", showlegend=False, margin={"l": 10, "r": 10, "t": 30, "b": 40},
        xaxis={"domain": [0, 1], "anchor": "y", "range": [0, 100], "title": {"text": "unique (% of samples)"}},
        yaxis={"domain": [0.58, 1.0], "anchor": "x", "autorange": "reversed", "automargin": True},
        xaxis2={"domain": [0, 1], "anchor": "y2", "range": [0, 1],
                "title": {"text": "diversity (mean Tanimoto distance)"}},
        yaxis2={"domain": [0.0, 0.36], "anchor": "x2", "autorange": "reversed", "automargin": True},
    )
    return fig


def seh_missing_text(reason: str, env_var: str = "SCULPT_SEH_WEIGHTS") -> tuple[str, str]:
    """(the message, the detail) shown when the sEH proxy weights cannot be found: what it means, what still
    works and the one setting that fixes it."""
    message = (
        "**The sEH reward is off: its proxy weights were not found.** sEH (a binding proxy for the soluble "
        "epoxide hydrolase target, one of the paper's three rewards) needs a 2.6 MB weight file that is not "
        "shipped with the code, so no molecule gets an sEH score here, and the Table 1 bins (which need all three "
        "rewards) are not drawn. **Still works:** every model samples (the sEH base model too), SA and QED are "
        "scored exactly, the KDE, the gallery, diversity and the CSV cover SA and QED. **Fix:** set "
        f"`{env_var}=/path/to/best_params.pkl.gz` before starting the app, or fetch the public file once with "
        "`python -c \"from sculpt_core.domains.molecules.seh_proxy import download_seh_weights; "
        "download_seh_weights()\"`, then reload.")
    return message, reason


__all__ = ["MIN_SPAN", "PAD", "data_range", "diversity_figure", "reward_kde_figure", "seh_missing_text"]
