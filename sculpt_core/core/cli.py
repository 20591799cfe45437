"""What every domain's command line shares: list parsing, the composition named by --y/--alpha/--weights,
progress bars on stderr and the one-JSON-line output. The top-level parser is :mod:`sculpt_core.cli`; each
domain registers its own sub-commands from ``sculpt_core/domains/<name>/cli.py``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from sculpt_core.core import algebra as A
from sculpt_core.core.limits import MAX_SEED, check_int
from sculpt_core.core.operators import parse_float, parse_int
from sculpt_core.errors import SculptError

Progress = tuple[Callable[[int, dict], None], Callable[[], None]]


def emit(record: dict) -> None:
    """Print one JSON line of figures on stdout."""
    print(json.dumps(record, ensure_ascii=False), flush=True)


def progress_bar(total: int, desc: str) -> Progress:
    """A tqdm bar on stderr driven by (step, metrics) callbacks: ``(update, close)``."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)

    def update(step: int, metrics: dict) -> None:
        bar.n = step
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float)}, refresh=False)
        bar.refresh()

    return update, bar.close


def parse_list(text: str, kind: type, what: str) -> list:
    """``"a,b,c"`` → ``[kind(a), kind(b), kind(c)]`` (items stripped, empty items skipped); ints and floats
    are read strictly (:func:`parse_int`, :func:`parse_float`); SculptError naming the option otherwise."""
    items = [v.strip() for v in str(text).split(",") if v.strip() != ""]
    values = []
    for item in items:
        try:
            values.append(parse_int(item, what) if kind is int else parse_float(item, what) if kind is float
                          else kind(item))
        except (ValueError, SculptError):
            noun = {int: "integers (digits 0-9)", float: "finite decimal numbers"}.get(kind, f"{kind.__name__}s")
            raise SculptError(f"{what} must be a comma-separated list of {noun}; {item!r} in {text!r} is not one") from None
    if not values:
        raise SculptError(f"{what} is empty")
    return values


def int_arg(low: int, high: int, bound: str = "") -> Callable[[str], int]:
    """An argparse ``type=`` for an integer option in [low, high] (ASCII digits; ``bound`` names what the upper
    limit bounds), so a bad count is refused while the arguments are read, before any work."""

    def parse(text: str) -> int:
        try:
            return check_int(parse_int(text, "value"), "value", low, high, bound)
        except SculptError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "int"
    return parse


#: argparse ``type=`` of every ``--seed``: an integer in [0, 2^63 − 1].
seed_arg = int_arg(0, MAX_SEED, "seeds")


def positive_float(text: str) -> float:
    """argparse ``type=`` of a positive finite number (learning rates, time limits, temperatures)."""
    try:
        value = parse_float(text, "value")
    except SculptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"value must be positive, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """argparse ``type=`` of a number in [0, 1] (weights, fractions, averaging rates)."""
    try:
        value = parse_float(text, "value")
    except SculptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"value must be in [0, 1], got {text!r}")
    return value


def device_arg(text: str) -> str:
    """argparse ``type=`` of ``--device``: the name as given, once :func:`sculpt_core.device.resolve_device`
    has found that device on this machine (``--device cuda`` without a GPU is refused before any work)."""
    from sculpt_core.device import resolve_device

    try:
        resolve_device(text, "value")
    except SculptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def composition_from_args(n_models: int, y: str | None, alpha: float | None, weights: str | None,
                          beta: float = 1.0) -> A.Composition:
    """The Composition named by --y/--alpha (labels) or --weights (linear scalarisation)."""
    if (y is None) == (weights is None):
        raise SculptError("give exactly one of --y (labels) or --weights (linear scalarisation)")
    if weights is not None:
        if alpha is not None:
            raise SculptError("--alpha applies to --y compositions only")
        return A.linear(parse_list(weights, float, "--weights"), beta=beta)
    return A.conditioning(parse_list(y, int, "--y"), n_models, alpha, beta=beta)
