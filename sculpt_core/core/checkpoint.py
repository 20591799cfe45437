"""Safe checkpoint files: a plain dict of tensors and metadata, loaded with ``weights_only=True``.

Saving is atomic (:func:`sculpt_core.core.io.atomic_write`): a process killed mid-save leaves the previous
checkpoint readable. Loading never executes code from the file; anything malformed becomes a
:class:`SculptError` that names the file and what is wrong.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from sculpt_core.core.io import atomic_write
from sculpt_core.errors import SculptError

T = TypeVar("T")


def save_checkpoint(path: str | Path, kind: str, payload: dict[str, Any]) -> Path:
    """Write ``{"format": kind, "version": 1, **payload}`` with ``torch.save`` into a temporary file that then
    replaces ``path`` in one step (parent folders created; the old file survives any failure)."""
    path = Path(path)
    data = {"format": kind, "version": 1, **payload}
    atomic_write(path, lambda fh: torch.save(data, fh))
    return path


def load_checkpoint(path: str | Path, kind: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint of the given ``kind`` safely; raise SculptError with a clear reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SculptError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, forbidden pickle globals, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SculptError(f"{path} is not a readable Sculpt checkpoint (refused or corrupt: {reason[:200]})") from None
    if not isinstance(data, dict) or "format" not in data:
        raise SculptError(f"{path} is not a Sculpt checkpoint (no 'format' field)")
    if data["format"] != kind:
        raise SculptError(f"{path} holds a {data['format']!r}, expected a {kind!r}")
    missing = [key for key in required if key not in data]
    if missing:
        raise SculptError(f"{path} is incomplete: missing {', '.join(missing)}")
    return data


def network_payload(net: torch.nn.Module) -> dict[str, Any]:
    """``{"config": net.cfg.to_dict(), "state_dict": CPU copies of the weights}``: how every network is stored,
    read back by :func:`stored_config` and :func:`load_state_dict_checked`."""
    return {"config": net.cfg.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def stored_config(path: str | Path, data: dict[str, Any], make: Callable[[dict[str, Any]], T], what: str = "model") -> T:
    """``make(data["config"])`` (a config dataclass, or a network built from one); SculptError naming the file
    when the stored configuration is not a dictionary or does not fit."""
    cfg = data.get("config")
    if not isinstance(cfg, dict):
        raise SculptError(f"{path}: invalid {what} configuration (not a dictionary)")
    try:
        return make(cfg)
    except (TypeError, SculptError) as exc:
        raise SculptError(f"{path}: invalid {what} configuration ({exc})") from None


#: What :func:`check_meta_numbers` accepts for each kind of metadata number.
_META_KINDS = {"positive": (lambda x: x > 0, "a positive finite number"),
               "nonnegative": (lambda x: x >= 0, "a finite number ≥ 0"),
               "finite": (lambda x: True, "a finite number"),
               "count": (lambda x: x >= 0 and float(x).is_integer(), "a whole number ≥ 0")}


def check_meta_numbers(path: str | Path, meta: dict[str, Any], kinds: dict[str, str]) -> None:
    """SculptError naming the file and key when a metadata number the code computes with is not of its kind
    (``kinds``: key → "positive" | "nonnegative" | "finite" | "count"); absent keys are fine."""
    for key, kind in kinds.items():
        if key not in meta or meta[key] is None:
            continue
        value = meta[key]
        ok, what = _META_KINDS[kind]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
            raise SculptError(f"{path}: metadata {key!r} must be {what}, got {value!r}")


def load_state_dict_checked(module: torch.nn.Module, state: Any, path: str | Path) -> None:
    """``module.load_state_dict`` that reports shape/key mismatches and non-finite weights as SculptError."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SculptError(f"{path}: state_dict is not a mapping of tensors")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SculptError(f"{path}: weights do not fit the stored architecture ({str(exc).splitlines()[0][:200]})") from None
    if any(not torch.isfinite(p).all() for p in module.state_dict().values()):
        raise SculptError(f"{path}: weights contain NaN or infinite values")


#: network -> {exclude: (weights' storage and version stamp, sha256 of the weights)}; see weights_fingerprint
_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def weights_fingerprint(net: "torch.nn.Module", extra: tuple = (), exclude: tuple[str, ...] = ()) -> str:
    """Short sha256 of a network's weights (keys sorted), then of the ``extra`` tensors: ties a guidance
    classifier to the exact base models it was trained on (a retrained base with the same name no longer matches).
    Weights whose key starts with one of the ``exclude`` prefixes are left out (parts nothing downstream reads).

    The weights' hash is kept for the network (outside it, so copying or pickling it is unaffected), valid while
    every weight tensor keeps its storage, strides and version counter: an in-place change of a parameter or
    buffer (an optimiser step, ``load_state_dict``, ``p.mul_()`` under ``no_grad``) bumps the counter. Writes that
    bypass the tensor's counter (through ``p.data``, or a numpy array sharing its memory) are not seen: the
    project does none. A page asks for its models' fingerprints on every rerun, and hashing the largest molecule
    network took 2.9 ms (quiet), the page's models 55 ms in a profiled server run."""
    import hashlib

    items = [(key, value) for key, value in sorted(net.state_dict().items())
             if not (exclude and key.startswith(exclude))]
    stamp = (tuple(exclude), tuple((key, value.data_ptr(), value._version, tuple(value.shape), value.stride(),
                                    value.storage_offset(), str(value.dtype), str(value.device))
                                   for key, value in items))
    memo = _FINGERPRINTS.setdefault(net, {})
    cached = memo.get(stamp[0])
    if cached is not None and cached[0] == stamp[1]:
        digest = cached[1].copy()
    else:
        digest = hashlib.sha256()
        for key, value in items:
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        memo[stamp[0]] = (stamp[1], digest.copy())
    for value in extra:
        digest.update(value.detach().cpu().double().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]

