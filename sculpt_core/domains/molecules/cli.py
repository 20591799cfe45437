"""``python -m sculpt_core mol train|sample``: molecule base-model training and sampling commands.

Registered into the ``mol`` sub-command group of :mod:`sculpt_core.cli` by :func:`register_mol_commands`.
Sampling methods live in :data:`SAMPLE_METHODS` (name → builder of a molecule policy from the loaded base
models and the parsed arguments); ``classifier``, ``reaching`` and ``ensemble`` are added there.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable

from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.compose_cli import COMPOSE_METHODS, add_compose_sample_args, register_train_classifier

SAMPLE_COLUMNS = ("smiles", "seh_reward", "sa_reward", "qed")


# ----- mol train -------------------------------------------------------------------------------------------
def _parse_range(text: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise SculptError(f"--beta-range must be 'low,high', got {text!r}") from None
    if len(parts) != 2 or not all(math.isfinite(p) for p in parts):
        raise SculptError(f"--beta-range must be two finite numbers 'low,high', got {text!r}")
    return parts[0], parts[1]


def cmd_mol_train(args: argparse.Namespace) -> dict:
    from sculpt_core.cli import _progress_bar
    from sculpt_core.domains.molecules.train import MolTrainConfig, train_mol_model

    if args.steps < 1:
        raise SculptError(f"--steps must be ≥ 1, got {args.steps}")
    beta_range = _parse_range(args.beta_range)
    eval_beta = 32.0 if beta_range[0] <= 32.0 <= beta_range[1] else beta_range[1]
    cfg = MolTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_log_z=args.lr_log_z,
                         beta_range=beta_range, seed=args.seed, eval_beta=eval_beta, hidden=args.hidden,
                         n_layers=args.layers, eval_every=max(1, min(args.eval_every, args.steps)),
                         time_limit_s=args.time_limit, save_every=max(0, args.save_every), device=args.device)
    start_model = None
    if args.resume:
        from sculpt_core.domains.molecules.model import MolBaseModel

        start_model = MolBaseModel.load(args.resume)
        if start_model.meta.get("reward") not in (None, args.reward):
            raise SculptError(f"{args.resume} was trained on {start_model.meta['reward']!r}, not {args.reward!r}")
    update, close = _progress_bar(cfg.steps, f"train {args.reward}")
    try:
        model, info = train_mol_model(args.reward, cfg, progress=update, model=start_model, checkpoint=args.out)
    finally:
        close()
    model.name = args.name or args.reward
    model.save(args.out)
    return {"reward": args.reward, "steps": info["steps"], "total_steps": model.meta.get("steps"), "seconds": round(info["seconds"], 1),
            "seconds_per_step": round(info["seconds"] / max(info["steps"], 1), 4), "beta_range": list(beta_range),
            "eval_beta": eval_beta, "high_frac": info.get("high_frac"), "uniqueness": info.get("uniqueness"),
            "eval_mean_reward": info.get("eval_mean_reward"), "device": model.meta.get("device"), "out": args.out}


# ----- mol sample ------------------------------------------------------------------------------------------
PolicyBuilder = Callable[[list, argparse.Namespace], Any]


def _base_policy(models: list, args: argparse.Namespace):
    if len(models) != 1:
        raise SculptError(f"--method base samples ONE base model, got {len(models)} in --bases")
    return models[0].policy(args.beta)


#: --method name → builder(models, args) of a molecule policy (evaluate.mol_sampling protocol).
SAMPLE_METHODS: dict[str, PolicyBuilder] = {"base": _base_policy}
SAMPLE_METHODS.update(COMPOSE_METHODS)  # classifier, reaching, ensemble (mol_compose_cli)


def write_samples_csv(path: str | Path, records: list[dict]) -> None:
    """``smiles,seh_reward,sa_reward,qed`` (empty cell where a reward is unavailable)."""
    from sculpt_core.domains.molecules.rewards import write_csv

    write_csv(path, SAMPLE_COLUMNS, ([r[c] for c in SAMPLE_COLUMNS] for r in records))


def summarize_samples(records: list[dict]) -> dict:
    """Table 1 bins (when all three rewards are known), per-reward high fractions, uniqueness, diversity-free."""
    import numpy as np

    from sculpt_core.domains.molecules.metrics import TABLE1_NAMES, TABLE1_THRESHOLDS, table1_bins, uniqueness

    cols = {"seh": "seh_reward", "sa": "sa_reward", "qed": "qed"}
    arr = np.array([[r[cols[k]] for k in TABLE1_NAMES] for r in records], dtype=np.float64)
    out: dict[str, Any] = {"uniqueness": round(float(uniqueness([r["smiles"] for r in records])), 4)}
    high = {}
    for j, (name, thr) in enumerate(zip(TABLE1_NAMES, TABLE1_THRESHOLDS)):
        col = arr[:, j]
        high[name] = None if np.isnan(col).any() else round(float((col >= thr).mean()), 4)
    out["high_frac"] = high
    out["mean_reward"] = {n: (None if np.isnan(arr[:, j]).any() else round(float(arr[:, j].mean()), 4))
                          for j, n in enumerate(TABLE1_NAMES)}
    if not np.isnan(arr).any():
        bins = table1_bins(arr.astype(np.float32))
        out["table1"] = {"codes": bins["codes"], "percent": bins["percent"]}
    else:
        out["table1"] = None
    return out


def cmd_mol_sample(args: argparse.Namespace) -> dict:
    from sculpt_core.cli import _parse_list
    from sculpt_core.domains.molecules.sampling import sample_molecules
    from sculpt_core.domains.molecules.rewards import score_smiles
    from sculpt_core.domains.molecules.seh_proxy import seh_unavailable_reason
    from sculpt_core.domains.molecules.zoo import load_mol_model

    if args.n < 1:
        raise SculptError(f"--n must be ≥ 1, got {args.n}")
    if args.batch_size < 1:
        raise SculptError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    names = _parse_list(args.bases, str, "--bases")
    models = [load_mol_model(n) for n in names]
    libs = {tuple(m.env.library.smiles) for m in models}
    if len(libs) > 1:
        raise SculptError("the base models were trained on different fragment libraries")
    policy = SAMPLE_METHODS[args.method](models, args)
    samples = sample_molecules(policy, args.n, seed=args.seed, batch_size=args.batch_size, env=models[0].env)
    t0 = time.perf_counter()
    reason = seh_unavailable_reason()
    scored = score_smiles(samples.smiles, seh=reason is None)
    score_seconds = time.perf_counter() - t0
    records = [{"smiles": r["smiles"], "seh_reward": r["seh_reward"], "sa_reward": r["sa_reward"], "qed": r["qed"]}
               for r in scored]
    write_samples_csv(args.out, records)
    settings = {}  # the option that decides how a composed method samples
    if args.method == "reaching":
        settings["u"] = getattr(args, "u", None)
    elif args.method == "classifier":
        settings["scoring"] = getattr(args, "scoring", None)
    return {"method": args.method, **settings, "bases": [m.name for m in models], "beta": args.beta, "n": len(records),
            "invalid_dropped": samples.n_invalid, "trajectories": samples.n_trajectories,
            **summarize_samples(records), "seh": "ok" if reason is None else f"unavailable: {reason}",
            "sample_seconds": round(samples.seconds, 3), "molecules_per_s": round(samples.molecules_per_s, 1),
            "score_seconds": round(score_seconds, 3), "out": args.out}


# ----- registration ---------------------------------------------------------------------------------------
def register_mol_commands(mol: argparse._SubParsersAction) -> None:
    """Add ``train``, ``sample`` and ``train-classifier`` to the ``mol`` sub-command group."""
    p = mol.add_parser("train", help="train a β-conditioned base GFlowNet on sEH, SA or QED")
    p.add_argument("--reward", choices=["seh", "sa", "qed"], required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True, help="output checkpoint .pt")
    p.add_argument("--beta-range", default="0,96", help="training range of the reward exponent β, 'low,high'")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64, help="trajectories per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=3e-2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=100, help="steps between on-policy evaluations at β=32")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--save-every", type=int, default=250, help="write --out every this many steps (0: only at the end)")
    p.add_argument("--resume", default=None, help="continue training this checkpoint (the lr decay continues; Adam restarts)")
    p.add_argument("--device", default=None, help="torch device (default: CUDA if available)")
    p.add_argument("--name", default=None, help="model name stored in the checkpoint (default: the reward)")
    p.set_defaults(func=cmd_mol_train)

    p = mol.add_parser("sample", help="sample molecules from base models (or a composition of them)")
    p.add_argument("--bases", required=True, help="comma-separated zoo names (assets manifest mol_models) or .pt paths")
    p.add_argument("--beta", type=float, default=32.0, help="reward exponent the base models are conditioned on")
    p.add_argument("--method", choices=list(SAMPLE_METHODS), default="base")
    p.add_argument("--n", type=int, required=True, help="number of VALID molecules to collect")
    p.add_argument("--out", required=True, help="output CSV: smiles,seh_reward,sa_reward,qed")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128, help="trajectories sampled together")
    add_compose_sample_args(p)  # --y --alpha --weights --u --classifier --scoring
    p.set_defaults(func=cmd_mol_sample)

    register_train_classifier(mol)  # mol train-classifier


__all__ = ["SAMPLE_COLUMNS", "SAMPLE_METHODS", "cmd_mol_sample", "cmd_mol_train", "register_mol_commands",
           "summarize_samples", "write_samples_csv"]
