"""Shipped molecule base models: ``assets/manifest.json`` section ``mol_models`` (name → {"file": …, …}).

Names resolve to files relative to the assets folder (``SCULPT_ASSETS`` overrides it, as for the grid zoo);
anything else is treated as a checkpoint path.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.model import MolBaseModel
from sculpt_core.core.zoo import read_manifest, resolve_checkpoint

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
    return resolve_checkpoint(name_or_path, SECTION, "molecule model")


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
