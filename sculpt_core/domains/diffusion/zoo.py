"""Shipped learned score models of the diffusion domain: ``assets/manifest.json`` section ``diffusion_models``
(name → {"file": "zoo/diffusion/<name>.pt", "spec": <built-in spec name>, training and sample figures}).

``python -m sculpt_core zoo build-diffusion`` re-creates them: each is trained by denoising score matching on
its built-in spec (:func:`train_dsm`), then its own samples (the ``base`` method, n = 20000, 500
Euler–Maruyama steps) are scored against the exact spec (binned L1 on 40×40 bins of [−3.5, 3.5]² with its
noise floor). Every checkpoint records the spec it was trained on (``ScoreBaseModel.spec()``).

How ``--bases`` entries resolve (:func:`resolve_base`), first match wins:

1. ``spec:NAME`` → the exact spec NAME (a built-in name or a JSON path), never a learned model;
2. a name in the manifest's ``diffusion_models`` → that learned model (its recorded spec and its score);
3. a built-in spec name (ring, band, column) → the exact spec;
4. a path ending in ``.pt``/``.pth`` → a learned checkpoint; any other path → a JSON spec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from sculpt_core.core.zoo import assets_dir, read_manifest, resolve_checkpoint, update_manifest
from sculpt_core.domains.diffusion.model import ScoreBaseModel
from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS, GaussianMixture, load_spec
from sculpt_core.errors import SculptError

SECTION = "diffusion_models"
EXACT_PREFIX = "spec:"

#: Zoo model name → the built-in spec it is trained on.
DIFFUSION_ZOO_SPECS: dict[str, str] = {"ring": "ring", "band": "band", "column": "column"}

#: How each zoo model's samples are scored after training.
EVAL_N = 20000
EVAL_STEPS = 500
EVAL_EXTENT = 3.5
EVAL_BINS = 40


def diffusion_model_entries() -> dict[str, Any]:
    """The ``diffusion_models`` section of the manifest (empty if absent)."""
    entries = read_manifest().get(SECTION, {})
    if not isinstance(entries, dict):
        raise SculptError(f"manifest section {SECTION!r} must be an object")
    return entries


def diffusion_model_names() -> list[str]:
    """Names of the shipped diffusion models, in manifest order."""
    return list(diffusion_model_entries())


def resolve_diffusion_model_path(name_or_path: str) -> Path:
    """A zoo name or a checkpoint path → the checkpoint file (SculptError if neither)."""
    return resolve_checkpoint(name_or_path, SECTION, "diffusion model")


def load_diffusion_model(name_or_path: str) -> ScoreBaseModel:
    """Load a zoo model by name or a checkpoint by path (cached per process by path and mtime); SculptError
    if the checkpoint records no spec. The cached object is shared: callers must not modify its weights."""
    path = resolve_diffusion_model_path(name_or_path)
    model = _load_cached(str(path.resolve()), path.stat().st_mtime)
    if model.spec() is None:
        raise SculptError(f"{path} records no training spec; retrain it with `python -m sculpt_core diffusion train`")
    if name_or_path in diffusion_model_entries():
        model.name = name_or_path
    return model


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float) -> ScoreBaseModel:
    return ScoreBaseModel.load(path)


@dataclass(frozen=True)
class ResolvedBase:
    """One ``--bases`` entry: the exact spec (target, oracle, metrics) and, for a learned base, its model."""

    spec: GaussianMixture
    model: ScoreBaseModel | None = None

    @property
    def score(self) -> str:
        """``learned`` or ``exact``: where this base's score comes from (the oracle always uses ``exact``)."""
        return "exact" if self.model is None else "learned"


def resolve_base(text: str) -> ResolvedBase:
    """One ``--bases`` entry → a :class:`ResolvedBase` (precedence in the module docstring)."""
    text = text.strip()
    if text.startswith(EXACT_PREFIX):
        return ResolvedBase(load_spec(text[len(EXACT_PREFIX):].strip()))
    if text in diffusion_model_entries() or Path(text).suffix in (".pt", ".pth"):
        model = load_diffusion_model(text)
        spec = model.spec()
        assert spec is not None  # load_diffusion_model refuses checkpoints without one
        name = text if text in diffusion_model_entries() else Path(text).stem
        return ResolvedBase(GaussianMixture(name, spec.weights, spec.means, spec.covs), model)
    return ResolvedBase(load_spec(text))


# ----- building the zoo -----------------------------------------------------------------------------------------
def evaluate_model(model: ScoreBaseModel, seed: int = 0, n: int = EVAL_N, steps: int = EVAL_STEPS,
                   device: Any = None) -> dict[str, Any]:
    """Binned L1 (and floor, and their ratio) of the model's own samples against its recorded spec."""
    from sculpt_core.core import algebra as A
    from sculpt_core.domains.diffusion.metrics import evaluate
    from sculpt_core.domains.diffusion.sampling import sample_method

    spec = model.spec()
    if spec is None:
        raise SculptError("the model records no spec to evaluate against")
    t0 = time.perf_counter()
    x, exact = sample_method([spec], A.mixture([1.0]), "base", n, steps, "em", seed, "exact", device=device,
                             models=[model])
    figures = evaluate(x, exact, EVAL_EXTENT, EVAL_BINS, seed=seed)
    ratio = figures["l1"] / figures["l1_floor"] if figures["l1_floor"] > 0 else float("inf")
    return {"eval_n": n, "eval_steps": steps, "eval_extent": EVAL_EXTENT, "eval_bins": EVAL_BINS,
            "l1": figures["l1"], "l1_floor": figures["l1_floor"], "l1_over_floor": round(ratio, 4),
            "emd": figures["emd"], "emd_floor": figures["emd_floor"],
            "eval_seconds": round(time.perf_counter() - t0, 2)}


def build_diffusion_zoo(names: list[str] | None = None, steps: int = 10000, seed: int = 0,
                        progress_factory: Callable[[str, int], tuple[Callable, Callable]] | None = None,
                        eval_n: int = EVAL_N, eval_steps: int = EVAL_STEPS) -> dict[str, dict]:
    """Train the named zoo models (all by default), save them in ``assets/zoo/diffusion/``, score their
    samples and write their manifest entries; returns the entries."""
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.train import train_dsm

    names = list(DIFFUSION_ZOO_SPECS) if names is None else names
    unknown = [n for n in names if n not in DIFFUSION_ZOO_SPECS]
    if unknown:
        raise SculptError(f"unknown diffusion zoo model(s) {unknown}; known: {', '.join(DIFFUSION_ZOO_SPECS)}")
    device = default_device()
    results = {}
    for name in names:
        spec_name = DIFFUSION_ZOO_SPECS[name]
        assert spec_name in BUILTIN_SPECS
        spec = load_spec(spec_name)
        update, close = progress_factory(name, steps) if progress_factory else (None, lambda: None)
        try:
            model = train_dsm(spec, steps, seed=seed, device=device, progress=update)
        finally:
            close()
        model.name = name
        figures = evaluate_model(model, seed, eval_n, eval_steps, device)
        rel = f"zoo/diffusion/{name}.pt"
        model.meta["sample_eval"] = figures
        model.save(assets_dir() / rel)
        meta = model.meta
        entry = {"file": rel, "spec": spec_name, "steps": meta["steps"], "batch": meta["batch"], "lr": meta["lr"],
                 "seed": seed, "seconds": meta["seconds"], "final_loss": meta["final_loss"],
                 "score_error": meta["score_error"], "score_error_grid": meta["score_error_grid"],
                 "score_error_by_t": meta["score_error_by_t"], **figures}
        update_manifest(SECTION, name, entry)
        results[name] = entry
    return results


# ----- guidance classifiers ---------------------------------------------------------------------------------------
CLASSIFIER_SECTION = "diffusion_classifiers"

#: Shipped classifiers: manifest key → (zoo bases in order, labels, α-conditioned, training settings). The
#: three-label joint has 27 tuples and its target y = (1, 2, 3) is a small-probability one: it gets twice the
#: steps and batch (y = (1, 2, 3) L1 0.474 → 0.329 at n = 20000).
DIFFUSION_ZOO_CLASSIFIERS: dict[str, tuple[tuple[str, ...], int, bool, dict]] = {
    "ring+band": (("ring", "band"), 2, True, {"steps": 2000}),
    "ring+band+column": (("ring", "band", "column"), 3, False, {"steps": 4000, "batch": 2048, "trajectories": 4096}),
}


def diffusion_classifier_entries() -> dict[str, Any]:
    """The ``diffusion_classifiers`` section of the manifest (empty if absent)."""
    entries = read_manifest().get(CLASSIFIER_SECTION, {})
    if not isinstance(entries, dict):
        raise SculptError(f"manifest section {CLASSIFIER_SECTION!r} must be an object")
    return entries


def find_diffusion_classifier(base_names: list[str]) -> Path | None:
    """The shipped classifier for these zoo bases, in this order (None if there is none)."""
    from sculpt_core.core.zoo import classifier_key

    key = classifier_key(list(base_names))
    if key not in diffusion_classifier_entries():
        return None
    return resolve_checkpoint(key, CLASSIFIER_SECTION, "diffusion classifier")


def load_diffusion_classifier(name_or_path: str | Path):
    """A ``GuidanceClassifier`` by manifest key or checkpoint path (cached per process by path and mtime)."""
    path = resolve_checkpoint(str(name_or_path), CLASSIFIER_SECTION, "diffusion classifier")
    return _load_classifier_cached(str(path.resolve()), path.stat().st_mtime)


@lru_cache(maxsize=8)
def _load_classifier_cached(path: str, mtime: float):
    from sculpt_core.domains.diffusion.classifier import GuidanceClassifier

    return GuidanceClassifier.load(path)


def base_fingerprints(bases: list[ResolvedBase]) -> list[str]:
    """The fingerprint of each resolved base as a classifier sees it: its learned model, else its exact spec."""
    from sculpt_core.domains.diffusion.classifier import base_fingerprint

    return [base_fingerprint(b.model if b.model is not None else b.spec) for b in bases]


def score_models(bases: list[ResolvedBase], device: Any = None) -> list:
    """One score model per base: its learned network, or the exact score of its spec."""
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.compose import ExactScoreModel

    device = default_device() if device is None else device
    return [b.model if b.model is not None else ExactScoreModel(b.spec, device=device) for b in bases]


def build_diffusion_classifiers(keys: list[str] | None = None, steps: int | None = None, seed: int = 0,
                                progress_factory: Callable[[str, int], tuple[Callable, Callable]] | None = None
                                ) -> dict[str, dict]:
    """Train the named shipped classifiers (all by default; ``steps`` overrides each one's own) on the shipped
    bases, measure their posterior error against the exact specs, save them in ``assets/zoo/diffusion/`` and
    write their manifest entries."""
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.model import data_scale
    from sculpt_core.domains.diffusion.train_classifier import DiffusionClassifierTrainConfig, train_diffusion_classifier

    keys = list(DIFFUSION_ZOO_CLASSIFIERS) if keys is None else keys
    unknown = [k for k in keys if k not in DIFFUSION_ZOO_CLASSIFIERS]
    if unknown:
        raise SculptError(f"unknown diffusion classifier(s) {unknown}; known: {', '.join(DIFFUSION_ZOO_CLASSIFIERS)}")
    device = default_device()
    results = {}
    for key in keys:
        names, n_labels, alpha_cond, settings = DIFFUSION_ZOO_CLASSIFIERS[key]
        bases = [resolve_base(n) for n in names]
        settings = {**settings, **({"steps": steps} if steps is not None else {})}
        cfg = DiffusionClassifierTrainConfig(n_labels=n_labels, alpha_cond=alpha_cond, seed=seed, **settings)
        update, close = progress_factory(key, cfg.steps) if progress_factory else (None, lambda: None)
        try:
            clf = train_diffusion_classifier(score_models(bases, device), cfg, device=device, base_names=list(names),
                                             sigma_data=max(data_scale(b.spec) for b in bases), progress=update)
        finally:
            close()
        results[key] = ship_classifier(key, clf, [b.spec for b in bases])
    return results


def ship_classifier(key: str, clf, specs: list[GaussianMixture]) -> dict:
    """Measure ``clf``'s posterior error against ``specs``, save it as the zoo's classifier ``key`` and write
    its manifest entry (the training settings come from its own metadata)."""
    from sculpt_core.domains.diffusion.train_classifier import posterior_error

    clf.meta.update(posterior_error(clf, specs))
    rel = f"zoo/diffusion/classifier_{key}.pt"
    clf.save(assets_dir() / rel)
    meta, train = clf.meta, clf.meta["train"]
    entry = {"file": rel, "bases": list(meta["bases"]), "n_labels": clf.cfg.n_labels, "alpha_cond": clf.cfg.alpha_cond,
             **{k: train[k] for k in ("steps", "batch", "trajectories", "pool_steps", "seed")},
             "seconds": meta["seconds"], "loss_terminal": meta["loss_terminal"],
                 "loss_nonterminal": meta["loss_nonterminal"], "posterior_tv_y1_mean": meta["posterior_tv_y1_mean"],
             **({"posterior_tv_joint_mean": meta["posterior_tv_joint_mean"]} if "posterior_tv_joint_mean" in meta else {})}
    update_manifest(CLASSIFIER_SECTION, key, entry)
    return entry


__all__ = ["CLASSIFIER_SECTION", "DIFFUSION_ZOO_CLASSIFIERS", "DIFFUSION_ZOO_SPECS", "base_fingerprints",
           "build_diffusion_classifiers", "diffusion_classifier_entries", "ship_classifier", "find_diffusion_classifier",
           "load_diffusion_classifier", "score_models", "EXACT_PREFIX", "ResolvedBase", "SECTION", "build_diffusion_zoo",
           "diffusion_model_entries", "diffusion_model_names", "evaluate_model", "load_diffusion_model",
           "resolve_base", "resolve_diffusion_model_path"]
