"""Plotly figures of grid distributions: pure functions of numpy arrays (no Streamlit, no torch).

Convention (the same as every array Sculpt writes): ``p[z0, z1]``; z0 (moves along dimension 0) is
drawn on the vertical axis, z1 on the horizontal axis, origin (the start state) in the lower-left corner.
Colour scales are always explicit, so a host theme cannot recolour them.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

DIST_COLORSCALE = "Viridis"
DELTA_COLORSCALE = "RdBu_r"
X_TITLE = "z1 (moves in dim 1) →"
Y_TITLE = "z0 (moves in dim 0) →"
POINT_COLOR = "#ff4b4b"

Panel = tuple[str, np.ndarray]


def _domains(n: int, gap: float = 0.04) -> list[tuple[float, float]]:
    width = (1.0 - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def _panel_layout(titles: Sequence[str], height: int, colorbar: bool, size: int = 32) -> dict:
    """A 1×n layout of square heatmap panels over cells ``0..size-1``, titled by annotations (a plain dict:
    the figure is validated once when it is built, much cheaper than make_subplots + updates)."""
    n = len(titles)
    right = 0.92 if colorbar else 1.0
    doms = [(a * right, b * right) for a, b in _domains(n)]
    rng = [-0.5, size - 0.5]
    layout: dict = {
        "height": height,
        "margin": {"l": 50, "r": 10, "t": 40, "b": 45},
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "font": {"size": 11},
        "showlegend": False,
        "annotations": [],
    }
    for i, (title, dom) in enumerate(zip(titles, doms)):
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = {"domain": list(dom), "anchor": f"y{suffix}", "range": rng, "constrain": "domain",
                                    "title": {"text": X_TITLE}, "showgrid": False, "zeroline": False}
        layout[f"yaxis{suffix}"] = {"domain": [0.0, 1.0], "anchor": f"x{suffix}", "range": rng, "constrain": "domain",
                                    "scaleanchor": f"x{suffix}", "showgrid": False, "zeroline": False,
                                    "title": {"text": Y_TITLE if i == 0 else ""}}
        layout["annotations"].append({
            "text": title, "x": (dom[0] + dom[1]) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
            "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 12},
        })
    return layout


def _heat(z: np.ndarray, i: int, name: str, coloraxis: str | None = None, colorscale: str = DIST_COLORSCALE,
          hover_label: str = "p") -> dict:
    suffix = "" if i == 0 else str(i + 1)
    trace: dict = {"type": "heatmap", "z": np.asarray(z, dtype=np.float64), "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                   "name": name, "hovertemplate": f"z0=%{{y}}, z1=%{{x}}<br>{hover_label}=%{{z:.3g}}<extra>{name}</extra>"}
    trace.update({"coloraxis": coloraxis} if coloraxis else {"colorscale": colorscale, "showscale": False})
    return trace


def _points_trace(points: np.ndarray, panel: int = 0, seed: int = 0) -> dict:
    """Sampled cells ``[n, 2]`` (z0, z1), jittered inside their cell so density shows."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    jitter = np.random.default_rng(seed).uniform(-0.35, 0.35, size=pts.shape)
    suffix = "" if panel == 0 else str(panel + 1)
    return {"type": "scattergl", "x": pts[:, 1] + jitter[:, 1], "y": pts[:, 0] + jitter[:, 0], "mode": "markers",
            "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "name": f"{len(pts)} samples", "hoverinfo": "skip",
            "marker": {"size": 3, "color": POINT_COLOR, "opacity": 0.55}}


def heatmap(p: np.ndarray, title: str, height: int = 360, colorscale: str = DIST_COLORSCALE) -> go.Figure:
    """One distribution ``p[z0, z1]`` as a heatmap with a colour bar."""
    layout = _panel_layout([title], height, colorbar=True, size=np.shape(p)[0])
    layout["coloraxis"] = {"colorscale": colorscale, "colorbar": {"title": {"text": "p"}, "thickness": 12}}
    return go.Figure({"data": [_heat(p, 0, title, coloraxis="coloraxis")], "layout": layout})


def heatmap_row(
    panels: Sequence[Panel],
    shared_scale: bool = True,
    points: np.ndarray | None = None,
    points_panel: int = 0,
    height: int = 340,
    colorscale: str = DIST_COLORSCALE,
) -> go.Figure:
    """Distributions side by side (one row). ``shared_scale`` puts them on one colour axis (comparable).

    ``points``: optional ``[n, 2]`` sampled cells ``(z0, z1)`` drawn over panel ``points_panel``."""
    size = max((np.shape(z)[0] for _, z in panels), default=32)
    layout = _panel_layout([t for t, _ in panels], height, colorbar=shared_scale, size=size)
    data = [_heat(z, i, title, coloraxis="coloraxis" if shared_scale else None, colorscale=colorscale)
            for i, (title, z) in enumerate(panels)]
    if shared_scale:
        finite = [float(np.nanmax(z)) for _, z in panels if np.isfinite(z).any()]
        layout["coloraxis"] = {"colorscale": colorscale, "cmin": 0.0, "cmax": max(finite, default=1.0),
                               "colorbar": {"title": {"text": "p"}, "thickness": 12}}
    if points is not None and len(points):
        data.append(_points_trace(points, points_panel))
    return go.Figure({"data": data, "layout": layout})


def bases_figure(names: Sequence[str], dists: Sequence[np.ndarray], targets: Sequence[np.ndarray | None],
                 height: int = 300) -> go.Figure:
    """Each base model's learned distribution next to its target ∝ R^β (or a blank panel if the reward is unknown)."""
    panels: list[Panel] = []
    for name, p, t in zip(names, dists, targets):
        panels.append((f"{name}: model p", p))
        panels.append((f"{name}: target ∝ R^β" if t is not None else f"{name}: reward unknown",
                       t if t is not None else np.full_like(p, np.nan)))
    fig = heatmap_row(panels, shared_scale=False, height=height)
    fig.update_layout(margin={"l": 40, "r": 10, "t": 40, "b": 45})
    return fig


def delta_figure(delta: np.ndarray, title: str = "distortion δ(x) = u_M(x) / N_M(x)", height: int = 340) -> go.Figure:
    """log10 of the reaching-mixing distortion δ(x) (0 = no distortion; red: over-, blue: under-weighted)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_delta = np.log10(np.asarray(delta, dtype=np.float64))
    log_delta[~np.isfinite(log_delta)] = np.nan
    finite = log_delta[np.isfinite(log_delta)]
    span = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-6)
    layout = _panel_layout([title], height, colorbar=True, size=np.shape(delta)[0])
    layout["coloraxis"] = {"colorscale": DELTA_COLORSCALE, "cmin": -span, "cmax": span, "cmid": 0.0,
                           "colorbar": {"title": {"text": "log10 δ"}, "thickness": 12}}
    return go.Figure({"data": [_heat(log_delta, 0, "log10 δ", coloraxis="coloraxis", hover_label="log10 δ")],
                      "layout": layout})


def loss_curve(steps: Sequence[int], losses: Sequence[float], l1s: Sequence[float] | None = None,
               height: int = 260) -> go.Figure:
    """Training loss (left axis, log scale) and exact L1 to the target (right axis) against step."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(steps), y=list(losses), mode="lines+markers", name="loss", line={"color": "#1f77b4"}))
    if l1s is not None:
        fig.add_trace(go.Scatter(x=list(steps), y=list(l1s), mode="lines+markers", name="exact L1", yaxis="y2",
                                 line={"color": "#ff7f0e"}))
    positive = all(v > 0 for v in losses) and len(losses) > 0
    fig.update_layout(
        height=height, margin={"l": 50, "r": 50, "t": 30, "b": 40}, plot_bgcolor="white", paper_bgcolor="white",
        xaxis={"title": {"text": "step"}}, yaxis={"title": {"text": "loss"}, "type": "log" if positive else "linear"},
        yaxis2={"title": {"text": "L1"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.12},
    )
    return fig


# ----- static export ---------------------------------------------------------------------------------
_VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                     [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]], dtype=np.float64)


def _colormap(z: np.ndarray) -> np.ndarray:
    """Viridis RGB image of ``z`` (NaN → light grey), min..max normalised."""
    z = np.asarray(z, dtype=np.float64)
    finite = np.isfinite(z)
    lo = float(z[finite].min()) if finite.any() else 0.0
    hi = float(z[finite].max()) if finite.any() else 1.0
    t = np.where(finite, (z - lo) / (hi - lo) if hi > lo else 0.0, 0.0) * (len(_VIRIDIS) - 1)
    i0 = np.clip(np.floor(t).astype(int), 0, len(_VIRIDIS) - 2)
    frac = (t - i0)[..., None]
    rgb = _VIRIDIS[i0] * (1 - frac) + _VIRIDIS[i0 + 1] * frac
    rgb[~finite] = 230.0
    return rgb.astype(np.uint8)


def panels_png(panels: Sequence[Panel], cell: int = 8) -> bytes:
    """A static PNG of heatmap panels (Pillow only, no browser): origin lower-left, z0 up, z1 right."""
    from PIL import Image, ImageDraw, ImageFont

    if not panels:
        raise ValueError("no panels to draw")
    h, w = np.asarray(panels[0][1]).shape[:2]
    pad, title_h = 16, 22
    pw, ph = w * cell, h * cell
    img = Image.new("RGB", (pad + len(panels) * (pw + pad), title_h + ph + 2 * pad), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    for i, (title, z) in enumerate(panels):
        rgb = _colormap(np.asarray(z))[::-1]  # row z0 = 0 at the bottom
        tile = Image.fromarray(rgb, "RGB").resize((pw, ph), Image.NEAREST)
        x0 = pad + i * (pw + pad)
        img.paste(tile, (x0, title_h + pad))
        draw.text((x0, 4), title[: max(10, pw // 7)], fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig: go.Figure, fallback_panels: Sequence[Panel]) -> bytes:
    """PNG of a figure via kaleido when it works, else the Pillow rendering of ``fallback_panels``."""
    try:
        return fig.to_image(format="png", scale=2)
    except Exception:  # kaleido or its Chrome missing: draw the panels ourselves
        return panels_png(fallback_panels)


def l1_title(name: str, l1: float | None) -> str:
    """Panel title with an L1 value, e.g. ``oracle · L1 0.0123``."""
    if l1 is None or not math.isfinite(l1):
        return name
    return f"{name} · L1 {l1:.4f}" if abs(l1) >= 1e-3 else f"{name} · L1 {l1:.1e}"
