"""Figures of the Distribution Map page (Plotly, no Streamlit): the 2-D map with labels and α-sweep paths, and the
distance-matrix heatmap. Pure functions of arrays and labels, so the page, the tests and the bench share them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

#: One colour per base (label i → BASE_COLORS[i − 1]); compositions of several bases are grey.
BASE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
MIXED_COLOR = "#7f7f7f"
SWEEP_COLOR = "#111111"


def item_color(spec: dict) -> str:
    """A base's colour for the base and for y = (i, i, …); grey for compositions of several bases."""
    if spec.get("base") is not None:
        return BASE_COLORS[int(spec["base"]) % len(BASE_COLORS)]
    labels = spec.get("labels") or []
    if labels and len(set(labels)) == 1:
        return BASE_COLORS[(int(labels[0]) - 1) % len(BASE_COLORS)]
    return MIXED_COLOR


def sweep_paths(specs: Sequence[dict]) -> dict[str, list[int]]:
    """Sweep name → indices of its items in increasing α."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        if s.get("sweep"):
            out.setdefault(s["sweep"], []).append(i)
    return {k: sorted(v, key=lambda i: specs[i].get("alpha") or 0.0) for k, v in out.items()}


def map_figure(coords: np.ndarray, labels: Sequence[str], specs: Sequence[dict], title: str = "",
               axis_title: str = "", height: int = 620) -> go.Figure:
    """Scatter of the distributions with their labels: bases as large squares, compositions as circles (coloured
    by the base they repeat, grey when they combine several), each α sweep a line through its points in α order
    with α written at the ends."""
    xy = np.asarray(coords, dtype=np.float64)
    fig = go.Figure()
    sweeps = sweep_paths(specs)
    in_sweep = {i for idx in sweeps.values() for i in idx}
    for name, idx in sweeps.items():
        alphas = [specs[i].get("alpha") for i in idx]
        fig.add_trace(go.Scatter(
            x=xy[idx, 0], y=xy[idx, 1], mode="lines+markers+text", name=f"α sweep {name}",
            line=dict(color=SWEEP_COLOR, width=2), marker=dict(size=9, color=alphas, colorscale="Viridis",
                                                                line=dict(color="black", width=1)),
            text=[f"α={a:g}" if j in (0, len(idx) - 1) else "" for j, a in enumerate(alphas)],
            textposition="bottom center", hovertext=[labels[i] for i in idx], hoverinfo="text"))
    rest = [i for i in range(len(xy)) if i not in in_sweep]
    bases = [i for i in rest if specs[i].get("base") is not None]
    comps = [i for i in rest if specs[i].get("base") is None]
    for group, symbol, size, name in ((bases, "square", 18, "base"), (comps, "circle", 13, "composition")):
        if not group:
            continue
        fig.add_trace(go.Scatter(
            x=xy[group, 0], y=xy[group, 1], mode="markers+text", name=name, text=[labels[i] for i in group],
            textposition="top center", hovertext=[labels[i] for i in group], hoverinfo="text",
            marker=dict(symbol=symbol, size=size, color=[item_color(specs[i]) for i in group],
                        line=dict(color="black", width=1.5))))
    fig.update_layout(title=title, height=height, margin=dict(l=20, r=20, t=50, b=20), showlegend=bool(sweeps),
                      legend=dict(orientation="h", y=-0.08), plot_bgcolor="white")
    fig.update_xaxes(title=axis_title or None, zeroline=True, zerolinecolor="#ccc", gridcolor="#eee")
    fig.update_yaxes(zeroline=True, zerolinecolor="#ccc", gridcolor="#eee", scaleanchor="x", scaleratio=1)
    return fig


def heatmap_figure(matrix: np.ndarray, labels: Sequence[str], title: str = "", height: int = 560) -> go.Figure:
    """The distance matrix with its values written in the cells (row 1 at the top)."""
    m = np.asarray(matrix, dtype=np.float64)
    fig = go.Figure(go.Heatmap(z=m, x=list(labels), y=list(labels), colorscale="Viridis", zmin=0,
                               texttemplate="%{z:.2f}", textfont=dict(size=10), colorbar=dict(title="EMD"),
                               hovertemplate="%{y} ↔ %{x}: %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, height=height, margin=dict(l=20, r=20, t=50, b=20))
    fig.update_xaxes(tickangle=-40, automargin=True)
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


__all__ = ["BASE_COLORS", "heatmap_figure", "item_color", "map_figure", "sweep_paths"]
