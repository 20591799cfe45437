"""A static PNG of grid heatmap panels with what a figure in a paper needs: a title (the composition's
parameters), a title per panel, axes with ticks and their names, and colour bars (one shared bar, or one per
panel), under the same colour scales as the page (shared, per panel, log10).

Pillow only: no browser and no kaleido (plotly's ``to_image`` needs kaleido and a Chrome, which an offline
install may not have). Origin lower-left, z0 up, z1 right, as on the page.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import plotly.colors

from sculpt_core.app.grid_figures import Panel, color_ranges, jittered_points, log_ticks
from sculpt_core.domains.grid.viz import POINT_COLOR

_STOPS = np.array([plotly.colors.hex_to_rgb(c) for c in plotly.colors.sequential.Viridis], dtype=np.float64)
NAN_GREY = 230


def colormap(t: np.ndarray) -> np.ndarray:
    """Viridis RGB (uint8) of values ``t`` in [0, 1]; NaN → light grey."""
    t = np.asarray(t, dtype=np.float64)
    ok = np.isfinite(t)
    x = np.clip(np.where(ok, t, 0.0), 0.0, 1.0) * (len(_STOPS) - 1)
    i0 = np.clip(np.floor(x).astype(int), 0, len(_STOPS) - 2)
    frac = (x - i0)[..., None]
    rgb = _STOPS[i0] * (1 - frac) + _STOPS[i0 + 1] * frac
    rgb[~ok] = NAN_GREY
    return rgb.astype(np.uint8)


#: Fonts with the Greek letters and symbols of the titles (α, β, ⊗, →), tried in order.
FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
              "DejaVuSans.ttf")
_ASCII = {"α": "alpha", "β": "beta", "ω": "w", "→": "->", "⊗": "(x)", "◑": "(-)", "−": "-", "·": "|", "∝": "~",
          "δ": "delta", "Σ": "sum"}


def _font(size: int):
    """(a font for ``size`` px, whether it draws the titles' symbols); Pillow's default font otherwise."""
    from PIL import ImageFont

    for path in FONT_PATHS:
        try:
            return ImageFont.truetype(path, size), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size), False
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default(), False


def ascii_text(text: str) -> str:
    """``text`` with the symbols a plain font cannot draw spelled out (α → alpha, ⊗ → (x), …)."""
    return "".join(_ASCII.get(ch, ch if ord(ch) < 256 else "?") for ch in text)


def _ticks(lo: float, hi: float, log: bool) -> list[tuple[float, str]]:
    if log:
        vals, text = log_ticks(lo, hi)
        return list(zip(vals, text))
    if hi <= lo:
        return [(lo, f"{lo:.3g}")]
    step = 10 ** math.floor(math.log10((hi - lo) / 4))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 5:
            step *= mult
            break
    k = math.ceil(lo / step - 1e-9)
    out = []
    while k * step <= hi + 1e-12:
        out.append((k * step, f"{k * step:.3g}"))
        k += 1
    return out


def _wrap(text: str, chars: int, lines: int = 2) -> list[str]:
    """``text`` in at most ``lines`` lines of ``chars`` characters, broken at " · " or a space where it can be
    (the last line cut with "…" when even that is too long)."""
    out: list[str] = []
    rest = text
    while rest and len(out) < lines:
        if len(rest) <= chars:
            out.append(rest)
            rest = ""
            break
        cut = rest.rfind(" · ", 0, chars + 1)
        cut = cut if cut > 0 else rest.rfind(" ", 0, chars + 1)
        cut = cut if cut > 0 else chars
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip(" ·")
    if rest:
        out[-1] = out[-1][: chars - 1].rstrip() + "…"
    return out or [""]


def panels_png(panels: Sequence[Panel], title: str = "", scale: str = "shared", cell: int = 8,
               colorbar_title: str = "p", points: np.ndarray | None = None, points_panel: int = 0,
               compress_level: int = 6) -> bytes:
    """PNG bytes of ``panels`` (title, ``p[z0, z1]``) side by side with axes, ticks, panel titles, the figure
    ``title`` and colour bars under ``scale`` ("shared", "panel" or "log"); ``points``: sampled cells ``[n, 2]``
    (z0, z1), jittered inside their cell as on the page, drawn over panel ``points_panel``. ``compress_level``:
    zlib's 0-9 (the page's live view takes 1: a third of the encoding time for a somewhat larger file)."""
    from PIL import Image, ImageDraw

    if not panels:
        raise ValueError("no panels to draw")
    arrays = [np.asarray(z, dtype=np.float64) for _, z in panels]
    ranges = color_ranges(arrays, scale)
    per_panel = scale == "panel"
    h, w = arrays[0].shape[:2]
    pw, ph = w * cell, h * cell
    (small, unicode_ok), (normal, _) = _font(12), _font(14)
    text_of = (lambda t: t) if unicode_ok else ascii_text
    chars = max(12, pw // 6)  # what fits over a panel in the 12 px font
    names = [_wrap(text_of(name), chars) for name, _ in panels]
    extra = 14 * (max(len(n) for n in names) - 1)  # a second title line
    left, top, bottom, gap = 62, (58 if title else 30) + extra, 56, 24
    bar_w = 78 if per_panel else 0
    slot = pw + bar_w + gap
    width = left + len(panels) * slot + (0 if per_panel else 90)
    img = Image.new("RGB", (width, top + ph + bottom), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((10, 8), text_of(title), fill="black", font=normal)

    def bar(x0: int, lo: float, hi: float) -> None:
        steps = np.linspace(1.0, 0.0, ph)[:, None].repeat(12, 1)
        img.paste(Image.fromarray(colormap(steps), "RGB"), (x0, top))
        draw.rectangle([x0, top, x0 + 12, top + ph], outline="#888888")
        for v, text in _ticks(lo, hi, scale == "log"):
            y = top + ph - (v - lo) / (hi - lo) * ph if hi > lo else top + ph
            draw.line([x0 + 12, y, x0 + 16, y], fill="black")
            draw.text((x0 + 18, y - 7), text, fill="black", font=small)
        draw.text((x0, top - 18), text_of(colorbar_title + (" (log)" if scale == "log" else "")), fill="black", font=small)

    for i, ((name, _), z) in enumerate(zip(panels, arrays)):
        lo, hi = ranges[i]
        shown = np.log10(np.maximum(z, 10 ** lo)) if scale == "log" else z
        shown = np.where(np.isfinite(z), shown, np.nan)
        t = (shown - lo) / (hi - lo) if hi > lo else np.zeros_like(shown)
        tile = Image.fromarray(colormap(t)[::-1], "RGB").resize((pw, ph), Image.NEAREST)  # z0 = 0 at the bottom
        x0 = left + i * slot
        img.paste(tile, (x0, top))
        draw.rectangle([x0, top, x0 + pw, top + ph], outline="#888888")
        for k, line in enumerate(names[i]):
            draw.text((x0, top - 18 - 14 * (len(names[i]) - 1 - k)), line, fill="black", font=small)
        for k in range(0, max(h, w), 10):
            if k < w:
                x = x0 + (k + 0.5) * cell
                draw.line([x, top + ph, x, top + ph + 4], fill="black")
                draw.text((x - 6, top + ph + 6), str(k), fill="black", font=small)
            if k < h and i == 0:
                y = top + ph - (k + 0.5) * cell
                draw.line([x0 - 4, y, x0, y], fill="black")
                draw.text((x0 - 24, y - 7), str(k), fill="black", font=small)
        draw.text((x0 + pw // 2 - 60, top + ph + 26), text_of("z1 (moves in dim 1) →"), fill="black", font=small)
        if per_panel:
            bar(x0 + pw + 8, lo, hi)
    if points is not None and len(points) and 0 <= points_panel < len(panels):
        z0, z1 = jittered_points(points)
        x0 = left + points_panel * slot
        px = x0 + (z1 + 0.5) * cell
        py = top + ph - (z0 + 0.5) * cell
        for x, y in zip(px.tolist(), py.tolist()):
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=POINT_COLOR)
    if not per_panel:
        bar(left + len(panels) * slot, *ranges[0])
    label = Image.new("RGB", (ph, 16), "white")
    ImageDraw.Draw(label).text((ph // 2 - 60, 0), text_of("z0 (moves in dim 0) →"), fill="black", font=small)
    img.paste(label.rotate(90, expand=True), (6, top))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


__all__ = ["FONT_PATHS", "ascii_text", "colormap", "panels_png"]
