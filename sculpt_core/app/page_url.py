"""The URL state of the Home and Distribution Map pages (the grid, molecule, diffusion and image pages have their
own): which session-state keys a link carries, read once per session (a bad value falls back with one warning)
and written back on every run, so a copied link or a reload restores the view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import streamlit as st

from sculpt_core.app.url_state import parse_number, query_getter


@dataclass(frozen=True)
class UrlKey:
    """One URL parameter ``name`` ⇄ session-state key ``state``: a choice among ``choices`` or a number in
    [lo, hi] (an integer when ``integer``); ``default`` is left out of the URL."""

    name: str
    state: str
    default: Any
    choices: tuple[str, ...] = ()
    lo: float = 0.0
    hi: float = 0.0
    integer: bool = False

    def parse(self, raw: str) -> Any:
        """The value of ``raw``; ValueError when it is not one this key accepts."""
        if self.choices:
            if raw not in self.choices:
                raise ValueError
            return raw
        return parse_number(raw, self.lo, self.hi, self.integer)

    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return f"{'an integer' if self.integer else 'a number'} in [{self.lo:g}, {self.hi:g}]"

    def text(self, value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)


def parse_page_query(params: Mapping[str, Any], keys: Sequence[UrlKey]) -> tuple[dict[str, Any], list[str]]:
    """URL parameters → ({session-state key: value} of the valid ones, warnings for the others)."""
    get = query_getter(params)
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key in keys:
        if (raw := get(key.name)) is None:
            continue
        try:
            values[key.state] = key.parse(raw)
        except ValueError:
            warnings.append(f"URL parameter {key.name}={raw[:40]!r} ignored: expected {key.expected()}.")
    return values, warnings


def page_query(state: Mapping[str, Any], keys: Sequence[UrlKey]) -> dict[str, str]:
    """The URL parameters of the current view (values at their default left out)."""
    return {k.name: k.text(state[k.state]) for k in keys if k.state in state and state[k.state] != k.default}


def load_url_state(keys: Sequence[UrlKey], flag: str) -> None:
    """Once per session (``flag`` in session state): the URL's values into session state, a warning per bad
    one; then the defaults for keys still unset."""
    ss = st.session_state
    if flag not in ss:
        values, warnings = parse_page_query(st.query_params.to_dict(), keys)
        ss.update(values)
        ss[flag] = True
        for warning in warnings:
            st.warning(warning)
    for key in keys:
        ss.setdefault(key.state, key.default)


def write_url_state(keys: Sequence[UrlKey]) -> None:
    """The view into the URL (only when it changed, so no rerun is caused)."""
    query = page_query(st.session_state, keys)
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


__all__ = ["UrlKey", "load_url_state", "page_query", "parse_page_query", "write_url_state"]
