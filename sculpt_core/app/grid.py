"""Grid Sculpting page helpers: the page state a URL carries, the methods offered, β of the chosen models,
composed results as plain arrays, downloads, upload validation, in-app training configurations (tiny when
``SCULPT_FAST_TRAINING=1``) and the cached compose wrappers. Models trained in a session live in
``st.session_state`` and are identified in cache keys by a per-model random token.
"""

from __future__ import annotations

import io
import math
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import streamlit as st
import torch

from sculpt_core.app.url_state import query_getter, read_bases
from sculpt_core.app.exports import csv_with_meta
from sculpt_core.app.grid_figures import FIGURE_MODES, SCALES
from sculpt_core.app.caches import LRU, assets_key, load_zoo_model, manifest_stamp, zoo_names, zoo_token
from sculpt_core.app.torch_threads import use_one_torch_thread
from sculpt_core.app.widgets import classifier_note
from sculpt_core.core import algebra as A
from sculpt_core.core.io import npy_from_bytes
from sculpt_core.core.limits import MAX_UPLOAD_BYTES, check_size
from sculpt_core.core.metrics import l1_distance
from sculpt_core.core.operators import ALPHA_RANGE, OPERATORS, TWO_MODEL_OPS
from sculpt_core.domains.grid.compose import GridBases, compose, prepare_bases, sample_points
from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.domains.grid.rewards import GRID_REWARDS, grid_log_reward, validate_log_reward
from sculpt_core.domains.grid.train import GridTrainConfig, train_grid_model
from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig
from sculpt_core.domains.grid.zoo import GRID_BETA_RANGE
from sculpt_core.errors import SculptError

GRID = (32, 2)
PAPER_PAIR = ("symmetric_shubert", "diag_sigmoid")
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
POINTS_MAX = 5000
TRAJECTORY_SAMPLES = 20000


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
    scale: str = "shared"
    fig: str = "image"

    def to_query(self) -> dict[str, str]:
        """The URL query parameters of this state (labels/weights only for the operators that read them)."""
        q = {"bases": ",".join(self.bases), "op": self.op, "alpha": f"{self.alpha:g}", "method": self.method,
             "u": self.u}
        if self.beta is not None:
            q["beta"] = f"{self.beta:g}"
        inputs = OPERATORS[self.op].inputs if self.op in OPERATORS else ""
        if inputs == "labels":
            q["labels"] = self.labels
        if inputs == "weights":
            q["weights"] = self.weights
        if self.points:
            q["points"] = str(self.points)
        if self.scale != "shared":
            q["scale"] = self.scale
        if self.fig != "image":
            q["fig"] = self.fig
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

    get = query_getter(params)

    read_bases(get, available, state, warnings)
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
    if (raw := get("scale")) is not None:
        if raw in SCALES:
            state.scale = raw
        else:
            warnings.append(f"URL parameter scale={raw!r} ignored: one of {', '.join(SCALES)}.")
    if (raw := get("fig")) is not None:
        if raw in FIGURE_MODES:
            state.fig = raw
        else:
            warnings.append(f"URL parameter fig={raw!r} ignored: one of {', '.join(FIGURE_MODES)}.")
    return state, warnings


def with_new_base(bases: Sequence[str], new: str, available: Sequence[str], op: str | None) -> list[str]:
    """The selection once a just-trained model joins it: it replaces the last model when three are chosen, or
    two with a two-model operator, so the chosen operator stays defined."""
    current = [b for b in bases if b in available]
    if len(current) == 3 or (len(current) == 2 and op in TWO_MODEL_OPS):
        current = current[:-1]
    return current + [new]


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
        return None if self.true_target is None else l1_distance(self.target, self.true_target)

    @property
    def label(self) -> str:
        """The method as the page names it."""
        if self.method == "reaching":
            return f"reaching ({self.u_source} u)"
        return self.method


def run_compose(bases: GridBases, composition: A.Composition, method: str, classifier=None, u_source: str = "exact",
                n_samples: int = TRAJECTORY_SAMPLES, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> ComposeView:
    """compose() → ComposeView (raises SculptError); ``progress(done, total)`` follows a sampled view."""
    use_one_torch_thread()  # a 32×32 DP is many small ops: two OpenMP threads on a busy machine cost 10×
    res = compose(bases, composition, method, classifier=classifier, u_source=u_source, n_samples=n_samples,
                  seed=seed, progress=progress)
    return ComposeView(method, u_source if method == "reaching" else "exact", np.asarray(res.p, dtype=np.float64),
                       np.asarray(res.target, dtype=np.float64),
                       None if res.true_target is None else np.asarray(res.true_target, dtype=np.float64),
                       float(res.l1), None if res.l1_true is None else float(res.l1_true),
                       None if res.delta is None else np.asarray(res.delta, dtype=np.float64),
                       bool(res.sampled), int(res.n_samples),
                       None if res.log_pf is None else res.log_pf.detach().cpu().numpy(),
                       composition.describe(), composition.formula())


def method_note(method: str, composition: A.Composition, classifier: Any = None) -> str | None:
    """The grid page's note when classifier guidance cannot sample ``composition`` (the oracle and reaching
    need no classifier), or None."""
    return classifier_note(method, composition, classifier, ("the oracle", "reaching mixing"), ("oracle", "reaching"))


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


def delta_range_text(delta: np.ndarray) -> str:
    """The range of the finite values of the distortion δ, or "n/a"."""
    finite = delta[np.isfinite(delta)]
    return f"{finite.min():.3g} – {finite.max():.3g}" if finite.size else "n/a"


def base_l1_text(dist: np.ndarray, target: np.ndarray | None) -> str:
    """A base model's exact L1 to its true target, or 'unknown' when the reward is not known."""
    if target is None:
        return "unknown"
    try:
        return f"{l1_distance(dist, target):.3g}"
    except SculptError as exc:  # never an L1 outside [0, 2]
        return f"not shown ({exc})"


# ----- downloads ------------------------------------------------------------------------------------------
def distribution_csv(p: np.ndarray, meta: dict[str, str] | None = None) -> str:
    """Long-format CSV ``z0,z1,p`` (one row per cell); with ``meta`` (:func:`sculpt_core.app.exports.
    composition_meta`) the view's parameters come first as columns repeated on every row."""
    p = np.asarray(p)
    z0, z1 = np.meshgrid(np.arange(p.shape[0]), np.arange(p.shape[1]), indexing="ij")
    if meta:
        return csv_with_meta(("z0", "z1", "p"), ((int(a), int(b), f"{v:.10g}") for a, b, v in
                                                 zip(z0.ravel(), z1.ravel(), p.ravel())), meta)
    rows = "\n".join(f"{a},{b},{v:.10g}" for a, b, v in zip(z0.ravel(), z1.ravel(), p.ravel()))
    return "z0,z1,p\n" + rows + "\n"


def distribution_npy(p: np.ndarray) -> bytes:
    """The array ``p[z0, z1]`` as .npy bytes."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(p, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


# ----- uploads and training configs ---------------------------------------------------------------------
def load_uploaded_log_reward(data: bytes, filename: str = "upload") -> torch.Tensor:
    """Bytes of an uploaded ``.npy`` → validated log-reward tensor (32, 32). Raises SculptError (also for an
    upload over ``MAX_UPLOAD_BYTES``)."""
    check_size(len(data), f"{filename}", MAX_UPLOAD_BYTES)
    arr = npy_from_bytes(data, filename)
    return validate_log_reward(GridEnv(*GRID), arr, source=filename)


def paper_log_reward(name: str) -> torch.Tensor:
    """The log-reward of a paper reward on the 32×32 grid."""
    return grid_log_reward(GridEnv(*GRID), name)


def fast_training() -> bool:
    """``SCULPT_FAST_TRAINING=1`` makes every in-app training tiny (tests, demos on slow machines)."""
    return os.environ.get("SCULPT_FAST_TRAINING", "") not in ("", "0", "false", "False")


BETA_TRAIN_RANGE = GRID_BETA_RANGE  # the zoo's β-conditioned models cover the same range


def base_train_config(steps: int, beta_conditioned: bool = False) -> GridTrainConfig:
    """The configuration of an in-app base model trained for ``steps`` steps."""
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
    """A random cache identity for a model or classifier trained in this session."""
    return f"{prefix}:{uuid.uuid4().hex}"


def reward_names() -> list[str]:
    """The paper rewards a base model can be trained on."""
    return list(GRID_REWARDS)


# ----- cached wrappers (Streamlit) ------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=24)
def cached_bases(tokens: tuple[str, ...], beta: float | None, _models: list[GridBaseModel]) -> GridBases:
    """prepare_bases, once per (models, β)."""
    return prepare_bases(list(_models), beta)


@st.cache_data(show_spinner=False, max_entries=24)
def cached_base_panels(tokens: tuple[str, ...], beta: float | None, _bases: GridBases):
    """base_panels, once per (models, β)."""
    return base_panels(_bases)


@st.cache_data(show_spinner=False, max_entries=512)
def cached_compose(tokens: tuple[str, ...], beta: float | None, comp_key: tuple, method: str, u_source: str,
                   clf_token: str | None, n_samples: int, _bases: GridBases, _composition: A.Composition,
                   _classifier=None) -> ComposeView:
    """A composed result, cached by everything it depends on."""
    return run_compose(_bases, _composition, method, _classifier, u_source, n_samples)


#: The α values this many arrow-key steps either side of the shown one are composed in the background.
PREFETCH_ALPHA_STEPS = 2


def prefetch_alpha_neighbours(tokens: tuple[str, ...], beta: float | None, bases: GridBases, op: str, alpha: float,
                              labels: str, weights: str, method: str, u_source: str, classifier=None,
                              clf_token: str | None = None, n_points: int = 0) -> None:
    """While the user looks at a view, compose it at α ± 0.01 and ± 0.02 (the slider's arrow-key steps) on the grid
    prefetch thread, into the same :func:`cached_compose` (and :func:`cached_points`) entries the page reads: the
    next α move finds its exact DP done. Not for the sampled views (seconds of work that a move would waste) and
    not with ``SCULPT_PREFETCH=0``."""
    from sculpt_core.app.prefetch import grid_prefetcher, neighbour_values, prefetch_enabled
    from sculpt_core.app.widgets import ALPHA_STEP
    from sculpt_core.core.operators import build_composition, composition_key

    if not prefetch_enabled() or is_sampled(method, u_source) or method not in ("oracle", "classifier", "reaching",
                                                                               "ensemble"):
        return
    m = bases.m

    def job(a: float) -> Callable[[], None]:
        def run() -> None:
            comp = build_composition(op, m, a, labels, weights)
            view = cached_compose(tokens, beta, composition_key(comp), method, u_source, clf_token,
                                  TRAJECTORY_SAMPLES, bases, comp, classifier)
            if n_points and view.log_pf is not None:
                cached_points(tokens, beta, composition_key(comp), method, u_source, clf_token, int(n_points), bases,
                              view.log_pf)
        return run

    view = (tokens, beta, op, round(float(alpha), 4), labels, weights, method, u_source, clf_token, int(n_points))
    values = neighbour_values(float(alpha), ALPHA_STEP, ALPHA_RANGE[0], ALPHA_RANGE[1], ahead=PREFETCH_ALPHA_STEPS)
    grid_prefetcher().schedule(view, [job(a) for a in values])


def cancel_prefetch() -> None:
    """Drop the grid prefetch thread's pending jobs (a running one finishes: one exact DP)."""
    from sculpt_core.app.prefetch import grid_prefetcher

    grid_prefetcher().cancel()


def is_sampled(method: str, u_source: str) -> bool:
    """Whether this view is a Monte-Carlo histogram (reaching with trajectory-product u): the slow views."""
    return method == "reaching" and u_source == "trajectory"


#: ``progress(done, total)``: trajectories sampled so far out of ``total``.
Progress = Callable[[int, int], None]


def sampled_compose(bases: GridBases, composition: A.Composition, n_samples: int = TRAJECTORY_SAMPLES,
                    seed: int = 0, progress: Progress | None = None) -> ComposeView:
    """Reaching mixing with trajectory-product u as a histogram of ``n_samples`` trajectories, drawn in chunks
    (``domains.grid.compose.sampled_histogram``: the same histogram as ``grid compose --u trajectory`` for a
    seed) so ``progress(done, total)`` can follow it."""
    return run_compose(bases, composition, "reaching", None, "trajectory", n_samples, seed, progress=progress)


@st.cache_resource(show_spinner=False)
def _sampled_store() -> LRU:
    return LRU(64)


def sampled_key(tokens: tuple[str, ...], beta: float | None, comp_key: tuple, n_samples: int, seed: int = 0) -> tuple:
    """What a sampled view depends on (the method and u are fixed: reaching, trajectory product)."""
    return tokens, beta, comp_key, "reaching", "trajectory", int(n_samples), int(seed)


def cached_sampled_compose(tokens: tuple[str, ...], beta: float | None, comp_key: tuple, n_samples: int,
                           bases: GridBases, composition: A.Composition,
                           progress: Progress | None = None) -> ComposeView:
    """:func:`sampled_compose`, once per process and view (kept outside ``st.cache_data`` so the progress
    reports reach the page while it samples); ``progress`` is called only when it samples."""
    key = sampled_key(tokens, beta, comp_key, n_samples)
    view = _sampled_store().get(key)
    if view is None:
        view = sampled_compose(bases, composition, n_samples, progress=progress)
        _sampled_store().put(key, view)
    return view


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


def home_picture() -> tuple[list[tuple[str, np.ndarray]], str] | None:
    """:func:`home_panels` of the current zoo."""
    return home_panels(manifest_stamp(), assets_key())


def fmt(x: float | None) -> str:
    """An L1 distance as the page shows it ("n/a" when unknown)."""
    if x is None:
        return "n/a"
    return f"{x:.4f}" if abs(x) >= 1e-3 else f"{x:.2e}"
