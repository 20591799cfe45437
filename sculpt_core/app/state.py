"""The thin layer between the Streamlit pages and the library.

Two halves:
- pure helpers (no Streamlit): operator table, parsing of labels/weights, building the composition,
  reading/writing the page state from/to URL query parameters, downloads, upload validation,
  training configurations (tiny when ``SCULPT_FAST_TRAINING=1``);
- cached wrappers (Streamlit): zoo models and classifiers load once per process (``st.cache_resource``),
  composed results are cached by their inputs (``st.cache_data``). Models trained in a session live in
  ``st.session_state`` and are identified in cache keys by a per-model random token.

Nothing heavy runs at import time.
"""

from __future__ import annotations

import io
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import streamlit as st
import torch

from sculpt_core.core import algebra as A
from sculpt_core.domains.grid.compose import GridBases, compose, prepare_bases, sample_points
from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.domains.grid.rewards import GRID_REWARDS, grid_log_reward, validate_log_reward
from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig
from sculpt_core.domains.grid.train import GridTrainConfig, train_grid_model
from sculpt_core.domains.grid.zoo import GRID_BETA_RANGE
from sculpt_core.core import zoo as registry
from sculpt_core.domains.grid import zoo as grid_zoo

GRID = (32, 2)
PAPER_PAIR = ("symmetric_shubert", "diag_sigmoid")
PAPER_TRIPLE = ("circle1", "circle2", "circle3")

# ----- operators -----------------------------------------------------------------------------------
OPERATORS: dict[str, str] = {
    "hm": "harmonic mean — A and B  (p1 ⊗ p2)",
    "contrast": "contrast — A but not B  (p1 ◑ p2)",
    "reverse": "reverse contrast — B but not A  (p2 ◑ p1)",
    "chained_hm": "chained harmonic mean — all of them (eq. 8)",
    "labels": "custom labels y1..yn (with multiplicities)",
    "linear": "linear weights  Σ ω_i R_i",
    "mixture": "mixture  Σ ω_i p_i",
}
TWO_MODEL_OPS = ("hm", "contrast", "reverse")
METHOD_CHOICES: dict[str, str] = {
    "oracle": "oracle (exact guidance)",
    "classifier": "classifier guidance",
    "reaching": "reaching mixing",
    "ensemble": "ensemble (u = 1)",
    "compare": "compare all",
}
U_CHOICES: dict[str, str] = {
    "exact": "exact u (DP)",
    "flow": "learned flow u = F/Z",
    "trajectory": "trajectory product (sampled)",
}
ALPHA_RANGE = (0.01, 0.99)
POINTS_MAX = 5000
TRAJECTORY_SAMPLES = 20000


def parse_labels(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` / ``"y1 y1 y2"`` → (1, 2, 3) / (1, 1, 2). Raises SculptError for anything else."""
    parts = [p for p in re.split(r"[,\s;]+", (text or "").strip()) if p]
    if not parts:
        raise SculptError("enter the observed labels, e.g. 1,2 (harmonic mean) or 1,1 (contrast)")
    out = []
    for part in parts:
        token = part[1:] if part[:1] in ("y", "Y") else part
        if not token.isdigit():
            raise SculptError(f"labels must be model numbers like 1,2,3 (repeats allowed); {part!r} is not one")
        out.append(int(token))
    if len(out) > 6:
        raise SculptError(f"at most 6 labels, got {len(out)}")
    return tuple(out)


def parse_weights(text: str, m: int) -> tuple[float, ...]:
    """``"1, 0.5"`` → (1.0, 0.5); one non-negative finite weight per model. Raises SculptError."""
    parts = [p for p in re.split(r"[,\s;]+", (text or "").strip()) if p]
    try:
        weights = tuple(float(p) for p in parts)
    except ValueError:
        raise SculptError(f"weights must be numbers separated by commas, e.g. {','.join(['1'] * m)}; got {text!r}") from None
    if len(weights) != m:
        raise SculptError(f"give one weight per chosen model ({m}), got {len(weights)}: {text!r}")
    if any(not math.isfinite(w) for w in weights):
        raise SculptError(f"weights must be finite numbers, got {text!r}")
    return weights


def alpha_applies(op: str, m: int, labels_text: str = "") -> bool:
    """Whether the α slider means something: two models and an operator with two labels (eq. 7)."""
    if m != 2:
        return False
    if op in TWO_MODEL_OPS:
        return True
    if op == "labels":
        try:
            return len(parse_labels(labels_text)) == 2
        except SculptError:
            return False
    return False


def build_composition(op: str, m: int, alpha: float | None, labels_text: str = "", weights_text: str = "") -> A.Composition:
    """The composition the controls describe. Raises SculptError with what to do when it is undefined."""
    if op not in OPERATORS:
        raise SculptError(f"unknown operator {op!r}")
    if m < 2:
        raise SculptError("choose at least two base models to compose")
    if op in TWO_MODEL_OPS:
        if m != 2:
            raise SculptError(f"the {OPERATORS[op].split(' —')[0]} is defined for two models, {m} chosen: "
                              "drop one, or use the chained harmonic mean or custom labels such as 1,2,3")
        return {"hm": A.harmonic_mean, "contrast": A.contrast, "reverse": A.reverse_contrast}[op](alpha)
    if op == "chained_hm":
        return A.chained_harmonic_mean(m)
    if op == "labels":
        labels = parse_labels(labels_text)
        bad = [y for y in labels if y > m or y < 1]
        if bad:
            raise SculptError(f"label {bad[0]} refers to model {bad[0]}, but only {m} models are chosen: "
                              f"use labels in 1..{m}")
        use_alpha = alpha if (m == 2 and len(labels) == 2) else None
        return A.conditioning(labels, m, use_alpha)
    weights = parse_weights(weights_text, m)
    return A.linear(weights) if op == "linear" else A.mixture(weights)


def operator_controls(container: Any, prefix: str, m: int) -> tuple[str, bool, float]:
    """The operator widgets of a page's sidebar (operator, labels, weights, α), keyed ``{prefix}_op`` etc.:
    returns (operator, whether α applies, α). Weights reset to equal ones when the number of models changes."""
    ss = st.session_state
    op = container.selectbox("Operator", list(OPERATORS), format_func=OPERATORS.get, key=f"{prefix}_op")
    if op == "labels":
        container.text_input("Observed labels y1..yn", key=f"{prefix}_labels",
                             help="Model numbers, repeats allowed: 1,2 = harmonic mean, 1,1 = contrast, "
                                  "1,2,3 = all three.")
    if op in ("linear", "mixture"):
        if not ss.get(f"{prefix}_weights") or ss.get(f"{prefix}_weights_m", m) != m:
            ss[f"{prefix}_weights"] = ",".join(["1"] * max(m, 1))
        ss[f"{prefix}_weights_m"] = m
        container.text_input("Weights ω1..ωm", key=f"{prefix}_weights",
                             help="One non-negative number per chosen model, e.g. 1,0.5")
    alpha_ok = alpha_applies(op, m, ss.get(f"{prefix}_labels", ""))
    alpha = container.slider("α (eq. 7: weight of p1 vs p2 in the denominator)", ALPHA_RANGE[0], ALPHA_RANGE[1],
                             step=0.01, key=f"{prefix}_alpha", disabled=not alpha_ok,
                             help="p(x | y1, y2; α) ∝ p_y1 p_y2 / (α p1 + (1-α) p2); α = 0.5 is the plain operator.")
    if not alpha_ok:
        container.caption("α applies to two models with two labels (eq. 7)"
                          + (f"; with {m} models it is undefined." if m != 2 else "; this operator has no α."))
    return op, alpha_ok, float(alpha)


def composition_key(c: A.Composition) -> tuple:
    """A hashable identity of a composition (its name is presentation only)."""
    return (c.kind, c.n_models, c.labels, c.alpha, c.weights, c.beta)


# ----- page state in the URL -------------------------------------------------------------------------
@dataclass
class GridPageState:
    """Everything a shared link restores on the grid page."""

    bases: list[str] = field(default_factory=list)
    op: str = "hm"
    alpha: float = 0.5
    beta: float | None = None
    labels: str = "1,2"
    weights: str = ""
    method: str = "oracle"
    u: str = "exact"
    points: int = 0

    def to_query(self) -> dict[str, str]:
        q = {"bases": ",".join(self.bases), "op": self.op, "alpha": f"{self.alpha:g}", "method": self.method,
             "u": self.u}
        if self.beta is not None:
            q["beta"] = f"{self.beta:g}"
        if self.op == "labels":
            q["labels"] = self.labels
        if self.op in ("linear", "mixture"):
            q["weights"] = self.weights
        if self.points:
            q["points"] = str(self.points)
        return q


def default_bases(available: Sequence[str]) -> list[str]:
    """The paper pair if available, else the first two models."""
    if all(n in available for n in PAPER_PAIR):
        return list(PAPER_PAIR)
    return list(available[:2])


def parse_query(params: Mapping[str, Any], available: Sequence[str]) -> tuple[GridPageState, list[str]]:
    """Validate URL query parameters → (state, warnings). Bad values fall back to defaults with a warning."""
    state = GridPageState(bases=default_bases(available))
    warnings: list[str] = []

    def get(key: str) -> str | None:
        value = params.get(key)
        if isinstance(value, (list, tuple)):
            value = value[-1] if value else None
        return None if value is None else str(value)

    if (raw := get("bases")) is not None:
        names = [n for n in raw.split(",") if n]
        unknown = [n for n in names if n not in available]
        dupes = len(set(names)) != len(names)
        if unknown or dupes or not (1 <= len(names) <= 3):
            why = (f"unknown model(s) {', '.join(unknown)}" if unknown else
                   "a model is repeated" if dupes else "choose 1 to 3 models")
            warnings.append(f"URL parameter bases={raw!r} ignored ({why}); showing {', '.join(state.bases) or 'no models'}.")
        else:
            state.bases = names
    if (raw := get("op")) is not None:
        if raw in OPERATORS:
            state.op = raw
        else:
            warnings.append(f"URL parameter op={raw!r} ignored: one of {', '.join(OPERATORS)}.")
    for key, lo, hi in (("alpha", *ALPHA_RANGE), ("beta", 1e-3, 1e3)):
        if (raw := get(key)) is None:
            continue
        try:
            value = float(raw)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError
        except ValueError:
            warnings.append(f"URL parameter {key}={raw!r} ignored: expected a number in [{lo:g}, {hi:g}].")
            continue
        setattr(state, key, round(value, 2) if key == "alpha" else value)
    if (raw := get("method")) is not None:
        if raw in METHOD_CHOICES:
            state.method = raw
        else:
            warnings.append(f"URL parameter method={raw!r} ignored: one of {', '.join(METHOD_CHOICES)}.")
    if (raw := get("u")) is not None:
        if raw in U_CHOICES:
            state.u = raw
        else:
            warnings.append(f"URL parameter u={raw!r} ignored: one of {', '.join(U_CHOICES)}.")
    if (raw := get("labels")) is not None:
        state.labels = raw[:60]
    if (raw := get("weights")) is not None:
        state.weights = raw[:80]
    if (raw := get("points")) is not None:
        try:
            n = int(raw)
            if not 0 <= n <= POINTS_MAX:
                raise ValueError
            state.points = n
        except ValueError:
            warnings.append(f"URL parameter points={raw!r} ignored: expected an integer in [0, {POINTS_MAX}].")
    return state, warnings


# ----- β --------------------------------------------------------------------------------------------
def beta_window(models: Sequence[GridBaseModel]) -> tuple[float, float, float] | None:
    """(low, high, default) of the common reward exponent β if every model is β-conditioned, else None."""
    if not models or any(m.beta_range is None for m in models):
        return None
    lows = [float(m.meta["beta_cond"].get("train_low", m.beta_range[0])) for m in models]
    highs = [m.beta_range[1] for m in models]
    low, high = max(lows), min(highs)
    if not low < high:
        return None
    default = min(max(models[0].beta_or_default(None), low), high)
    return low, high, default


def fixed_betas_text(models: Sequence[GridBaseModel]) -> str:
    """Why β cannot move: which models are unconditional and the exponent each one samples."""
    fixed = [m for m in models if m.beta_range is None]
    parts = [f"{m.name} samples R^{m.beta_or_default(None):g}" for m in fixed]
    return ("β is the base models' reward exponent (p_i ∝ R_i^β); it can move only when every chosen model is "
            f"β-conditioned. Not β-conditioned: {'; '.join(parts)}. Train β-conditioned bases in "
            "'Train a base model' to move β live.")


# ----- results ------------------------------------------------------------------------------------------
@dataclass
class ComposeView:
    """A composed result as plain arrays (cheap to cache and pickle)."""

    method: str
    u_source: str
    p: np.ndarray
    target: np.ndarray
    true_target: np.ndarray | None
    l1: float
    l1_true: float | None
    delta: np.ndarray | None
    sampled: bool
    n_samples: int
    log_pf: np.ndarray | None
    describe: str
    formula: str

    @property
    def l1_bases(self) -> float | None:
        """L1 between the target from the learned bases and the true target: the base models' own share of error."""
        return None if self.true_target is None else float(np.abs(self.target - self.true_target).sum())

    @property
    def label(self) -> str:
        if self.method == "reaching":
            return f"reaching ({self.u_source} u)"
        return self.method


def run_compose(bases: GridBases, composition: A.Composition, method: str, classifier=None, u_source: str = "exact",
                n_samples: int = TRAJECTORY_SAMPLES, seed: int = 0) -> ComposeView:
    """compose() → ComposeView (raises SculptError)."""
    res = compose(bases, composition, method, classifier=classifier, u_source=u_source, n_samples=n_samples, seed=seed)
    return ComposeView(method, u_source if method == "reaching" else "exact", np.asarray(res.p, dtype=np.float64),
                       np.asarray(res.target, dtype=np.float64),
                       None if res.true_target is None else np.asarray(res.true_target, dtype=np.float64),
                       float(res.l1), None if res.l1_true is None else float(res.l1_true),
                       None if res.delta is None else np.asarray(res.delta, dtype=np.float64),
                       bool(res.sampled), int(res.n_samples),
                       None if res.log_pf is None else res.log_pf.detach().cpu().numpy(),
                       composition.describe(), composition.formula())


def base_panels(bases: GridBases) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Each base's exact distribution and its true target ∝ R^β (None where the reward is unknown)."""
    shape = bases.env.shape
    dists = [bases.log_p[i].exp().reshape(shape).numpy() for i in range(bases.m)]
    truth = bases.true_log_p()
    targets: list[np.ndarray | None] = [None] * bases.m
    if truth is not None:
        targets = [truth[0][i].exp().reshape(shape).numpy() for i in range(bases.m)]
    else:
        for i, mod in enumerate(bases.models):
            if mod.log_reward is not None:
                t = mod.target_log_p(bases.betas[i])
                targets[i] = t.exp().reshape(shape).numpy()
    return dists, targets


def base_l1_text(dist: np.ndarray, target: np.ndarray | None) -> str:
    """A base model's exact L1 to its true target, or 'unknown' when the reward is not known."""
    return "unknown" if target is None else f"{float(np.abs(dist - target).sum()):.3g}"


# ----- downloads ------------------------------------------------------------------------------------------
def distribution_csv(p: np.ndarray) -> str:
    """Long-format CSV ``z0,z1,p`` (one row per cell)."""
    p = np.asarray(p)
    z0, z1 = np.meshgrid(np.arange(p.shape[0]), np.arange(p.shape[1]), indexing="ij")
    rows = "\n".join(f"{a},{b},{v:.10g}" for a, b, v in zip(z0.ravel(), z1.ravel(), p.ravel()))
    return "z0,z1,p\n" + rows + "\n"


def distribution_npy(p: np.ndarray) -> bytes:
    """The array ``p[z0, z1]`` as .npy bytes."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(p, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


# ----- uploads and training configs ---------------------------------------------------------------------
def load_uploaded_log_reward(data: bytes, filename: str = "upload") -> torch.Tensor:
    """Bytes of an uploaded ``.npy`` → validated log-reward tensor (32, 32). Raises SculptError."""
    if not data:
        raise SculptError(f"{filename}: the file is empty")
    hint = "Save a 32×32 float array with numpy.save(path, array)."
    if data[:4] == b"PK\x03\x04":
        raise SculptError(f"{filename}: this is an .npz archive, not a single .npy array. {hint}")
    if not data.startswith(b"\x93NUMPY"):
        raise SculptError(f"{filename}: not a readable .npy array (no NumPy header). {hint}")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise SculptError(f"{filename}: holds Python objects (pickled data), which are never loaded. {hint}") from None
        raise SculptError(f"{filename}: not a readable .npy array ({exc}). {hint}") from None
    except Exception as exc:  # numpy raises OSError, EOFError, ... for truncated files
        raise SculptError(f"{filename}: not a readable .npy array ({type(exc).__name__}: {exc}). {hint}") from None
    if not isinstance(arr, np.ndarray):
        raise SculptError(f"{filename}: expected a single .npy array, got an archive")
    return validate_log_reward(GridEnv(*GRID), arr, source=filename)


def paper_log_reward(name: str) -> torch.Tensor:
    return grid_log_reward(GridEnv(*GRID), name)


def fast_training() -> bool:
    """``SCULPT_FAST_TRAINING=1`` makes every in-app training tiny (tests, demos on slow machines)."""
    return os.environ.get("SCULPT_FAST_TRAINING", "") not in ("", "0", "false", "False")


BETA_TRAIN_RANGE = GRID_BETA_RANGE  # the zoo's β-conditioned models cover the same range


def base_train_config(steps: int, beta_conditioned: bool = False) -> GridTrainConfig:
    if fast_training():
        return GridTrainConfig(steps=min(steps, 4), hidden=32, batch_size=32, eval_every=2,
                               beta_range=BETA_TRAIN_RANGE if beta_conditioned else None, betas_per_step=2)
    return GridTrainConfig(steps=steps, eval_every=max(1, steps // 25),
                           beta_range=BETA_TRAIN_RANGE if beta_conditioned else None)


def train_base_model(log_reward: torch.Tensor, temperature: float, cfg: GridTrainConfig, reward_name: str,
                     progress=None) -> tuple[GridBaseModel, dict]:
    """Train an in-app base model. A β-conditioned one gets T folded into its reward, like the zoo's:
    it learns p ∝ (R^(1/T))^β, so β = 1 is the chosen temperature and β scales every base alike."""
    if cfg.beta_range is None:
        return train_grid_model(log_reward, temperature, cfg, reward_name, progress=progress)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise SculptError(f"temperature must be a positive finite number, got {temperature!r}")
    model, info = train_grid_model(log_reward / temperature, 1.0, cfg, reward_name, progress=progress)
    model.meta["reward_temperature"] = float(temperature)
    return model, info


CLASSIFIER_STEPS_DEFAULT = 200


def classifier_train_config(m: int, steps: int = CLASSIFIER_STEPS_DEFAULT) -> ClassifierTrainConfig:
    """An in-app classifier: smaller than the shipped ones (Algorithm A.1 with fewer α values per step and a
    narrower network) so it trains in minutes on 2 CPU cores; α-conditioned for two models."""
    two = m == 2
    if fast_training():
        return ClassifierTrainConfig(steps=min(steps, 3), trajectories_per_model=8, warmup=2, alphas_per_step=2,
                                     hidden=32, eval_every=1, alpha_cond=two, n_labels=2 if two else 3)
    return ClassifierTrainConfig(steps=steps, trajectories_per_model=64, warmup=max(1, steps // 3), alphas_per_step=4,
                                 hidden=128, eval_every=max(1, steps // 50), alpha_cond=two, n_labels=2 if two else 3)


def new_token(prefix: str = "session") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


# =====================================================================================================
# Streamlit caches
# =====================================================================================================
def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def manifest_stamp() -> float:
    """Changes whenever the manifest is rewritten (new zoo models or classifiers)."""
    return _mtime(registry.manifest_path())


@st.cache_data(show_spinner=False, max_entries=8)
def _zoo_names(kind: str, stamp: float, assets: str) -> tuple[list[str], str | None]:
    try:
        if kind == "mol":
            from sculpt_core.domains.molecules.zoo import mol_model_names  # RDKit only where molecules are asked for

            return mol_model_names(), None
        return grid_zoo.grid_model_names(), None
    except SculptError as exc:
        return [], str(exc)


def zoo_names(kind: str = "grid") -> tuple[list[str], str | None]:
    """(names of the shipped ``kind`` models, "grid" or "mol"; error message if the manifest is unreadable),
    re-read when the manifest changes."""
    return _zoo_names(kind, manifest_stamp(), str(registry.assets_dir()))


@st.cache_resource(show_spinner="Loading model…", max_entries=32)
def _load_zoo_model(name: str, stamp: float, assets: str) -> GridBaseModel:
    model = grid_zoo.load_grid_model(name)
    model.name = name
    return model


def load_zoo_model(name: str) -> GridBaseModel:
    """A shipped model, loaded once per process (reloaded if the manifest changes)."""
    return _load_zoo_model(name, manifest_stamp(), str(registry.assets_dir()))


def zoo_token(name: str) -> str:
    return f"zoo:{registry.assets_dir()}:{name}:{manifest_stamp()}"


@st.cache_resource(show_spinner=False, max_entries=16)
def _zoo_classifier(names: tuple[str, ...], stamp: float, assets: str):
    return grid_zoo.find_grid_classifier(list(names))


def zoo_classifier(names: Sequence[str]):
    """(classifier, manifest entry) shipped for exactly these bases in this order, or None. Raises SculptError."""
    return _zoo_classifier(tuple(names), manifest_stamp(), str(registry.assets_dir()))


@st.cache_resource(show_spinner=False, max_entries=24)
def cached_bases(tokens: tuple[str, ...], beta: float | None, _models: list[GridBaseModel]) -> GridBases:
    """prepare_bases, once per (models, β)."""
    return prepare_bases(list(_models), beta)


@st.cache_data(show_spinner=False, max_entries=24)
def cached_base_panels(tokens: tuple[str, ...], beta: float | None, _bases: GridBases):
    return base_panels(_bases)


@st.cache_data(show_spinner=False, max_entries=512)
def cached_compose(tokens: tuple[str, ...], beta: float | None, comp_key: tuple, method: str, u_source: str,
                   clf_token: str | None, n_samples: int, _bases: GridBases, _composition: A.Composition,
                   _classifier=None) -> ComposeView:
    """A composed result, cached by everything it depends on."""
    return run_compose(_bases, _composition, method, _classifier, u_source, n_samples)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_points(tokens: tuple[str, ...], beta: float | None, comp_key: tuple, method: str, u_source: str,
                  clf_token: str | None, n: int, _bases: GridBases, _log_pf: np.ndarray) -> np.ndarray:
    """``n`` sampled cells of a composed policy table."""
    return sample_points(_bases.env, torch.from_numpy(_log_pf), n, seed=0)


@st.cache_data(show_spinner="Composing the home-page picture…", max_entries=4)
def home_panels(stamp: float, assets: str) -> tuple[list[tuple[str, np.ndarray]], str] | None:
    """Two zoo bases, their harmonic mean and contrast (oracle), or None if fewer than two models ship."""
    names, _ = zoo_names()
    pair = default_bases(names)
    if len(pair) < 2:
        return None
    models = [load_zoo_model(n) for n in pair]
    bases = cached_bases(tuple(zoo_token(n) for n in pair), None, models)
    dists, _ = base_panels(bases)
    hm = run_compose(bases, A.harmonic_mean(), "oracle")
    con = run_compose(bases, A.contrast(), "oracle")
    panels = [(f"p1 = {pair[0]}", dists[0]), (f"p2 = {pair[1]}", dists[1]),
              ("p1 ⊗ p2 (harmonic mean)", hm.p), ("p1 ◑ p2 (contrast)", con.p)]
    return panels, f"{pair[0]} and {pair[1]}"


def reward_names() -> list[str]:
    return list(GRID_REWARDS)


def ensure_app_navigation() -> None:
    """Make a page opened by its URL run inside ``app.py``'s navigation (call it first thing in a page).

    Streamlit treats a top-level ``pages/`` folder as a legacy (v1) multipage app until the entry script's
    ``st.navigation`` has run once in the process (and ``AppTest`` resets that on every run), so a page URL
    opened first runs the page bare: no page config, the wrong menu. Then switch the process to
    ``st.navigation`` mode and run ``app.py`` in this same script run (it runs this page again, now inside the
    navigation, with the same widget events and URL), and stop the bare run."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # a Streamlit without these internals: nothing to fix
        return
    if not getattr(PagesManager, "uses_pages_directory", None):
        return
    ctx = get_script_run_ctx()
    if ctx is None:
        return
    PagesManager.uses_pages_directory = False
    main = Path(ctx.pages_manager.main_script_path)
    if main.name == "app.py" and main.is_file():
        code = compile(main.read_text(encoding="utf-8"), str(main), "exec")
        exec(code, {"__name__": "__main__", "__file__": str(main)})  # noqa: S102 - our own entry script
        st.stop()
