"""The model zoo: pre-trained models shipped in ``assets/``, listed in ``assets/manifest.json``, loaded by name.

``SCULPT_ASSETS`` points to another assets folder (same layout) if set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sculpt_core.errors import SculptError

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


def update_manifest(section: str, key: str, entry: dict) -> None:
    """Read-modify-write one manifest entry (builders running side by side do not overwrite each other)."""
    manifest = read_manifest()
    manifest[section][key] = entry
    write_manifest(manifest)


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



def classifier_key(base_names: list[str]) -> str:
    """Manifest key of the classifier for an ordered list of base models."""
    return "+".join(base_names)
