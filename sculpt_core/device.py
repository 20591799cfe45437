"""Device choice: CUDA when present (or when asked for), else CPU; an unknown or absent device is refused
with a clear message (``--device tpu:7``, or ``--device cuda`` on a machine without a GPU)."""

from __future__ import annotations

import os

import torch

from sculpt_core.errors import SculptError


def resolve_device(name: str | torch.device | None, what: str = "--device") -> torch.device:
    """The torch device ``name`` names, checked to exist on this machine (None: :func:`default_device`).
    SculptError for a name torch does not know, a device type this build or machine lacks, or a CUDA index
    beyond the GPUs present."""
    if name is None:
        return default_device()
    if isinstance(name, torch.device):
        device = name
    else:
        text = str(name).strip()
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError, TypeError):
            raise SculptError(f"{what} {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SculptError(f"{what} {name!r}: CUDA is not available on this machine (no GPU or a CPU-only torch "
                              "build); use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise SculptError(f"{what} {name!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return device
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise SculptError(f"{what} {name!r}: MPS is not available on this machine; use cpu")
        return device
    raise SculptError(f"{what} {name!r}: Sculpt runs on cpu, cuda or mps, not {device.type}")


def default_device() -> torch.device:
    """The device heavy work runs on: ``SCULPT_DEVICE`` if set (checked like ``--device``), else CUDA when
    available, else CPU."""
    wanted = os.environ.get("SCULPT_DEVICE")
    if wanted:
        return resolve_device(wanted, "SCULPT_DEVICE")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A short human-readable name of the compute device, for the app and CLI output."""
    device = device or default_device()
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} threads)"
