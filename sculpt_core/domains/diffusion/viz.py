"""Density grids and Plotly figures of the 2-D diffusion domain: pure functions (no Streamlit).

Convention (the same as ``exact.ExactComposition.bin_masses`` and ``metrics.histogram``): a density table is
``q[ix, iy]``, probability per bin on [−L, L]² with B×B bins, ix binning the first coordinate x. Figures draw x
on the horizontal axis and y on the vertical one (so Plotly gets ``q.T``). Colour scales are explicit, so a host
theme cannot recolour them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from sculpt_core.core import algebra as A
from sculpt_core.domains.diffusion.spec import GaussianMixture

DENSITY_COLORSCALE = "Viridis"
POINT_COLOR = "#ff4b4b"
SNAPSHOT_COLOR = "#1f77b4"

Panel = tuple[str, np.ndarray]


# ----- density grids ----------------------------------------------------------------------------------------
def base_density(spec: GaussianMixture, extent: float, bins: int, nodes: int = 8, device="cpu") -> np.ndarray:
    """One base's exact probability per bin ``q[ix, iy]`` on [−L, L]² (the mixture of itself alone, so the same
    quadrature and normalisation as a composed target's ``bin_masses``)."""
    from sculpt_core.domains.diffusion.exact import ExactComposition

    q, _ = ExactComposition([spec], A.mixture([1.0]), device).bin_masses(extent, bins, nodes)
    return q


def bin_centres(extent: float, bins: int) -> np.ndarray:
    """The ``bins`` bin centres of [−L, L] along one axis."""
    edges = np.linspace(-extent, extent, bins + 1)
    return (edges[1:] + edges[:-1]) / 2


def sample_histogram(x: np.ndarray, extent: float, bins: int) -> np.ndarray:
    """Probability per bin ``[ix, iy]`` of the samples inside [−L, L]² (normalised by their number; zeros if none)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=bins, range=[[-extent, extent], [-extent, extent]])
    total = counts.sum()
    return counts / total if total > 0 else counts


def density_csv(q: np.ndarray, extent: float) -> str:
    """Long-format CSV ``ix,iy,x,y,p`` (one row per bin; x, y the bin centre)."""
    q = np.asarray(q, dtype=np.float64)
    c = bin_centres(extent, q.shape[0])
    ix, iy = np.meshgrid(np.arange(q.shape[0]), np.arange(q.shape[1]), indexing="ij")
    rows = "\n".join(f"{a},{b},{c[a]:.6g},{c[b]:.6g},{v:.10g}" for a, b, v in zip(ix.ravel(), iy.ravel(), q.ravel()))
    return "ix,iy,x,y,p\n" + rows + "\n"


def samples_csv(x: np.ndarray) -> str:
    """CSV ``x,y`` of an ``[n, 2]`` sample array."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
    return "x,y\n" + "\n".join(f"{a:.8g},{b:.8g}" for a, b in x) + "\n"


# ----- figures ---------------------------------------------------------------------------------------------
def _domains(n: int, right: float, gap: float = 0.05) -> list[tuple[float, float]]:
    width = (right - gap * (n - 1)) / n
    return [(i * (width + gap), i * (width + gap) + width) for i in range(n)]


def _axis(i: int, dom: tuple[float, float], extent: float, title: str, y: bool) -> dict:
    suffix = "" if i == 0 else str(i + 1)
    ax = {"domain": [0.0, 1.0] if y else list(dom), "anchor": f"x{suffix}" if y else f"y{suffix}",
          "range": [-extent, extent], "constrain": "domain", "showgrid": False, "zeroline": False,
          "title": {"text": title}}
    if y:
        ax["scaleanchor"] = f"x{suffix}"
    return ax


def _layout(titles: Sequence[str], extent: float, height: int, colorbar: bool) -> dict:
    doms = _domains(len(titles), 0.92 if colorbar else 1.0)
    layout: dict = {"height": height, "margin": {"l": 45, "r": 10, "t": 40, "b": 40}, "plot_bgcolor": "white",
                    "paper_bgcolor": "white", "font": {"size": 11}, "showlegend": False, "annotations": []}
    for i, (title, dom) in enumerate(zip(titles, doms)):
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = _axis(i, dom, extent, "x", False)
        layout[f"yaxis{suffix}"] = _axis(i, dom, extent, "y" if i == 0 else "", True)
        layout["annotations"].append({"text": title, "x": (dom[0] + dom[1]) / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 12}})
    return layout


def _heat(q: np.ndarray, i: int, name: str, extent: float, coloraxis: str | None) -> dict:
    suffix = "" if i == 0 else str(i + 1)
    c = bin_centres(extent, np.shape(q)[0])
    trace: dict = {"type": "heatmap", "z": np.asarray(q, dtype=np.float64).T, "x": c, "y": c,
                   "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "name": name,
                   "hovertemplate": f"x=%{{x:.2f}}, y=%{{y:.2f}}<br>p=%{{z:.3g}}<extra>{name}</extra>"}
    trace.update({"coloraxis": coloraxis} if coloraxis else {"colorscale": DENSITY_COLORSCALE, "showscale": False})
    return trace


def _points(x: np.ndarray, i: int, name: str, color: str = POINT_COLOR, size: int = 3) -> dict:
    suffix = "" if i == 0 else str(i + 1)
    x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
    return {"type": "scattergl", "x": x[:, 0], "y": x[:, 1], "mode": "markers", "name": name,
            "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "hoverinfo": "skip",
            "marker": {"size": size, "color": color, "opacity": 0.6}}


def density_row(panels: Sequence[Panel], extent: float, shared_scale: bool = False, height: int = 300,
                points: dict[int, np.ndarray] | None = None) -> go.Figure:
    """Density tables ``q[ix, iy]`` side by side; ``shared_scale`` puts them on one colour axis (comparable);
    ``points``: panel index → ``[n, 2]`` samples drawn over that panel."""
    layout = _layout([t for t, _ in panels], extent, height, colorbar=shared_scale)
    data = [_heat(q, i, title, extent, "coloraxis" if shared_scale else None) for i, (title, q) in enumerate(panels)]
    if shared_scale:
        top = max((float(np.nanmax(q)) for _, q in panels if np.isfinite(q).any()), default=1.0)
        layout["coloraxis"] = {"colorscale": DENSITY_COLORSCALE, "cmin": 0.0, "cmax": top,
                               "colorbar": {"title": {"text": "p / bin"}, "thickness": 12}}
    for i, x in (points or {}).items():
        data.append(_points(x, i, f"{len(x)} samples"))
    return go.Figure({"data": data, "layout": layout})


def snapshot_range(x: np.ndarray, extent: float) -> float:
    """A square half-width that shows the particles of one snapshot (their 99th |coordinate| percentile, at
    least the target's extent): large near t = 1 (the prior's σ(1) ≈ 9.85), the extent at t = ε."""
    x = np.asarray(x, dtype=np.float64)
    if not x.size:
        return extent
    return float(max(extent, np.quantile(np.abs(x), 0.99) * 1.05))


def snapshot_figure(x: np.ndarray, t: float, extent: float, q: np.ndarray | None = None, height: int = 420,
                    title: str | None = None) -> go.Figure:
    """The particles at time ``t`` (a scatter), over the exact composed target ``q`` once they are inside its square."""
    half = snapshot_range(x, extent)
    layout = _layout([title or f"particles at t = {t:.3g}"], half, height, colorbar=False)
    data = []
    if q is not None:
        data.append(_heat(q, 0, "exact target", extent, None))
        data[0]["opacity"] = 0.85
    data.append(_points(x, 0, f"{len(x)} particles", SNAPSHOT_COLOR if q is None else POINT_COLOR))
    return go.Figure({"data": data, "layout": layout})


def animation_figure(snapshots: np.ndarray, times: Sequence[float], extent: float, height: int = 460,
                     duration_ms: int = 250) -> go.Figure:
    """A Plotly animation of the particles ``snapshots[k]`` ``[S, n, 2]`` at ``times[k]`` (play button and a
    time slider in the browser; each frame zooms to its particles)."""
    snapshots = np.asarray(snapshots, dtype=np.float32)
    frames = []
    for k, (xs, t) in enumerate(zip(snapshots, times)):
        half = snapshot_range(xs, extent)
        frames.append({"name": str(k), "data": [_points(xs, 0, f"t = {t:.3g}", SNAPSHOT_COLOR)],
                       "layout": {"xaxis": {"range": [-half, half]}, "yaxis": {"range": [-half, half]},
                                  "annotations": [{"text": f"t = {t:.3g}", "x": 0.5, "y": 1.0, "xref": "paper",
                                                   "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                                   "showarrow": False}]}})
    first = snapshots[0] if len(snapshots) else np.zeros((0, 2))
    layout = _layout([f"t = {times[0]:.3g}" if len(times) else ""], snapshot_range(first, extent), height, False)
    layout["margin"]["b"] = 90
    play = {"frame": {"duration": duration_ms, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    layout["updatemenus"] = [{"type": "buttons", "showactive": False, "x": 0.0, "y": -0.12, "xanchor": "left",
                              "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                          {"label": "❚❚ pause", "method": "animate",
                                           "args": [[None], {"frame": {"duration": 0}, "mode": "immediate"}]}]}]
    layout["sliders"] = [{"x": 0.18, "len": 0.8, "y": -0.05, "currentvalue": {"prefix": "step "},
                          "steps": [{"label": f"{t:.2g}", "method": "animate",
                                     "args": [[str(k)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}]}
                                    for k, t in enumerate(times)]}]
    data = [_points(first, 0, "particles", SNAPSHOT_COLOR)]
    return go.Figure({"data": data, "layout": layout, "frames": frames})


def loss_curve(steps: Sequence[int], losses: Sequence[float], height: int = 260) -> go.Figure:
    """Denoising score-matching loss (running mean) against the training step."""
    return go.Figure({"data": [{"type": "scatter", "x": list(steps), "y": list(losses), "mode": "lines",
                                "name": "DSM loss"}],
                      "layout": {"height": height, "margin": {"l": 50, "r": 10, "t": 30, "b": 40},
                                 "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "DSM loss"}},
                                 "plot_bgcolor": "white", "paper_bgcolor": "white", "showlegend": False}})


def l1_title(name: str, l1: float | None, floor: float | None = None) -> str:
    """A panel title with the binned L1 (and its noise floor)."""
    if l1 is None:
        return name
    return f"{name} · L1 {l1:.3f}" + ("" if floor is None else f" (floor {floor:.3f})")


__all__ = ["animation_figure", "base_density", "bin_centres", "density_csv", "density_row", "l1_title", "loss_curve",
           "sample_histogram", "samples_csv", "snapshot_figure", "snapshot_range"]
