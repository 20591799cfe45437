"""Process-wide caches the pages share: the manifest stamp, the zoo listings and the loaded grid models.

Every cache key carries the manifest's modification time and the assets folder, so rebuilding the zoo (or
pointing ``SCULPT_ASSETS`` elsewhere) is picked up without restarting the app. Nothing heavy runs at import.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable, Sequence

import streamlit as st

from sculpt_core.core import zoo as registry
from sculpt_core.domains.grid import zoo as grid_zoo
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.errors import SculptError


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def manifest_stamp() -> float:
    """Changes whenever the manifest is rewritten (new zoo models or classifiers)."""
    return _mtime(registry.manifest_path())


def assets_dir() -> Path:
    """The assets folder the zoo is read from."""
    return registry.assets_dir()


def assets_key() -> str:
    """The assets folder as a cache-key part."""
    return str(registry.assets_dir())


@st.cache_data(show_spinner=False, max_entries=8)
def _zoo_names(kind: str, stamp: float, assets: str) -> tuple[list[str], str | None]:
    try:
        if kind == "mol":
            from sculpt_core.domains.molecules.zoo import mol_model_names  # RDKit only where molecules are asked for

            return mol_model_names(), None
        return grid_zoo.grid_model_names(), None
    except SculptError as exc:
        return [], str(exc)


def zoo_names(kind: str = "grid") -> tuple[list[str], str | None]:
    """(names of the shipped ``kind`` models, "grid" or "mol"; error message if the manifest is unreadable),
    re-read when the manifest changes."""
    return _zoo_names(kind, manifest_stamp(), assets_key())


@st.cache_resource(show_spinner="Loading model…", max_entries=32)
def _load_zoo_model(name: str, stamp: float, assets: str) -> GridBaseModel:
    model = grid_zoo.load_grid_model(name)
    model.name = name
    return model


def load_zoo_model(name: str) -> GridBaseModel:
    """A shipped grid model, loaded once per process (reloaded if the manifest changes)."""
    return _load_zoo_model(name, manifest_stamp(), assets_key())


def zoo_token(name: str) -> str:
    """The cache identity of a shipped grid model."""
    return f"zoo:{assets_key()}:{name}:{manifest_stamp()}"


@st.cache_resource(show_spinner=False, max_entries=16)
def _zoo_classifier(names: tuple[str, ...], stamp: float, assets: str):
    return grid_zoo.find_grid_classifier(list(names))


def zoo_classifier(names: Sequence[str]):
    """(classifier, manifest entry) shipped for exactly these grid bases in this order, or None. Raises SculptError."""
    return _zoo_classifier(tuple(names), manifest_stamp(), assets_key())


class LRU:
    """A small thread-safe LRU dictionary (one per process, shared by every session: wrap it in
    ``st.cache_resource``). ``get`` returns None for a missing key."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.RLock()  # re-entrant: a subclass may extend a method under the same lock

    def get(self, key: Hashable) -> Any:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


__all__ = ["LRU", "assets_dir", "assets_key", "load_zoo_model", "manifest_stamp", "zoo_classifier", "zoo_names", "zoo_token"]
