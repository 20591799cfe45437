"""Shipped molecule base models: ``assets/manifest.json`` section ``mol_models`` (name → {"file": …, …}).

Names resolve to files relative to the assets folder (``SCULPT_ASSETS`` overrides it, as for the grid zoo);
anything else is treated as a checkpoint path.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.model import MolBaseModel
from sculpt_core.domains.molecules.classifier import MANIFEST_SECTION, load_mol_classifier
from sculpt_core.core.zoo import assets_dir, read_manifest, resolve_checkpoint

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


# ----- guidance classifiers -------------------------------------------------------------------------------------
def resolve_mol_classifier(name_or_path: str) -> Path:
    """A manifest name (section ``mol_classifiers``) or a checkpoint path → the file (SculptError if neither)."""
    return resolve_checkpoint(name_or_path, MANIFEST_SECTION, "molecule classifier",
                              "train one with `python -m sculpt_core mol train-classifier --bases A,B --out clf.pt`")


def find_mol_classifier(base_names: Sequence[str]) -> Path | None:
    """The shipped classifier trained for exactly these bases in this order (manifest key ``a+b[+c]``), or None."""
    key = "+".join(base_names)
    entry = read_manifest().get(MANIFEST_SECTION, {}).get(key)
    if entry is None:
        return None
    if "file" not in entry:
        raise SculptError(f"manifest entry {key!r} in {MANIFEST_SECTION!r} has no 'file'")
    path = assets_dir() / entry["file"]
    if not path.is_file():
        raise SculptError(f"molecule classifier {key!r} is listed in the manifest but {path} is missing")
    return path


def warm_start_command(names: list, net: Any, meta: dict, path: Any, beta: float) -> str:
    """The ``mol train-classifier`` command that retrains a stale classifier from its own weights: the same
    architecture and objective (a warm start needs them), a step count to edit."""
    cfg = net.cfg
    flags = [f"--bases {','.join(names)}", f"--beta {float(meta.get('beta', beta)):g}",
             f"--labels {cfg.n_labels}", f"--hidden {cfg.hidden}", f"--layers {cfg.n_layers}",
             f"--objective {meta.get('objective', 'a1')}"]
    if cfg.alpha_cond:
        flags.append("--alpha-cond")
    if not cfg.action_head:
        flags.append("--no-action-head")
    return (f"python -m sculpt_core mol train-classifier {' '.join(flags)} --warm-start {shlex.quote(str(path))} "
            "--steps 3000 --out clf.pt")


def load_classifier_for(models: list, beta: float, name_or_path: str | None):
    """The classifier named by ``--classifier`` (a path or a manifest name), else the shipped one for these
    bases; SculptError with the command that trains one when there is none, or when it does not fit."""
    names = [m.name for m in models]
    if name_or_path:
        path = resolve_mol_classifier(name_or_path)
    else:
        path = find_mol_classifier(names)
        if path is None:
            raise SculptError(f"no classifier for bases {','.join(names)}: train one with `python -m sculpt_core mol "
                              f"train-classifier --bases {','.join(names)} --beta {beta:g} --out clf.pt` and pass "
                              "--classifier clf.pt")
    net, clf_bases, meta = load_mol_classifier(path)
    if len(clf_bases) != len(models):
        raise SculptError(f"{path} was trained for {len(clf_bases)} base models ({','.join(clf_bases)}), "
                          f"{len(models)} given")
    fingerprints = meta.get("base_fingerprints")
    if not fingerprints or len(fingerprints) != len(models):  # cannot be checked: never used on trust
        raise SculptError(f"{path} records no weight fingerprints of the base models it was trained on, so it "
                          f"cannot be checked against {','.join(names)}; retrain it with `python -m sculpt_core mol "
                          f"train-classifier --bases {','.join(names)}`")
    stale = [f"{m.name} (classifier trained on {clf_name})" for m, clf_name, fp in zip(models, clf_bases, fingerprints)
             if not m.matches_fingerprint(fp)]
    if stale:
        raise SculptError(f"{path} was trained on other versions of these base models: {', '.join(stale)}; "
                          f"retrain it with `{warm_start_command(names, net, meta, path, beta)}` (its weights as the "
                          "start)")
    trained_beta = meta.get("beta")
    if trained_beta is not None and abs(float(trained_beta) - float(beta)) > 1e-9:
        raise SculptError(f"{path} was trained on the bases at β = {float(trained_beta):g}; sample with --beta "
                          f"{float(trained_beta):g} or train a classifier for β = {beta:g}")
    return net, clf_bases, meta


__all__ = ["SECTION", "find_mol_classifier", "load_classifier_for", "load_mol_model", "mol_model_entries",
           "mol_model_names", "resolve_mol_classifier", "resolve_mol_model_path", "warm_start_command"]
