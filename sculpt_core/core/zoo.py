"""The model zoo: pre-trained models shipped in ``assets/``, listed in ``assets/manifest.json``, loaded by name.

``SCULPT_ASSETS`` points to another assets folder (same layout) if set. The manifest is written atomically
and updated under a file lock (:mod:`sculpt_core.core.io`), so builders running side by side keep every entry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sculpt_core.core.io import locked_update_json, read_json, write_json
from sculpt_core.errors import SculptError

REPO_ROOT = Path(__file__).resolve().parents[2]


def assets_dir() -> Path:
    return Path(os.environ.get("SCULPT_ASSETS", REPO_ROOT / "assets"))


def manifest_path() -> Path:
    return assets_dir() / "manifest.json"


#: Sections every manifest read has, even before anything was built.
DEFAULT_SECTIONS = ("grid_models", "grid_classifiers")

#: Seconds an update waits for another writer's lock before giving up with a clear error.
LOCK_TIMEOUT_S = 120.0


def _checked(data: Any, path: Path) -> dict[str, Any]:
    """The manifest with the default sections added; SculptError naming what is wrong if it is not a JSON
    object of sections, each an object of name → entry object, an entry's ``file`` a relative path inside the
    assets folder."""
    if not isinstance(data, dict):
        raise SculptError(f"{path} is not a manifest (expected a JSON object, got {type(data).__name__})")
    for section in DEFAULT_SECTIONS:
        data.setdefault(section, {})
    for section, entries in data.items():
        if not isinstance(entries, dict):
            raise SculptError(f"{path}: section {section!r} must be an object of name → entry, got "
                              f"{type(entries).__name__}")
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                raise SculptError(f"{path}: entry {name!r} of section {section!r} must be an object, got "
                                  f"{type(entry).__name__}")
            file = entry.get("file")
            if file is not None and not (isinstance(file, str) and file.strip() and not Path(file).is_absolute()
                                         and ".." not in Path(file).parts):
                raise SculptError(f"{path}: entry {name!r} of section {section!r}: 'file' must be a path inside "
                                  f"the assets folder, got {file!r}")
    return data


def read_manifest() -> dict[str, Any]:
    """The manifest (empty sections if none exists yet); SculptError if the file is not valid JSON."""
    path = manifest_path()
    return _checked(read_json(path, dict), path)


def write_manifest(data: dict[str, Any]) -> None:
    """Replace the whole manifest atomically (readers see the old or the new file, never a partial one)."""
    write_json(manifest_path(), data)


def update_manifest(section: str, key: str, entry: dict) -> None:
    """Set one manifest entry, holding the manifest's file lock for the whole read-modify-write (builders
    running side by side never drop each other's entries); a missing ``section`` is created."""
    path = manifest_path()

    def update(data: Any) -> dict[str, Any]:
        data = _checked(data, path)
        entries = data.setdefault(section, {})
        if not isinstance(entries, dict):
            raise SculptError(f"{path}: section {section!r} is not a mapping")
        entries[key] = entry
        return data

    locked_update_json(path, update, dict, timeout=LOCK_TIMEOUT_S)


def resolve_checkpoint(name_or_path: str, section: str, what: str, hint: str = "or pass a .pt checkpoint path") -> Path:
    """A name listed in manifest ``section`` or a checkpoint path → the file; a clear SculptError otherwise.

    Shared by every kind of shipped file (grid and molecule models, classifiers)."""
    entries = read_manifest().get(section, {})
    if name_or_path in entries:
        entry = entries[name_or_path]
        if "file" not in entry:
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
