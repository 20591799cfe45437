"""Reading a page's view from URL query parameters, shared by every page: one value per key, bounded numbers,
base lists and choices, each bad value falling back to its default with one warning (never a traceback)."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

Getter = Callable[[str], "str | None"]


def query_getter(params: Mapping[str, Any]) -> Getter:
    """``get(key)``: the key's last value as text (a repeated key keeps its last value), None when absent."""

    def get(key: str) -> str | None:
        value = params.get(key)
        if isinstance(value, (list, tuple)):
            value = value[-1] if value else None
        return None if value is None else str(value)

    return get


def parse_number(raw: str, lo: float, hi: float, integer: bool) -> float | int:
    """A finite number in [lo, hi] (an integer written with ASCII digits when ``integer``); ValueError otherwise."""
    text = raw.strip()
    if integer and not (text.isascii() and text.lstrip("+-").isdigit()):
        raise ValueError
    value = int(text) if integer else float(text)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError
    return value


def read_numbers(get: Getter, specs: Sequence[tuple[str, float, float, bool]], state: Any, warnings: list[str],
                 rounded: Sequence[str] = ("alpha", "gamma")) -> None:
    """Set ``state.<key>`` from each present (key, lo, hi, integer) spec; keys in ``rounded`` to 2 decimals."""
    for key, lo, hi, integer in specs:
        if (raw := get(key)) is None:
            continue
        try:
            value = parse_number(raw, lo, hi, integer)
        except ValueError:
            kind = "an integer" if integer else "a number"
            warnings.append(f"URL parameter {key}={raw!r} ignored: expected {kind} in [{lo:g}, {hi:g}].")
            continue
        setattr(state, key, round(value, 2) if key in rounded else value)


def read_bases(get: Getter, available: Sequence[str], state: Any, warnings: list[str], noun: str = "model") -> None:
    """Set ``state.bases`` from ``bases`` (1 to 3 distinct names of ``available``), else warn and keep the default."""
    if (raw := get("bases")) is None:
        return
    names = [n for n in raw.split(",") if n]
    unknown = [n for n in names if n not in available]
    dupes = len(set(names)) != len(names)
    if unknown or dupes or not 1 <= len(names) <= 3:
        why = (f"unknown {noun}(s) {', '.join(unknown)}" if unknown else
               f"a {noun} is repeated" if dupes else f"choose 1 to 3 {noun}s")
        shown = ", ".join(state.bases) or f"no {noun}s"
        warnings.append(f"URL parameter bases={raw!r} ignored ({why}); showing {shown}.")
    else:
        state.bases = names
