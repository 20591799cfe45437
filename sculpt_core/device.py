"""Device choice: CUDA when present (or when asked for), else CPU."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """The device heavy work runs on: ``SCULPT_DEVICE`` if set, else CUDA when available, else CPU."""
    wanted = os.environ.get("SCULPT_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A short human-readable name of the compute device, for the app and CLI output."""
    device = device or default_device()
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} threads)"
