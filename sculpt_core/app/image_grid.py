"""Image grids for the Diffusion Images page, without Streamlit: a batch of RGB images tiled into one picture
and written as PNG bytes (what the page shows and what its download buttons hand out, so both are the same).

PNG goes through Pillow when it is installed (Streamlit depends on it), else through a minimal writer of
8-bit RGB PNGs (zlib-compressed scanlines with filter type 0), so a grid can always be downloaded.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np

PAD_VALUE = 0.3  # the gray between the cells: digits are drawn on black
DISPLAY_PX = 480  # a grid is enlarged (nearest neighbour, an integer factor) to about this width


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of the grid of ``n`` images: as square as possible (64 → 8 × 8, 10 → 3 × 4)."""
    if n < 1:
        raise ValueError("a grid needs at least one image")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def tile(images: np.ndarray, pad: int = 1, pad_value: float = PAD_VALUE) -> np.ndarray:
    """Images ``[N, C, H, W]`` with values in [0, 1] (C = 3 RGB, or 1 gray) → one ``[rows·(H+pad)+pad,
    cols·(W+pad)+pad, 3]`` uint8 picture, row by row; empty cells and the gaps are ``pad_value`` gray."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 3, H, W] or [N, 1, H, W], got shape {list(x.shape)}")
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n, _, h, w = x.shape
    rows, cols = grid_shape(n)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        out[y0:y0 + h, x0:x0 + w] = np.transpose(x[k], (1, 2, 0))
    return np.round(np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)


def enlarge(rgb: np.ndarray, scale: int) -> np.ndarray:
    """``[H, W, 3]`` → ``[H·scale, W·scale, 3]`` by repeating pixels (crisp pixels instead of a browser's blur)."""
    if scale <= 1:
        return rgb
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def display_scale(width: int, target: int = DISPLAY_PX) -> int:
    """The integer enlargement that brings a grid ``width`` pixels wide closest to ``target`` (at least 1)."""
    return max(1, round(target / max(width, 1)))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes_plain(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``[H, W, 3]`` uint8 with the standard library only."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter type 0 before every scanline
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolor, deflate, no filter, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, 6))
            + _png_chunk(b"IEND", b""))


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``[H, W, 3]`` uint8 picture (Pillow when installed, else :func:`png_bytes_plain`)."""
    try:
        from PIL import Image
    except ImportError:
        return png_bytes_plain(rgb)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def grid_png(images: np.ndarray, target: int = DISPLAY_PX) -> bytes:
    """The PNG of ``images`` tiled into a grid and enlarged to about ``target`` pixels wide."""
    rgb = tile(images)
    return png_bytes(enlarge(rgb, display_scale(rgb.shape[1], target)))


__all__ = ["DISPLAY_PX", "display_scale", "enlarge", "grid_png", "grid_shape", "png_bytes", "png_bytes_plain", "tile"]
