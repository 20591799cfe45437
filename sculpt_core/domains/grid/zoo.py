"""Re-create the shipped grid base models (``python -m sculpt_core zoo build-grid``)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.domains.grid.rewards import grid_log_reward
from sculpt_core.domains.grid.train import GridTrainConfig, exact_l1, train_grid_model
from functools import lru_cache
from pathlib import Path

from sculpt_core.core.zoo import assets_dir, classifier_key, read_manifest, resolve_checkpoint, update_manifest
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.errors import SculptError


# ----- loading shipped grid models and classifiers -------------------------------------------------
def grid_model_names() -> list[str]:
    """Names of the shipped grid base models, in manifest order."""
    return list(read_manifest()["grid_models"])


def resolve_grid_model_path(name_or_path: str) -> Path:
    """A zoo name or a path to a checkpoint file → the checkpoint path (clear error otherwise)."""
    return resolve_checkpoint(name_or_path, "grid_models", "grid model")


def load_grid_model(name_or_path: str) -> GridBaseModel:
    """Load a zoo model by name, or a checkpoint by path. Zoo models are cached per process."""
    path = resolve_grid_model_path(name_or_path)
    model = _load_grid_model_cached(str(path.resolve()), path.stat().st_mtime)
    if name_or_path in read_manifest()["grid_models"]:
        model.name = name_or_path
    return model


@lru_cache(maxsize=64)
def _load_grid_model_cached(path: str, mtime: float) -> GridBaseModel:
    return GridBaseModel.load(path)


def find_grid_classifier(base_names: list[str], models: list[GridBaseModel] | None = None):
    """The shipped classifier trained for exactly these base models in this order, or None.

    Returns ``(classifier, manifest entry)``; a classifier for the same models in another order is not
    reused (labels y_k refer to positions). ``models`` (default: the zoo models of these names) must be the
    exact bases it was trained on (:func:`check_classifier_bases`)."""
    entries = read_manifest()["grid_classifiers"]
    entry = entries.get(classifier_key(base_names))
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise SculptError(f"manifest entry {classifier_key(base_names)!r} in 'grid_classifiers' has no 'file'")
    path = assets_dir() / entry["file"]
    if not path.is_file():
        raise SculptError(f"classifier {classifier_key(base_names)!r} is listed in the manifest but {path} is missing")
    net, bases, meta = _load_classifier_cached(str(path.resolve()), path.stat().st_mtime)
    if bases != list(base_names):
        raise SculptError(f"{path}: manifest says bases {base_names}, file says {bases}")
    models = [load_grid_model(n) for n in base_names] if models is None else models
    check_classifier_bases(path, bases, meta, models, entry.get("base_fingerprints"),
                           rebuild=f"python -m sculpt_core zoo build-classifiers --keys {classifier_key(base_names)}")
    return net, entry


def manifest_fingerprints(path: str | Path) -> list[str] | None:
    """The base fingerprints the manifest records for the shipped classifier stored at ``path`` (None if
    ``path`` is not a shipped classifier or the manifest records none)."""
    target = Path(path).resolve()
    for entry in read_manifest()["grid_classifiers"].values():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str) and \
                (assets_dir() / entry["file"]).resolve() == target:
            return entry.get("base_fingerprints")
    return None


def check_classifier_bases(path, clf_bases: list[str], meta: dict, models: list[GridBaseModel],
                           recorded: list[str] | None = None, rebuild: str | None = None) -> None:
    """SculptError unless ``models`` are the exact bases the classifier at ``path`` was trained on: the
    weight fingerprints it records (``meta["base_fingerprints"]``, or ``recorded`` from the manifest for the
    shipped classifiers saved before fingerprints existed) must match ``GridBaseModel.fingerprint()``. A
    classifier with no fingerprints at all cannot be checked and is refused. ``rebuild``: the command that
    re-trains it (default: ``grid train-classifier`` for these bases)."""
    names = [m.name for m in models]
    rebuild = rebuild or f"python -m sculpt_core grid train-classifier --bases {','.join(names)} --out clf.pt"
    if len(clf_bases) != len(models):
        raise SculptError(f"{path} was trained for {len(clf_bases)} base models ({','.join(clf_bases)}), "
                          f"{len(models)} given")
    fps = meta.get("base_fingerprints") or recorded or manifest_fingerprints(path)
    if not fps or len(fps) != len(models):
        raise SculptError(f"{path} records no weight fingerprints of the base models it was trained on, so it "
                          f"cannot be checked against {','.join(names)}; retrain it with `{rebuild}`")
    stale = [f"{m.name} is not its {clf_name}" for m, clf_name, fp in zip(models, clf_bases, fps)
             if fp != m.fingerprint()]
    if stale:
        raise SculptError(f"{path} was trained on other base models ({'; '.join(stale)}: other weights, e.g. "
                          f"retrained); use the classifier of these bases or train one with `{rebuild}`")


@lru_cache(maxsize=16)
def _load_classifier_cached(path: str, mtime: float):
    from sculpt_core.domains.grid.classifier import load_classifier

    return load_classifier(path)



GRID_BETA_RANGE = (0.5, 2.0)

# name: (reward, temperature, β-conditioned) — the paper's 2-distribution and 3-distribution experiments.
# A β-conditioned model learns p ∝ (R^(1/T))^β for every β in GRID_BETA_RANGE: the temperature is folded into
# its reward, so β = 1 is the paper's setting and one β slider scales every base model alike.
GRID_ZOO_SPECS: dict[str, tuple[str, float, bool]] = {
    "symmetric_shubert": ("symmetric_shubert", 0.5, False),
    "diag_sigmoid": ("diag_sigmoid", 1.0, False),
    "circle1": ("circle1", 1.0, False),
    "circle2": ("circle2", 1.0, False),
    "circle3": ("circle3", 1.0, False),
    "symmetric_shubert_beta": ("symmetric_shubert", 0.5, True),
    "diag_sigmoid_beta": ("diag_sigmoid", 1.0, True),
    "circle1_beta": ("circle1", 1.0, True),
    "circle2_beta": ("circle2", 1.0, True),
    "circle3_beta": ("circle3", 1.0, True),
}


def build_grid_zoo(
    names: list[str] | None = None,
    cfg: GridTrainConfig = GridTrainConfig(steps=4000),
    progress_factory: Callable[[str, int], tuple[Callable, Callable]] | None = None,
) -> dict[str, dict]:
    """Train the named zoo models (all by default), save them in assets/zoo/grid/, update the manifest."""
    env = GridEnv(32, 2)
    results = {}
    for name in names or list(GRID_ZOO_SPECS):
        reward, temperature, beta_conditioned = GRID_ZOO_SPECS[name]
        log_reward = grid_log_reward(env, reward)
        model_cfg, train_temperature = cfg, temperature
        if beta_conditioned:
            log_reward = log_reward / temperature
            model_cfg, train_temperature = replace(cfg, beta_range=GRID_BETA_RANGE), 1.0
        update, close = progress_factory(name, cfg.steps) if progress_factory else (None, lambda: None)
        start = time.perf_counter()
        try:
            model, info = train_grid_model(log_reward, train_temperature, model_cfg, reward, progress=update)
        finally:
            close()
        rel = f"zoo/grid/{name}.pt"
        model.name = name
        if beta_conditioned:
            model.meta["reward_temperature"] = temperature  # the stored log-reward is log R / T
            model.meta["l1_by_beta"] = {f"{b:g}": round(exact_l1(model, b), 6) for b in BETA_REPORT_POINTS}
        model.save(assets_dir() / rel)
        entry = {"file": rel, "reward": reward, "temperature": temperature, "height": 32, "loss": cfg.loss,
                 "has_flow": bool(model.meta.get("has_flow")), "steps": info["steps"], "seed": cfg.seed,
                 "l1": round(info["l1"], 6), "train_seconds": round(time.perf_counter() - start, 1)}
        if beta_conditioned:
            entry.update({"beta_range": list(GRID_BETA_RANGE), "l1_by_beta": model.meta["l1_by_beta"]})
        update_manifest("grid_models", name, entry)
        results[name] = entry
    return results


BETA_REPORT_POINTS = (0.5, 0.75, 1.0, 1.5, 2.0)


# key: (base names, alpha-conditioned, number of labels) — the paper's two classifier experiments
GRID_CLASSIFIER_SPECS: dict[str, tuple[list[str], bool, int]] = {
    "symmetric_shubert+diag_sigmoid": (["symmetric_shubert", "diag_sigmoid"], True, 2),
    "circle1+circle2+circle3": (["circle1", "circle2", "circle3"], False, 3),
    "circle1+circle2": (["circle1", "circle2"], True, 2),  # the Routing-by-Reaching comparison (p_c1 ⊗ p_c2)
}


def paper_evaluation_compositions(n_models: int):
    """The compositions the paper evaluates for a classifier of 2 (α-conditioned) or 3 models."""
    from sculpt_core.core import algebra as A

    if n_models == 2:
        return [op(a) for op in (A.harmonic_mean, A.contrast, A.reverse_contrast) for a in (0.05, 0.5, 0.95)]
    labels = [(1, 2), (2, 3), (1, 3), (1, 2, 3), (1, 1), (2, 2), (3, 3), (1, 1, 1), (2, 2, 2), (3, 3, 3)]
    return [A.conditioning(y, 3) for y in labels]


def build_grid_classifiers(
    keys: list[str] | None = None,
    steps: int = 1500,
    progress_factory: Callable[[str, int], tuple[Callable, Callable]] | None = None,
) -> dict[str, dict]:
    """Train the shipped classifiers (Algorithm A.1) for the zoo's base models; record their exact guided L1s."""
    from sculpt_core.domains.grid.compose import prepare_bases
    from sculpt_core.domains.grid.classifier import save_classifier
    from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig, guided_l1, train_grid_classifier

    results = {}
    for key in keys or list(GRID_CLASSIFIER_SPECS):
        names, alpha_cond, n_labels = GRID_CLASSIFIER_SPECS[key]
        models = [load_grid_model(n) for n in names]
        bases = prepare_bases(models)
        comps = paper_evaluation_compositions(len(names))
        cfg = ClassifierTrainConfig(steps=steps, alpha_cond=alpha_cond, n_labels=n_labels, eval_every=max(1, steps // 6))
        update, close = progress_factory(key, steps) if progress_factory else (None, lambda: None)
        start = time.perf_counter()
        try:
            net, info = train_grid_classifier(models, cfg, progress=update)
        finally:
            close()
        seconds = time.perf_counter() - start
        l1s = {c.describe(): round(guided_l1(bases, net, c), 5) for c in comps}
        rel = f"zoo/grid/classifier_{key.replace('+', '__')}.pt"
        fingerprints = [m.fingerprint() for m in models]
        entry = {"file": rel, "bases": names, "base_fingerprints": fingerprints, "alpha_cond": alpha_cond,
                 "n_labels": n_labels, "objective": cfg.objective, "steps": steps, "train_seconds": round(seconds, 1), "guided_l1": l1s,
                 "max_guided_l1": max(l1s.values())}
        save_classifier(assets_dir() / rel, net, names, entry, fingerprints)
        update_manifest("grid_classifiers", key, entry)
        results[key] = entry
    return results
