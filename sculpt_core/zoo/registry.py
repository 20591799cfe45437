"""The model zoo: pre-trained models shipped in ``assets/``, listed in ``assets/manifest.json``, loaded by name.

``SCULPT_ASSETS`` points to another assets folder (same layout) if set.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import SculptError
from ..models.grid_model import GridBaseModel

REPO_ROOT = Path(__file__).resolve().parents[2]


def assets_dir() -> Path:
    return Path(os.environ.get("SCULPT_ASSETS", REPO_ROOT / "assets"))


def manifest_path() -> Path:
    return assets_dir() / "manifest.json"


def read_manifest() -> dict[str, Any]:
    """The manifest (empty sections if none exists yet)."""
    path = manifest_path()
    if not path.is_file():
        return {"grid_models": {}, "grid_classifiers": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SculptError(f"{path} is not valid JSON: {exc}") from None
    data.setdefault("grid_models", {})
    data.setdefault("grid_classifiers", {})
    return data


def write_manifest(data: dict[str, Any]) -> None:
    manifest_path().parent.mkdir(parents=True, exist_ok=True)
    manifest_path().write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    _load_grid_model_cached.cache_clear()
    _load_classifier_cached.cache_clear()


def grid_model_names() -> list[str]:
    """Names of the shipped grid base models, in manifest order."""
    return list(read_manifest()["grid_models"])


def resolve_grid_model_path(name_or_path: str) -> Path:
    """A zoo name or a path to a checkpoint file → the checkpoint path (clear error otherwise)."""
    return resolve_checkpoint(name_or_path, "grid_models", "grid model")


def resolve_checkpoint(name_or_path: str, section: str, what: str, hint: str = "or pass a .pt checkpoint path") -> Path:
    """A name listed in manifest ``section`` or a checkpoint path → the file; a clear SculptError otherwise.

    Shared by every kind of shipped file (grid and molecule models, classifiers)."""
    entries = read_manifest().get(section, {})
    entries = entries if isinstance(entries, dict) else {}
    if name_or_path in entries:
        entry = entries[name_or_path]
        if not isinstance(entry, dict) or "file" not in entry:
            raise SculptError(f"manifest entry {name_or_path!r} in {section!r} has no 'file'")
        path = assets_dir() / entry["file"]
        if not path.is_file():
            raise SculptError(f"{what} {name_or_path!r} is listed in the manifest but {path} is missing")
        return path
    candidate = Path(name_or_path)
    if candidate.suffix in (".pt", ".pth") or candidate.exists():
        if not candidate.is_file():
            raise SculptError(f"checkpoint not found: {candidate}")
        return candidate
    available = ", ".join(entries) or "(none shipped yet)"
    raise SculptError(f"unknown {what} {name_or_path!r}; zoo: {available}; {hint}")


def load_grid_model(name_or_path: str) -> GridBaseModel:
    """Load a zoo model by name, or a checkpoint by path. Zoo models are cached per process."""
    path = resolve_grid_model_path(name_or_path)
    model = _load_grid_model_cached(str(path.resolve()), path.stat().st_mtime)
    if name_or_path in read_manifest()["grid_models"]:
        model.name = name_or_path
    return model


@lru_cache(maxsize=64)
def _load_grid_model_cached(path: str, mtime: float) -> GridBaseModel:
    return GridBaseModel.load(path)


def classifier_key(base_names: list[str]) -> str:
    """Manifest key of the classifier for an ordered list of base models."""
    return "+".join(base_names)


def find_grid_classifier(base_names: list[str]):
    """The shipped classifier trained for exactly these base models in this order, or None.

    Returns ``(classifier, manifest entry)``; a classifier for the same models in another order is not
    reused (labels y_k refer to positions)."""
    from ..train.classifier_trainer import load_classifier

    entry = read_manifest()["grid_classifiers"].get(classifier_key(base_names))
    if entry is None:
        return None
    path = assets_dir() / entry["file"]
    net, bases, _ = _load_classifier_cached(str(path.resolve()), path.stat().st_mtime)
    if bases != list(base_names):
        raise SculptError(f"{path}: manifest says bases {base_names}, file says {bases}")
    return net, entry


@lru_cache(maxsize=16)
def _load_classifier_cached(path: str, mtime: float):
    from ..train.classifier_trainer import load_classifier

    return load_classifier(path)
