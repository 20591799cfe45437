"""Re-create the shipped grid base models (``python -m sculpt_core zoo build-grid``)."""

from __future__ import annotations

import time
from typing import Callable

from ..envs.grid import GridEnv
from ..rewards.grid import grid_log_reward
from ..train.grid_trainer import GridTrainConfig, train_grid_model
from .registry import assets_dir, read_manifest, write_manifest

# name: (reward, temperature) — the paper's 2-distribution and 3-distribution experiments
GRID_ZOO_SPECS: dict[str, tuple[str, float]] = {
    "symmetric_shubert": ("symmetric_shubert", 0.5),
    "diag_sigmoid": ("diag_sigmoid", 1.0),
    "circle1": ("circle1", 1.0),
    "circle2": ("circle2", 1.0),
    "circle3": ("circle3", 1.0),
}


def build_grid_zoo(
    names: list[str] | None = None,
    cfg: GridTrainConfig = GridTrainConfig(steps=4000),
    progress_factory: Callable[[str, int], tuple[Callable, Callable]] | None = None,
) -> dict[str, dict]:
    """Train the named zoo models (all by default), save them in assets/zoo/grid/, update the manifest."""
    env = GridEnv(32, 2)
    manifest = read_manifest()
    results = {}
    for name in names or list(GRID_ZOO_SPECS):
        reward, temperature = GRID_ZOO_SPECS[name]
        update, close = progress_factory(name, cfg.steps) if progress_factory else (None, lambda: None)
        start = time.perf_counter()
        try:
            model, info = train_grid_model(grid_log_reward(env, reward), temperature, cfg, reward, progress=update)
        finally:
            close()
        rel = f"zoo/grid/{name}.pt"
        model.name = name
        model.save(assets_dir() / rel)
        entry = {"file": rel, "reward": reward, "temperature": temperature, "height": 32, "loss": cfg.loss,
                 "has_flow": bool(model.meta.get("has_flow")), "steps": info["steps"], "seed": cfg.seed,
                 "l1": round(info["l1"], 6), "train_seconds": round(time.perf_counter() - start, 1)}
        manifest["grid_models"][name] = entry
        write_manifest(manifest)
        results[name] = entry
    return results
