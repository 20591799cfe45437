"""Bounds on the work one request may ask for, in one place (the README lists them).

Every count, batch size, length and upload the command line or a page accepts is checked against these
before any work starts; beyond a bound the request is refused with a SculptError that names the bound, so a
typo such as ``--n 1000000000`` never starts an hour of work or exhausts the memory.
"""

from __future__ import annotations

import math

from sculpt_core.errors import SculptError

#: Random seeds: integers in [0, MAX_SEED] (what torch and numpy generators accept alike).
MAX_SEED = 2**63 - 1
#: Optimiser steps of one training run.
MAX_STEPS = 1_000_000
#: Trajectories drawn by one roll-out (the grid's sampled reaching histogram, a training batch).
MAX_TRAJECTORIES = 1_000_000
#: Batch sizes of training, sampling and scoring (trajectories or molecules processed together).
MAX_BATCH = 65_536
#: Molecules one ``mol sample`` collects.
MAX_MOLECULES = 100_000
#: Molecules one ``mol score`` input may hold.
MAX_SCORED_MOLECULES = 1_000_000
#: Characters of one SMILES string (a 9-fragment molecule has ~100; scoring time grows faster than linearly).
MAX_SMILES_CHARS = 1_000
#: Bytes of an input file read whole (SMILES lists, reward arrays).
MAX_INPUT_BYTES = 100 * 2**20
#: Bytes of a file uploaded on a page (a 32×32 float64 log-reward array is ~8 KiB).
MAX_UPLOAD_BYTES = 2**20


def check_int(value: object, what: str, low: int, high: int, bound: str = "") -> int:
    """``value`` as an int in [low, high]; SculptError naming ``what`` and the bound otherwise (``bound`` says
    what the upper bound limits; bools and fractional numbers are refused, not truncated)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise SculptError(f"{what} must be an integer, got {value!r}")
    if value < low:
        raise SculptError(f"{what} must be ≥ {low}, got {value}")
    if value > high:
        raise SculptError(f"{what} must be at most {_fmt(high)}{f' (the bound on {bound})' if bound else ''}, "
                          f"got {_fmt(value)}")
    return value


def _fmt(n: int) -> str:
    if n == 2**63 - 1:
        return "2^63 − 1"
    return f"{n:,}" if abs(n) < 10**15 else f"{n:.3e}"


def check_seed(seed: object, what: str = "seed") -> int:
    """A seed in [0, MAX_SEED]."""
    return check_int(seed, what, 0, MAX_SEED, "seeds")


def check_size(n_bytes: int, what: str, bound: int = MAX_INPUT_BYTES) -> None:
    """Refuse a file larger than ``bound`` bytes, naming the bound."""
    if n_bytes > bound:
        raise SculptError(f"{what} is {_mib(n_bytes)}; the bound is {_mib(bound)}")


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 2**10:.3g} KiB" if n >= 2**10 else f"{n} bytes"


__all__ = ["MAX_BATCH", "MAX_INPUT_BYTES", "MAX_MOLECULES", "MAX_SCORED_MOLECULES", "MAX_SEED", "MAX_SMILES_CHARS",
           "MAX_STEPS", "MAX_TRAJECTORIES", "MAX_UPLOAD_BYTES", "check_int", "check_seed", "check_size"]
