"""What a download says about the view it came from: the composition's parameters (bases, operator, labels, α,
β, method, …) as CSV columns, in the file name and in a figure title. Shared by the grid and molecule pages;
pure (no Streamlit).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable, Sequence

from sculpt_core.core import algebra as A

_FILE_SAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")

#: Column names of the parameters, in the order they are written.
META_COLUMNS = ("bases", "operator", "labels", "alpha", "beta", "weights", "method")


def composition_labels(composition: A.Composition) -> str:
    """The observed labels y1..yn of a composition as text ("1 2"); empty where it has none (mixtures)."""
    if composition.kind == "labels":
        return " ".join(str(y) for y in composition.labels)
    if composition.kind == "chained_hm":
        return " ".join(str(i + 1) for i in range(composition.n_models)) + " (chained)"
    return ""


def composition_meta(bases: Sequence[str], op: str, composition: A.Composition, beta: float | None,
                     method: str, **extra: Any) -> dict[str, str]:
    """The parameters of a view as strings, :data:`META_COLUMNS` first, then ``extra`` (e.g. ``u``, ``seed``);
    α is empty where it does not apply, β empty for models that are not β-conditioned."""
    meta = {
        "bases": "+".join(bases),
        "operator": op,
        "labels": composition_labels(composition),
        "alpha": "" if composition.alpha is None else f"{composition.alpha:g}",
        "beta": "" if beta is None else f"{beta:g}",
        "weights": " ".join(f"{w:g}" for w in composition.weights),
        "method": method,
    }
    meta.update({k: str(v) for k, v in extra.items() if v is not None})
    return meta


def meta_stem(prefix: str, meta: dict[str, str]) -> str:
    """A file name stem naming the view: ``sculpt_grid_circle1+circle2_hm_y1-2_a0.5_b1_oracle``."""
    parts = [prefix, meta.get("bases", ""), meta.get("operator", "")]
    if meta.get("labels"):
        parts.append("y" + "-".join(meta["labels"].split()[: 6]))
    if meta.get("weights"):
        parts.append("w" + "-".join(meta["weights"].split()))
    if meta.get("alpha"):
        parts.append("a" + meta["alpha"])
    if meta.get("beta"):
        parts.append("b" + meta["beta"])
    parts.append(meta.get("method", ""))
    parts += [f"{k}{v}" for k, v in meta.items() if k not in META_COLUMNS and v]
    words = [_FILE_SAFE.sub("-", p).strip("-") for p in parts if p]
    return "_".join(w for w in words if w)[:180] or prefix


def meta_title(meta: dict[str, str]) -> str:
    """The parameters on one line, for a figure title: ``circle1+circle2 · hm · y = 1 2 · α = 0.5 · …``."""
    items = [meta.get("bases", ""), meta.get("operator", "")]
    for key, name in (("labels", "y"), ("weights", "ω"), ("alpha", "α"), ("beta", "β"), ("method", "method")):
        if meta.get(key):
            items.append(f"{name} = {meta[key]}")
    items += [f"{k} = {v}" for k, v in meta.items() if k not in META_COLUMNS and v]
    return " · ".join(i for i in items if i)


def csv_with_meta(header: Sequence[str], rows: Iterable[Sequence[Any]], meta: dict[str, str]) -> str:
    """CSV text whose first columns repeat the view's parameters on every row (so a file stays self-describing
    after it is concatenated with others), then ``header``'s columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*meta.keys(), *header])
    values = list(meta.values())
    for row in rows:
        writer.writerow([*values, *row])
    return buf.getvalue()


__all__ = ["META_COLUMNS", "composition_labels", "composition_meta", "csv_with_meta", "meta_stem", "meta_title"]
