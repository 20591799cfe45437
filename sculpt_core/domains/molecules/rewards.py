"""Molecule rewards of the paper: sEH proxy, synthetic accessibility (SA) and QED.

Flat rewards, all roughly in [0, 1]: ``seh_reward = clip(proxy_raw, 1e-4, 100) / 8`` (NaN → 0),
``sa_reward = (10 − SA) / 9`` with RDKit Contrib's Ertl–Schuffenhauer scorer, and RDKit's QED. The
compositional-sculpting reference does this arithmetic in float32 and so does this module, so the rewards
equal the reference's float32 values (``docs/seh_proxy.md``, "Rewards" and "Checking the implementation").

``score_smiles`` is the user-facing, never-raising path (CLI, app); ``score_mols`` is for training code.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from sculpt_core.core import io as core_io
from sculpt_core.core.limits import MAX_INPUT_BYTES, MAX_SCORED_MOLECULES, MAX_SMILES_CHARS, check_size
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules import seh_proxy

RECORD_KEYS = ("smiles", "valid", "proxy_raw", "seh_reward", "qed", "sa_score", "sa_reward")
#: Column order of ``score_mols``.
#: Columns of a sampled-molecules CSV (``mol sample --out``, the Molecule page download).
SAMPLE_COLUMNS = ("smiles", "seh_reward", "sa_reward", "qed")
SEH_CLIP_MIN = 1e-4
SEH_CLIP_MAX = 100.0
SEH_NORM = 8.0
SA_FAILURE_SCORE = 10.0

_SASCORER: Any = None


def _sascorer():
    """RDKit's Contrib ``SA_Score/sascorer.py``, imported once from ``RDConfig.RDContribDir``."""
    global _SASCORER
    if _SASCORER is None:
        from rdkit.Chem import RDConfig

        path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
        if not path.is_file():
            raise SculptError(f"RDKit's SA scorer is missing ({path}); install an rdkit build with Contrib")
        spec = importlib.util.spec_from_file_location("sculpt_rdkit_sascorer", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        _SASCORER = module
    return _SASCORER


def parse_smiles(smiles: Any):
    """RDKit Mol (default sanitization) or None for anything unparsable, empty or not a string; never raises."""
    from rdkit import Chem, rdBase

    if not isinstance(smiles, str) or not smiles.strip():
        return None
    text = smiles.strip()
    if len(text) > MAX_SMILES_CHARS or any(c.isspace() for c in text):
        return None  # over the bound (scoring time grows faster than linearly), or "CCO\nCC": RDKit would score CCO
    with rdBase.BlockLogs():
        try:
            mol = Chem.MolFromSmiles(text)
        except Exception:
            return None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def qed(mol) -> float:
    """RDKit QED with default arguments; 0 if it fails (or for None)."""
    from rdkit.Chem import QED

    if mol is None:
        return 0.0
    try:
        return float(QED.qed(mol))
    except Exception:
        return 0.0


def sa_score(mol) -> float:
    """Ertl–Schuffenhauer synthetic accessibility, 1 (easy) … 10 (hard); 10 if scoring fails (or None)."""
    scorer = _sascorer()
    if mol is None:
        return SA_FAILURE_SCORE
    try:
        return float(scorer.calculateScore(mol))
    except Exception:
        return SA_FAILURE_SCORE


def sa_reward(sa: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
    """``(10 − SA) / 9`` in float32 as the reference computes it; a float for a scalar, else a float32 array."""
    t = (10 - torch.as_tensor(np.asarray(sa, dtype=np.float64), dtype=torch.float32)) / 9
    arr = t.numpy()
    return float(arr) if arr.ndim == 0 else arr


def seh_reward(proxy_raw: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
    """``clip(proxy_raw, 1e-4, 100) / 8`` in float32, then NaN → 0 (the reference's order); float or float32 array."""
    t = torch.as_tensor(np.asarray(proxy_raw, dtype=np.float64), dtype=torch.float32)
    t = torch.nan_to_num(t.clamp(SEH_CLIP_MIN, SEH_CLIP_MAX) / SEH_NORM, nan=0.0)
    arr = t.numpy()
    return float(arr) if arr.ndim == 0 else arr


def _as_text(value: Any) -> str:
    """The input as written, for the output record ('' for None/NaN cells)."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def score_smiles(smiles: Sequence[Any], *, seh: bool | None = None, device: torch.device | str | None = None,
                 batch_size: int = 256) -> list[dict]:
    """Score SMILES strings; one record per input with keys ``RECORD_KEYS``. Never raises on bad SMILES.

    Invalid input (unparsable, empty, not a string) gives ``valid=False`` and NaN numbers. ``seh``: None
    computes sEH when the weights are available and leaves it NaN otherwise, True requires it (SculptError
    without weights), False skips it. A parsed molecule the proxy cannot featurise (atomic number > 56,
    dative bonds) keeps ``valid=True`` with ``proxy_raw`` NaN and ``seh_reward`` 0 (the NaN → 0 rule).
    """
    mols = [parse_smiles(s) for s in smiles]
    ok = [i for i, m in enumerate(mols) if m is not None]
    raw = np.full(len(mols), np.nan, dtype=np.float32)
    seh_r = np.full(len(mols), np.nan, dtype=np.float32)
    use_seh = seh if seh is not None else seh_proxy.seh_available()
    if use_seh and ok:
        raw[ok] = seh_proxy.seh_proxy_raw([mols[i] for i in ok], device=device, batch_size=batch_size)
        seh_r[ok] = seh_reward(raw[ok])
    sas = np.full(len(mols), np.nan)
    qeds = np.full(len(mols), np.nan)
    for i in ok:
        sas[i] = sa_score(mols[i])
        qeds[i] = qed(mols[i])
    sa_r = np.full(len(mols), np.nan, dtype=np.float32)
    if ok:
        sa_r[ok] = sa_reward(sas[ok])
    records = []
    for i, s in enumerate(smiles):
        records.append({
            "smiles": _as_text(s),
            "valid": mols[i] is not None,
            "proxy_raw": float(raw[i]),
            "seh_reward": float(seh_r[i]),
            "qed": float(qeds[i]),
            "sa_score": float(sas[i]),
            "sa_reward": float(sa_r[i]),
        })
    return records


def score_mols(mols: Sequence, device: torch.device | str | None = None,
               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat rewards for training: ``(rewards [N, 3] float32 with columns sEH, SA, QED, valid [N] bool)``.

    A molecule is valid when it is a non-empty Mol the proxy can featurise; invalid rows are all 0.
    Needs the sEH weights (SculptError otherwise). Tensors are on ``device`` (CPU by default).
    """
    n = len(mols)
    raw = seh_proxy.seh_proxy_raw(mols, device=device, batch_size=batch_size) if n else np.zeros(0, np.float32)
    valid = np.array([m is not None and m.GetNumAtoms() > 0 for m in mols], dtype=bool) & ~np.isnan(raw)
    rewards = np.zeros((n, 3), dtype=np.float32)
    idx = np.flatnonzero(valid)
    if idx.size:
        rewards[idx, 0] = seh_reward(raw[idx])
        rewards[idx, 1] = sa_reward(np.array([sa_score(mols[i]) for i in idx]))
        rewards[idx, 2] = np.array([qed(mols[i]) for i in idx], dtype=np.float32)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return torch.from_numpy(rewards).to(dev), torch.from_numpy(valid).to(dev)


# ----- files (CLI and app) ---------------------------------------------------------------------------
SMILES_SUFFIXES = (".smi", ".smiles", ".txt")


def read_smiles_file(path: str | Path) -> list[str]:
    """SMILES from a ``.smi`` file (one per line, optional name after whitespace) or a CSV with a ``smiles`` column.

    Raises SculptError for a missing/unreadable file, an unknown suffix, a CSV without a ``smiles`` column
    (matched case-insensitively) or a file with no SMILES at all. Bad SMILES themselves are kept.
    """
    import csv
    import io

    path = Path(path)
    if not path.is_file():
        raise SculptError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix != ".csv" and suffix not in SMILES_SUFFIXES:
        raise SculptError(f"unsupported input {path.name}: use a .smi file or a .csv with a 'smiles' column")
    try:
        check_size(path.stat().st_size, str(path), MAX_INPUT_BYTES)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SculptError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise SculptError(f"cannot read {path}: {exc.strerror or exc}") from None
    if suffix == ".csv":
        try:
            reader = csv.reader(io.StringIO(text, newline=""))  # a quoted field may hold a newline
            header = next(reader, None)
            if not header:
                raise SculptError(f"{path} is empty: expected a CSV with a 'smiles' column")
            names = [h.strip().lower() for h in header]
            if "smiles" not in names:
                raise SculptError(f"{path} has no 'smiles' column (columns: {', '.join(header)})")
            col = names.index("smiles")
            smiles = [row[col].strip() if col < len(row) else "" for row in reader if any(c.strip() for c in row)]
        except csv.Error as exc:
            raise SculptError(f"{path} is not a readable CSV: {exc}") from None
    else:
        smiles = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not smiles:
        raise SculptError(f"no SMILES in {path}")
    if len(smiles) > MAX_SCORED_MOLECULES:
        raise SculptError(f"{path} holds {len(smiles):,} SMILES; the bound is {MAX_SCORED_MOLECULES:,} per file")
    long = next((i for i, s in enumerate(smiles) if len(s) > MAX_SMILES_CHARS), None)
    if long is not None:
        raise SculptError(f"{path}: SMILES {long + 1} has {len(smiles[long]):,} characters; the bound is "
                          f"{MAX_SMILES_CHARS:,} (a 9-fragment molecule has about 100)")
    return smiles


def csv_cell(value: Any) -> str:
    """One CSV cell: None and NaN → empty, booleans → true/false, floats exact (repr), anything else str()."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text with ``header`` and ``rows`` formatted by :func:`csv_cell` (for downloads)."""
    return core_io.csv_text(header, rows, csv_cell)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file (parent folders created) with cells formatted by :func:`csv_cell`; all rows are
    formatted first and the file replaced atomically, so a failure leaves an existing file untouched."""
    core_io.write_csv(path, header, rows, csv_cell)


def write_scores_csv(path: str | Path, records: Sequence[dict]) -> None:
    """Write ``score_smiles`` records as CSV with columns ``RECORD_KEYS``; NaN → empty cell, floats exact (repr)."""
    write_csv(path, RECORD_KEYS, ([rec[k] for k in RECORD_KEYS] for rec in records))
