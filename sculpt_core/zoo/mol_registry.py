"""Shipped molecule base models: ``assets/manifest.json`` section ``mol_models`` (name → {"file": …, …}).

Names resolve to files relative to the assets folder (``SCULPT_ASSETS`` overrides it, as for the grid zoo);
anything else is treated as a checkpoint path.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import SculptError
from ..models.mol_model import MolBaseModel
from .registry import assets_dir, read_manifest

SECTION = "mol_models"


def mol_model_entries() -> dict[str, Any]:
    """The ``mol_models`` section of the manifest (empty if absent)."""
    entries = read_manifest().get(SECTION, {})
    if not isinstance(entries, dict):
        raise SculptError(f"manifest section {SECTION!r} must be an object")
    return entries


def mol_model_names() -> list[str]:
    """Names of the shipped molecule base models, in manifest order."""
    return list(mol_model_entries())


def resolve_mol_model_path(name_or_path: str) -> Path:
    """A zoo name or a checkpoint path → the checkpoint file (SculptError if neither)."""
    entries = mol_model_entries()
    if name_or_path in entries:
        entry = entries[name_or_path]
        if not isinstance(entry, dict) or "file" not in entry:
            raise SculptError(f"manifest entry {name_or_path!r} in {SECTION!r} has no 'file'")
        path = assets_dir() / entry["file"]
        if not path.is_file():
            raise SculptError(f"molecule model {name_or_path!r} is listed in the manifest but {path} is missing")
        return path
    candidate = Path(name_or_path)
    if candidate.suffix in (".pt", ".pth") or candidate.exists():
        if not candidate.is_file():
            raise SculptError(f"checkpoint not found: {candidate}")
        return candidate
    available = ", ".join(entries) or "(none shipped yet)"
    raise SculptError(f"unknown molecule model {name_or_path!r}; zoo models: {available}; or pass a .pt checkpoint path")


def load_mol_model(name_or_path: str) -> MolBaseModel:
    """Load a zoo model by name or a checkpoint by path (cached per process by path and mtime).

    The cached object is shared: callers must not modify its weights."""
    path = resolve_mol_model_path(name_or_path)
    model = _load_cached(str(path.resolve()), path.stat().st_mtime)
    if name_or_path in mol_model_entries():
        model.name = name_or_path
    return model


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float) -> MolBaseModel:
    return MolBaseModel.load(path)


__all__ = ["SECTION", "load_mol_model", "mol_model_entries", "mol_model_names", "resolve_mol_model_path"]
