"""The thin layer between the Diffusion Sculpting page and ``sculpt_core.domains.diffusion``.

- bases: the shipped learned models (loaded once per process), exact specs, the session's added specs and
  trained models, each with a cache token (zoo: path and manifest stamp; specs: a hash of their content;
  trained models: a random token) — see :mod:`sculpt_core.app.diffusion_state` for the identifiers;
- exact pieces, cached per (bases, composition): the :class:`ExactComposition` (its quadrature grids and its
  exact sampler are reused across methods), the target's and every base's probability per bin;
- sampled runs (:class:`DiffusionRun`: the samples, ~20 snapshots of the particles from t = 1 to ε, binned L1
  with its noise floor, optionally EMD with its floor) in a process-wide LRU store keyed by every input, so
  moving a slider back is instant and a long run can show a progress bar while it computes;
- classifier guidance through whatever ``domains.diffusion`` offers at call time (``METHODS``,
  ``zoo.find_diffusion_classifier`` / ``load_diffusion_classifier``, ``sample_method(classifier=…)``);
- in-page training of a score model (``train_dsm``) and download payloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from sculpt_core.app.caches import LRU, assets_key, manifest_stamp
from sculpt_core.app.diffusion_state import (
    METHOD_LABELS,
    SPEC_PREFIX,
    TRAINED_PREFIX,
    USER_PREFIX,
    base_label,
    short_name,
)
from sculpt_core.app.grid import fast_training
from sculpt_core.app.torch_threads import use_one_torch_thread
from sculpt_core.core import algebra as A
from sculpt_core.core.operators import composition_key
from sculpt_core.domains.diffusion import viz as V
from sculpt_core.domains.diffusion.spec import GaussianMixture, load_spec, spec_from_dict
from sculpt_core.errors import SculptError

BINS = 40
SNAPSHOTS = 20
SHOW_POINTS = 2000  # particles kept per snapshot and drawn in the scatter plots
EMD_POINTS = 500
LIVE_NODES = 4  # Gauss–Legendre points per bin and axis of the density tables (16 when that is not accurate)
QUADRATURE_TOL = 1e-3
TRAIN_STEPS_DEFAULT = 600
TRAIN_BATCH = 512


# ----- methods -----------------------------------------------------------------------------------------
def methods() -> list[str]:
    """The sampling methods of the diffusion domain, read at call time (``compose.METHODS``)."""
    from sculpt_core.domains.diffusion import compose

    return list(compose.METHODS)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


# ----- bases ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Base:
    """One chosen base: its identifier, cache token, exact spec and (for learned bases) its score model."""

    ident: str
    token: str
    spec: GaussianMixture
    model: Any = None

    @property
    def label(self) -> str:
        return base_label(self.ident)

    @property
    def score(self) -> str:
        return "exact" if self.model is None else "learned"


@st.cache_data(show_spinner=False, max_entries=4)
def _zoo_names(stamp: float, assets: str) -> tuple[list[str], str | None]:
    from sculpt_core.domains.diffusion.zoo import diffusion_model_names

    try:
        return diffusion_model_names(), None
    except SculptError as exc:
        return [], str(exc)


def zoo_names() -> tuple[list[str], str | None]:
    """(names of the shipped diffusion models, error message if the manifest is unreadable)."""
    return _zoo_names(manifest_stamp(), assets_key())


@st.cache_resource(show_spinner="Loading the score model…", max_entries=16)
def _load_zoo_model(name: str, stamp: float, assets: str):
    from sculpt_core.domains.diffusion.zoo import load_diffusion_model

    return load_diffusion_model(name)


def spec_token(spec: GaussianMixture) -> str:
    """A content hash of a spec (the same spec always shares cached results)."""
    text = json.dumps(spec.to_json(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def resolve(ident: str, user_specs: dict, trained: dict) -> Base:
    """A base identifier → :class:`Base` (SculptError if it cannot be loaded)."""
    name = short_name(ident)
    if ident.startswith(SPEC_PREFIX):
        spec = load_spec(name)
        return Base(ident, f"spec:{spec_token(spec)}", spec)
    if ident.startswith(USER_PREFIX):
        if name not in user_specs:
            raise SculptError(f"the spec {name!r} is not in this session")
        spec = spec_from_dict(user_specs[name], name)
        return Base(ident, f"spec:{spec_token(spec)}", spec)
    if ident.startswith(TRAINED_PREFIX):
        if name not in trained:
            raise SculptError(f"the model {name!r} was not trained in this session")
        entry = trained[name]
        return Base(ident, entry["token"], entry["model"].spec(), entry["model"])
    model = _load_zoo_model(name, manifest_stamp(), assets_key())
    spec = model.spec()
    return Base(ident, f"zoo:{assets_key()}:{name}:{manifest_stamp()}", GaussianMixture(name, spec.weights, spec.means,
                                                                                         spec.covs), model)


def tokens(bases: Sequence[Base]) -> tuple[str, ...]:
    return tuple(b.token for b in bases)


# ----- exact pieces --------------------------------------------------------------------------------------
def _device():
    from sculpt_core.device import default_device

    return default_device()


@st.cache_resource(show_spinner=False, max_entries=32)
def cached_exact(base_tokens: tuple[str, ...], comp_key: tuple, _specs: list, _comp: A.Composition):
    """The ExactComposition of the chosen bases, once per (bases, composition)."""
    from sculpt_core.domains.diffusion.exact import ExactComposition

    return ExactComposition(list(_specs), _comp, _device())


def _accurate_masses(fn: Callable[[int], tuple[np.ndarray, dict]]) -> tuple[np.ndarray, dict]:
    q, info = fn(LIVE_NODES)
    if info.get("quadrature_error", 0.0) > QUADRATURE_TOL:  # narrow components: integrate each bin finely
        q, info = fn(16)
    return q, info


@st.cache_data(show_spinner=False, max_entries=128)
def cached_target(base_tokens: tuple[str, ...], comp_key: tuple, extent: float, bins: int,
                  _exact) -> tuple[np.ndarray, dict]:
    """The exact composed target's probability per bin ``q[ix, iy]`` and its figures (SculptError if undefined)."""
    use_one_torch_thread()
    return _accurate_masses(lambda nodes: _exact.bin_masses(extent, bins, nodes))


@st.cache_data(show_spinner=False, max_entries=64)
def cached_base_density(token: str, extent: float, bins: int, _spec: GaussianMixture) -> np.ndarray:
    """One base's exact probability per bin."""
    from sculpt_core.domains.diffusion.exact import ExactComposition

    exact = ExactComposition([_spec], A.mixture([1.0]), _device())
    use_one_torch_thread()
    return _accurate_masses(lambda nodes: exact.bin_masses(extent, bins, nodes))[0]


@st.cache_data(show_spinner=False, max_entries=64)
def cached_emd_floor(base_tokens: tuple[str, ...], comp_key: tuple, n: int, seed: int, _exact) -> float:
    """EMD between two independent exact samples of min(n, EMD_POINTS) points: the floor of :func:`run_emd`."""
    import torch

    from sculpt_core.domains.diffusion.metrics import emd

    m = min(n, EMD_POINTS)
    use_one_torch_thread()
    ref = _exact.sample(2 * m, torch.Generator(device=_exact.device).manual_seed(seed + 7)).cpu().numpy()
    return emd(ref[m:], ref[:m], EMD_POINTS, seed)


def run_emd(x: np.ndarray, exact, seed: int) -> float:
    """EMD between (at most EMD_POINTS of) the samples and an equal-size exact sample of the target."""
    import torch

    from sculpt_core.domains.diffusion.metrics import emd

    m = min(len(x), EMD_POINTS)
    use_one_torch_thread()
    ref = exact.sample(m, torch.Generator(device=exact.device).manual_seed(seed + 1)).cpu().numpy()
    return emd(x, ref, EMD_POINTS, seed)


# ----- sampled runs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """Everything besides the bases and the composition that a sampled run depends on."""

    n: int
    steps: int
    sampler: str = "em"
    seed: int = 0
    prior: str = "gaussian"
    gamma: float = 1.0
    model_index: int = 1
    extent: float = 3.5
    bins: int = BINS


@dataclass
class Samples:
    """One sampled run as plain arrays (cheap to keep)."""

    method: str
    x: np.ndarray  # [n, 2] float64
    snapshots: np.ndarray  # [S, ≤ SHOW_POINTS, 2] float32, the particles after the recorded steps
    times: list[float]  # t after each recorded step, from ≈ 1 down to ε
    seconds: float
    scores: list[str]  # "exact" or "learned" per base


@dataclass
class DiffusionRun:
    """A sampled run scored against one target: the samples, their histogram, binned L1 and its noise floor."""

    samples: Samples
    hist: np.ndarray  # the samples' probability per bin
    l1: float
    l1_floor: float
    frac_outside: float

    method = property(lambda self: self.samples.method)
    x = property(lambda self: self.samples.x)
    snapshots = property(lambda self: self.samples.snapshots)
    times = property(lambda self: self.samples.times)
    seconds = property(lambda self: self.samples.seconds)
    scores = property(lambda self: self.samples.scores)

    @property
    def ratio(self) -> float:
        return self.l1 / self.l1_floor if self.l1_floor > 0 else float("inf")


def snapshot_steps(steps: int, count: int = SNAPSHOTS) -> list[int]:
    """The ≤ ``count`` steps (1..steps, the last included) after which the particles are recorded."""
    return sorted({int(round(s)) for s in np.linspace(1, steps, min(count, steps))})


def sample_key(bases: Sequence[Base], comp: A.Composition, method: str, s: RunSettings,
               clf_token: str | None = None) -> tuple:
    """Everything the samples of ``method`` depend on, and nothing else: score-sum (from the reference prior)
    and a base alone ignore the composition, so moving α re-scores their samples without re-sampling them;
    γ matters only to guided methods and the base index only to ``base``."""
    comp_part: tuple | None = composition_key(comp)
    if method == "base" or (method == "score-sum" and s.prior == "gaussian"):
        comp_part = None
    gamma = s.gamma if method in ("oracle", "classifier") else None
    index = s.model_index if method == "base" else None
    return (tokens(bases), comp_part, method, s.n, s.steps, s.sampler, s.seed, s.prior, gamma, index, clf_token)


def compute_samples(bases: Sequence[Base], comp: A.Composition, method: str, s: RunSettings, classifier: Any = None,
                    progress: Callable[[int, int], None] | None = None) -> Samples:
    """Sample ``method`` (``sample_method``; learned bases use their own score except in the oracle) and keep
    ~SNAPSHOTS snapshots of the particles. SculptError on bad input."""
    from sculpt_core.domains.diffusion.compose import ExactScoreModel
    from sculpt_core.domains.diffusion.sampling import sample_method
    from sculpt_core.domains.diffusion.sde import SDE

    device = _device()
    models = None
    if method != "oracle" and any(b.model is not None for b in bases):
        models = [ExactScoreModel(b.spec, SDE, device) if b.model is None else b.model for b in bases]
    record = set(snapshot_steps(s.steps))
    snaps: list[np.ndarray] = []
    times: list[float] = []

    def on_step(step: int, info: dict) -> None:
        if step in record:
            snaps.append(info["x"][:SHOW_POINTS].detach().cpu().numpy().astype(np.float32))
            times.append(float(info["t"]))
        if progress is not None:
            progress(step, s.steps)

    kwargs = {}
    if classifier is not None:
        if "classifier" not in inspect.signature(sample_method).parameters:
            raise SculptError("this version of sample_method takes no classifier")
        kwargs["classifier"] = classifier
    t0 = time.perf_counter()
    use_one_torch_thread()
    x, _ = sample_method([b.spec for b in bases], comp, method, s.n, s.steps, s.sampler, s.seed, s.prior, s.gamma,
                         s.model_index, device, progress=on_step, models=models, **kwargs)
    seconds = time.perf_counter() - t0
    scores = ["exact" if method == "oracle" else b.score for b in bases]
    return Samples(method, np.asarray(x, dtype=np.float64),
                   np.stack(snaps) if snaps else np.zeros((0, 0, 2), np.float32), times, seconds, scores)


def score_samples(samples: Samples, q: np.ndarray, s: RunSettings) -> DiffusionRun:
    """Binned L1 of the samples against the binned target ``q`` (on [−L, L]²) with its noise floor."""
    from sculpt_core.domains.diffusion.metrics import binned_l1, noise_floor

    l1, frac_out = binned_l1(samples.x, q, s.extent)
    return DiffusionRun(samples, V.sample_histogram(samples.x, s.extent, q.shape[0]), l1,
                        noise_floor(q, len(samples.x), 5, s.seed), frac_out)


def compute_run(bases: Sequence[Base], comp: A.Composition, method: str, s: RunSettings, q: np.ndarray,
                classifier: Any = None) -> DiffusionRun:
    """Sample and score in one call (no caching; what the bench's baseline and the tests call)."""
    return score_samples(compute_samples(bases, comp, method, s, classifier), q, s)


@st.cache_resource(show_spinner=False)
def _sample_store() -> LRU:
    return LRU(96)


PREVIEW_N = 300
PREVIEW_STEPS = 20
PREVIEW_METHODS = ("oracle", "classifier")  # per-step cost: the quadrature, the classifier's autograd


def preview_settings(s: RunSettings) -> RunSettings | None:
    """Fewer particles and steps for a first look while a guided run computes (None when the run is small)."""
    if s.n * s.steps <= PREVIEW_N * PREVIEW_STEPS:
        return None
    return dataclasses.replace(s, n=min(s.n, PREVIEW_N), steps=min(s.steps, PREVIEW_STEPS))


def needs_preview(bases: Sequence[Base], comp: A.Composition, method: str, s: RunSettings,
                  clf_token: str | None = None) -> RunSettings | None:
    """The preview settings when a run is slow (a guided method, or learned score networks: a few ms per step
    each) and its samples are not cached yet, else None."""
    slow = method in PREVIEW_METHODS or (method != "oracle" and any(b.model is not None for b in bases))
    if not slow or _sample_store().get(sample_key(bases, comp, method, s, clf_token)) is not None:
        return None
    return preview_settings(s)


def cached_run(bases: Sequence[Base], comp: A.Composition, method: str, s: RunSettings, q: np.ndarray,
               classifier: Any = None, clf_token: str | None = None) -> DiffusionRun:
    """Samples cached by :func:`sample_key` (a progress bar while they compute), scored against ``q``."""
    key = sample_key(bases, comp, method, s, clf_token)
    store = _sample_store()
    samples = store.get(key)
    if samples is None:
        slot = st.empty()
        bar = slot.progress(0.0, text=f"{method_label(method)}: sampling {s.n} particles, {s.steps} steps…")
        every = max(1, s.steps // 20)

        def progress(step: int, total: int) -> None:
            if step % every == 0 or step == total:
                bar.progress(min(step / total, 1.0), text=f"{method_label(method)}: step {step}/{total}")

        try:
            samples = compute_samples(bases, comp, method, s, classifier, progress)
        finally:
            slot.empty()
        store.put(key, samples)
    return score_samples(samples, q, s)


# ----- classifier guidance ---------------------------------------------------------------------------
def label_count(comp: A.Composition) -> int:
    """How many labels a classifier for ``comp`` must model (two, or the number of observed labels)."""
    return max(2, len(comp.labels)) if comp.kind == "labels" else 2


def classifier_key(bases: Sequence[Base], comp: A.Composition) -> tuple:
    """Where a classifier trained in this session is kept: the bases and the number of labels it models."""
    return tokens(bases), label_count(comp)


@st.cache_resource(show_spinner="Loading the classifier…", max_entries=8)
def _load_classifier(path: str, mtime: float, base_tokens: tuple[str, ...], _bases: Sequence[Base]):
    """(classifier, None) or (None, why it cannot guide these bases): a shipped classifier records the
    fingerprints of the models it was trained on, so a rebuilt base makes it refuse."""
    from sculpt_core.domains.diffusion import classifier as C
    from sculpt_core.domains.diffusion import zoo as Z

    clf = Z.load_diffusion_classifier(path)
    check, fingerprint = getattr(clf, "check_bases", None), getattr(C, "base_fingerprint", None)
    if check is not None and fingerprint is not None:
        try:
            check([fingerprint(b.model if b.model is not None else b.spec) for b in _bases])
        except SculptError as exc:
            return None, str(exc)
    return clf, None


def _compatible(clf: Any, bases: Sequence[Base], comp: A.Composition) -> str | None:
    """Why ``clf`` cannot guide ``comp`` (core/methods.check_classifier_compat), or None."""
    from sculpt_core.core.methods import check_classifier_compat

    cfg = getattr(clf, "cfg", None)
    if cfg is None:
        return None
    try:
        check_classifier_compat(cfg, len(bases), comp, fallback=("oracle", "superdiff"))
    except SculptError as exc:
        return str(exc)
    return None


def find_classifier(bases: Sequence[Base], comp: A.Composition, session: dict) -> tuple[Any, str | None, str]:
    """(classifier, cache token, note) for the chosen bases and composition: one trained in this session, else
    the one the zoo ships for exactly these zoo models (``zoo.find_diffusion_classifier``); (None, None, why
    not) otherwise."""
    missing = "no classifier trained for these bases; train one below"
    entry = session.get(classifier_key(bases, comp))
    if entry is not None:
        why = _compatible(entry["clf"], bases, comp)
        if why:
            return None, None, f"the classifier trained in this session does not apply: {why}; train one below"
        return entry["clf"], entry["token"], "trained in this session"
    from sculpt_core.domains.diffusion import zoo as Z

    find = getattr(Z, "find_diffusion_classifier", None)
    load = getattr(Z, "load_diffusion_classifier", None)
    if find is None or load is None or any(b.model is None or ":" in b.ident for b in bases):
        return None, None, missing  # the zoo ships classifiers for its own learned models only
    try:
        path = find([b.ident for b in bases])
        if path is None:
            return None, None, missing
        clf, refused = _load_classifier(str(path), path.stat().st_mtime, tokens(bases), bases)
    except (SculptError, OSError) as exc:
        return None, None, f"the shipped classifier could not be loaded ({exc}); train one below"
    why = refused or _compatible(clf, bases, comp)
    if why:
        return None, None, f"the shipped classifier does not apply: {why}; train one below"
    return clf, f"clf:{path}:{path.stat().st_mtime}", f"shipped with the zoo ({path.name})"


def classifier_train_steps(steps: int) -> int:
    """The optimiser steps an in-page classifier training of ``steps`` runs (3 with ``SCULPT_FAST_TRAINING=1``)."""
    return min(int(steps), 3) if fast_training() else int(steps)


def train_classifier_here(bases: Sequence[Base], comp: A.Composition, steps: int,
                          progress: Callable[[int, dict], None] | None = None):
    """A small guidance classifier for the chosen bases (``train_classifier.train_diffusion_classifier``):
    α-conditioned for two bases with two labels; tiny with ``SCULPT_FAST_TRAINING=1``. SculptError when this
    version of the diffusion domain has no classifier training."""
    try:
        from sculpt_core.domains.diffusion import train_classifier as TC
        from sculpt_core.domains.diffusion.compose import ExactScoreModel
        from sculpt_core.domains.diffusion.sde import SDE

        train, config = TC.train_diffusion_classifier, TC.DiffusionClassifierTrainConfig
    except (ImportError, AttributeError):
        raise SculptError("this version of sculpt_core cannot train diffusion classifiers yet") from None
    n_labels = label_count(comp)
    wanted: dict = {"steps": classifier_train_steps(steps), "batch": 256, "trajectories": 512, "pool_steps": 100,
                    "refresh_every": max(1, int(steps) // 2), "warmup": max(1, int(steps) // 3), "hidden": 128,
                    "n_labels": n_labels, "alpha_cond": len(bases) == 2 and n_labels == 2}
    if fast_training():
        wanted.update({"batch": 16, "trajectories": 16, "pool_steps": 8,
                       "refresh_every": 10, "warmup": 1, "hidden": 16})
    names = {f.name for f in dataclasses.fields(config)}
    cfg = config(**{k: v for k, v in wanted.items() if k in names})
    device = _device()
    models = [ExactScoreModel(b.spec, SDE, device) if b.model is None else b.model for b in bases]
    use_one_torch_thread()
    return train(models, cfg, device=device, base_names=[short_name(b.ident) for b in bases], progress=progress,
                 progress_every=max(1, wanted["steps"] // 50))


# ----- training ----------------------------------------------------------------------------------------------
def train_settings(steps: int) -> tuple[int, int]:
    """(steps, batch) of an in-page training run (tiny with ``SCULPT_FAST_TRAINING=1``)."""
    if fast_training():
        return min(int(steps), 5), 64
    return int(steps), TRAIN_BATCH


def train_score_model(spec: GaussianMixture, steps: int, seed: int, name: str,
                      progress: Callable[[int, dict], None] | None = None):
    """A fresh score model trained on ``spec`` by denoising score matching (``train_dsm``), named ``name``."""
    from sculpt_core.domains.diffusion.train import train_dsm

    steps, batch = train_settings(steps)
    use_one_torch_thread()
    model = train_dsm(spec, steps, batch, 2e-3, seed, device=_device(), progress=progress,
                      progress_every=max(1, steps // 50))
    model.name = name
    return model


def new_token(prefix: str = "trained") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


# ----- downloads and formatting ----------------------------------------------------------------------------
def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


__all__ = ["BINS", "Base", "DiffusionRun", "RunSettings", "Samples", "cached_base_density", "cached_emd_floor",
           "cached_exact", "cached_run", "cached_target", "classifier_key", "classifier_train_steps", "compute_run",
           "compute_samples", "find_classifier", "fmt", "label_count", "method_label", "methods", "needs_preview", "new_token",
           "npy_bytes", "preview_settings", "resolve", "run_emd", "sample_key", "score_samples", "snapshot_steps",
           "spec_token", "tokens", "train_classifier_here", "train_score_model", "train_settings", "zoo_names"]
