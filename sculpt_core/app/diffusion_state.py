"""Diffusion Sculpting page state, without Streamlit: the base identifiers the page offers, what a shared URL
carries, spec editing (table rows and JSON text), the composition of the chosen operator, and which methods apply.

Base identifiers (the ``bases`` URL parameter and the multiselect's values):

- ``ring`` (a name of the diffusion zoo): the shipped learned score model, its recorded spec as the exact target;
- ``spec:ring`` (``spec:`` + a built-in spec): the exact Gaussian mixture, no network;
- ``user:NAME``: a spec added in the page (table editor, JSON text or upload); the URL carries it in ``specs``
  (a JSON object name → spec), so a shared link restores it;
- ``trained:NAME``: a score model trained in this session (not restorable from a URL).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sculpt_core.app.url_state import query_getter, read_bases, read_numbers
from sculpt_core.core import algebra as A
from sculpt_core.core.operators import ALPHA_RANGE, OPERATORS, build_composition
from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS, GaussianMixture, spec_from_dict
from sculpt_core.errors import SculptError

SPEC_PREFIX = "spec:"
USER_PREFIX = "user:"
TRAINED_PREFIX = "trained:"
COMPARE = "compare"
METHOD_LABELS: dict[str, str] = {
    "oracle": "oracle (exact composed score)",
    "classifier": "classifier guidance",
    "superdiff": "SuperDiff (training-free)",
    "score-sum": "score sum Σ s_i (the shortcut)",
    "base": "one base alone",
    COMPARE: "compare all",
}
SAMPLER_LABELS = {"em": "Euler–Maruyama", "pc": "predictor–corrector", "ode": "probability-flow ODE"}
PRIOR_LABELS = {"gaussian": "N(0, σ(1)² I), the reference prior", "exact": "the target's own law at t = 1"}
N_RANGE = (100, 20000)
STEPS_RANGE = (10, 1000)
GAMMA_RANGE = (0.1, 5.0)
EXTENT_RANGE = (1.0, 12.0)
SEED_MAX = 10 ** 6
DEFAULT_N = 2000
DEFAULT_STEPS = 100
DEFAULT_EXTENT = 3.5
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


# ----- base identifiers ---------------------------------------------------------------------------------
def catalogue(zoo: Sequence[str], user_specs: Mapping[str, Any], trained: Mapping[str, Any]) -> list[str]:
    """Every base the page offers: zoo models, built-in specs, the session's added specs and trained models."""
    return ([*zoo] + [SPEC_PREFIX + n for n in BUILTIN_SPECS] + [USER_PREFIX + n for n in user_specs]
            + [TRAINED_PREFIX + n for n in trained])


def base_label(ident: str) -> str:
    """How the page names a base identifier."""
    for prefix, what in ((SPEC_PREFIX, "exact spec"), (USER_PREFIX, "your spec, exact"),
                         (TRAINED_PREFIX, "trained here, learned")):
        if ident.startswith(prefix):
            return f"{ident[len(prefix):]} ({what})"
    return f"{ident} (zoo, learned)"


def short_name(ident: str) -> str:
    """The identifier without its prefix."""
    for prefix in (SPEC_PREFIX, USER_PREFIX, TRAINED_PREFIX):
        if ident.startswith(prefix):
            return ident[len(prefix):]
    return ident


def default_bases(zoo: Sequence[str]) -> list[str]:
    """ring and band: the learned zoo models when shipped, else the exact built-in specs."""
    if {"ring", "band"} <= set(zoo):
        return ["ring", "band"]
    return [SPEC_PREFIX + "ring", SPEC_PREFIX + "band"]


def with_new_base(bases: Sequence[str], new: str, op: str | None) -> list[str]:
    """The selection once a just-added base joins it (it replaces the last one when the operator would become
    undefined: three chosen, or two with a two-model operator)."""
    current = [b for b in bases if b != new]
    two_model = op in OPERATORS and OPERATORS[op].two_models
    if len(current) >= 3 or (len(current) >= 2 and two_model):
        current = current[:1] if two_model else current[:2]
    return current + [new]


# ----- specs: table rows and JSON --------------------------------------------------------------------
def spec_rows(data: Mapping[str, Any]) -> list[dict[str, float]]:
    """A spec dictionary (``stds`` or isotropic ``covs``) → editor rows {weight, mean_x, mean_y, std}."""
    weights = list(data["weights"])
    if "stds" in data:
        stds = list(data["stds"])
    else:
        stds = [math.sqrt(max(float(c[0][0]), 0.0) * 0.5 + max(float(c[1][1]), 0.0) * 0.5) for c in data["covs"]]
    return [{"weight": float(w), "mean_x": float(m[0]), "mean_y": float(m[1]), "std": float(s)}
            for w, m, s in zip(weights, data["means"], stds)]


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def spec_from_rows(rows: Sequence[Mapping[str, Any]], name: str) -> tuple[dict, GaussianMixture]:
    """Editor rows → (spec dictionary, validated mixture). Rows left entirely empty are dropped; SculptError
    names the first bad cell."""
    weights, means, stds = [], [], []
    for k, row in enumerate(rows, 1):
        cells = [row.get(c) for c in ("weight", "mean_x", "mean_y", "std")]
        values = [_finite(c) for c in cells]
        if all(c is None or (isinstance(c, float) and math.isnan(c)) for c in cells):
            continue
        for col, v in zip(("weight", "mean_x", "mean_y", "std"), values):
            if v is None:
                raise SculptError(f"component {k}: {col} must be a finite number")
        weights.append(values[0])
        means.append([values[1], values[2]])
        stds.append(values[3])
    if not weights:
        raise SculptError("the table has no components: enter at least one row (weight, mean x, mean y, std)")
    data = {"weights": weights, "means": means, "stds": stds}
    return data, spec_from_dict(data, name)


def spec_from_json(text: str, name: str) -> tuple[dict, GaussianMixture]:
    """JSON text of a spec → (its dictionary, the validated mixture); SculptError for invalid JSON or specs."""
    if not (text or "").strip():
        raise SculptError("paste a JSON spec first, e.g. {\"weights\": [1, 1], \"means\": [[-1, 0], [1, 0]], "
                          "\"stds\": [0.4, 0.4]}")
    from sculpt_core.core.limits import MAX_UPLOAD_BYTES

    if len(text.encode("utf-8", errors="replace")) > MAX_UPLOAD_BYTES:
        raise SculptError(f"a spec must be at most {MAX_UPLOAD_BYTES // 2**20} MiB of JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SculptError(f"invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "name"}
    spec = spec_from_dict(data, name)
    return data, spec


def check_name(name: str, taken: Sequence[str]) -> str:
    """A valid new name for an added spec or a trained model (SculptError otherwise)."""
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise SculptError(f"name {name!r}: use 1 to 40 letters, digits, '_', '-' or '.'")
    if name in taken:
        raise SculptError(f"the name {name!r} is taken; choose another")
    return name


def compact_spec(spec: GaussianMixture) -> dict:
    """A spec as a short dictionary for the URL: ``stds`` when every component is isotropic, else ``covs``."""
    covs = spec.covs.tolist()
    iso = all(abs(c[0][1]) < 1e-12 and abs(c[0][0] - c[1][1]) < 1e-12 for c in covs)
    out: dict = {"weights": [round(w, 6) for w in spec.weights.tolist()],
                 "means": [[round(a, 6) for a in m] for m in spec.means.tolist()]}
    if iso:
        out["stds"] = [round(math.sqrt(c[0][0]), 6) for c in covs]
    else:
        out["covs"] = [[[round(a, 8) for a in row] for row in c] for c in covs]
    return out


# ----- the composition and the methods -------------------------------------------------------------
def diffusion_composition(op: str, m: int, alpha: float | None, labels: str = "", weights: str = "") -> A.Composition:
    """The chosen operator over ``m`` normalised specs. α = 0.5 is the plain operator (the same target), built
    without α so that SuperDiff's AND applies to it; linear weights over normalised bases are the mixture."""
    if alpha is not None and abs(alpha - 0.5) < 1e-9:
        alpha = None
    comp = build_composition(op, m, alpha, labels, weights)
    if comp.kind == "linear":
        comp = A.mixture(list(comp.weights))
    return comp


def method_note(method: str, comp: A.Composition) -> str | None:
    """Why ``method`` does not apply to ``comp`` (a neutral note), or None when it applies."""
    if method == "superdiff":
        if comp.kind in ("mixture", "linear"):
            return None
        if comp.kind == "labels" and comp.n_models == 2 and comp.labels in ((1, 2), (2, 1)) and comp.alpha is None:
            return None
        return ("SuperDiff composes mixtures (the mixture operator) and the AND of two bases (harmonic mean, or "
                f"labels 1,2, at α = 0.5); it does not apply to {comp.describe()}.")
    if method in ("oracle", "classifier") and comp.kind == "chained_hm":
        who = "The oracle guides with the exact" if method == "oracle" else "Classifier guidance needs a"
        return (f"{who} label posterior Q(y | x_t); the chained harmonic mean observes no labels, so it has "
                "none. Custom labels such as 1,2,3 condition on all three bases.")
    return None


# ----- page state in the URL -----------------------------------------------------------------------------
@dataclass
class DiffusionPageState:
    """Everything a shared link restores on the diffusion page."""

    bases: list[str] = field(default_factory=list)
    op: str = "hm"
    alpha: float = 0.5
    labels: str = "1,2"
    weights: str = ""
    gamma: float = 1.0
    method: str = "oracle"
    n: int = DEFAULT_N
    steps: int = DEFAULT_STEPS
    seed: int = 0
    model: int = 1
    sampler: str = "em"
    prior: str = "gaussian"
    extent: float = DEFAULT_EXTENT
    specs: dict[str, dict] = field(default_factory=dict)  # added specs among the bases: name → spec dictionary

    def to_query(self) -> dict[str, str]:
        """The URL query parameters of this state (operator inputs only where they are read; sampler, prior,
        extent and the base index only when they differ from the defaults)."""
        q = {"bases": ",".join(self.bases), "op": self.op, "alpha": f"{self.alpha:g}", "gamma": f"{self.gamma:g}",
             "method": self.method, "n": str(self.n), "steps": str(self.steps), "seed": str(self.seed)}
        inputs = OPERATORS[self.op].inputs if self.op in OPERATORS else ""
        if inputs == "labels":
            q["labels"] = self.labels
        if inputs == "weights":
            q["weights"] = self.weights
        if self.method == "base":
            q["model"] = str(self.model)
        if self.sampler != "em":
            q["sampler"] = self.sampler
        if self.prior != "gaussian":
            q["prior"] = self.prior
        if abs(self.extent - DEFAULT_EXTENT) > 1e-12:
            q["extent"] = f"{self.extent:g}"
        if self.specs:
            q["specs"] = json.dumps(self.specs, separators=(",", ":"), sort_keys=True)
        return q


def _number(raw: str, lo: float, hi: float, integer: bool) -> float | int:
    value = int(raw) if integer else float(raw)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError
    return value


def parse_query(params: Mapping[str, Any], zoo: Sequence[str], methods: Sequence[str],
                trained: Mapping[str, Any] | None = None) -> tuple[DiffusionPageState, list[str]]:
    """Validate URL query parameters → (state, warnings); bad values fall back to the defaults with a warning.
    Added specs come first (``specs``), so ``bases`` may name them."""
    state = DiffusionPageState(bases=default_bases(zoo))
    warnings: list[str] = []

    get = query_getter(params)

    if (raw := get("specs")) is not None:
        from sculpt_core.core.limits import MAX_UPLOAD_BYTES

        if len(raw) > MAX_UPLOAD_BYTES:
            raw = "{}"  # a link this long is not one the page wrote: ignore its specs
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise SculptError("expected a JSON object name → spec")
            for name, spec in data.items():
                if not NAME_RE.match(str(name)):
                    raise SculptError(f"bad spec name {name!r}")
                state.specs[str(name)] = compact_spec(spec_from_dict(spec, str(name)))
        except (json.JSONDecodeError, SculptError) as exc:
            state.specs = {}
            warnings.append(f"URL parameter specs ignored ({exc}).")
    available = catalogue(zoo, state.specs, trained or {})
    read_bases(get, available, state, warnings, noun="base")
    if (raw := get("op")) is not None:
        if raw in OPERATORS:
            state.op = raw
        else:
            warnings.append(f"URL parameter op={raw!r} ignored: one of {', '.join(OPERATORS)}.")
    numbers = (("alpha", *ALPHA_RANGE, False), ("gamma", *GAMMA_RANGE, False), ("n", *N_RANGE, True),
               ("steps", *STEPS_RANGE, True), ("seed", 0, SEED_MAX, True), ("model", 1, 3, True),
               ("extent", *EXTENT_RANGE, False))
    read_numbers(get, numbers, state, warnings, rounded=("alpha", "gamma"))
    for key, choices in (("method", [*methods, COMPARE]), ("sampler", list(SAMPLER_LABELS)),
                         ("prior", list(PRIOR_LABELS))):
        if (raw := get(key)) is None:
            continue
        if raw in choices:
            setattr(state, key, raw)
        else:
            warnings.append(f"URL parameter {key}={raw!r} ignored: one of {', '.join(choices)}.")
    if (raw := get("labels")) is not None:
        state.labels = raw[:60]
    if (raw := get("weights")) is not None:
        state.weights = raw[:80]
    return state, warnings


__all__ = ["COMPARE", "DiffusionPageState", "METHOD_LABELS", "SPEC_PREFIX", "TRAINED_PREFIX", "USER_PREFIX",
           "base_label", "catalogue", "check_name", "compact_spec", "default_bases", "diffusion_composition",
           "method_note", "parse_query", "short_name", "spec_from_json", "spec_from_rows", "spec_rows",
           "with_new_base"]
