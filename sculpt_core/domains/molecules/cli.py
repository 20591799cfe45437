"""``python -m sculpt_core mol …``: score, train, sample (base models and compositions), train-classifier.

Sampling methods live in :data:`SAMPLE_METHODS` (name → builder of a molecule policy from the loaded base
models and the parsed arguments).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

from sculpt_core.core.cli import (composition_from_args, device_arg, int_arg, parse_list, positive_float, progress_bar,
                                  seed_arg, unit_float)
from sculpt_core.core.limits import MAX_BATCH, MAX_MOLECULES, MAX_STEPS
from sculpt_core.domains.molecules.rewards import SAMPLE_COLUMNS
from sculpt_core.errors import SculptError

STEPS = int_arg(1, MAX_STEPS, "training steps")
#: ``mol score`` inputs longer than this are scored chunk by chunk behind a progress bar.
SCORE_CHUNK = 2000


# ----- mol score -----------------------------------------------------------------------------------
def cmd_mol_score(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.molecules.rewards import read_smiles_file, score_smiles, write_scores_csv
    from sculpt_core.domains.molecules.seh_proxy import seh_unavailable_reason

    smiles = read_smiles_file(args.infile)
    t0 = time.perf_counter()
    reason = seh_unavailable_reason()
    if len(smiles) <= SCORE_CHUNK:
        records = score_smiles(smiles, seh=reason is None, batch_size=args.batch_size)
    else:  # a long list: scored in chunks behind a progress bar (Ctrl-C stops it, nothing is written)
        records = []
        update, close = progress_bar(len(smiles), "score")
        try:
            for start in range(0, len(smiles), SCORE_CHUNK):
                records += score_smiles(smiles[start:start + SCORE_CHUNK], seh=reason is None, batch_size=args.batch_size)
                update(len(records), {})
        finally:
            close()
    seconds = time.perf_counter() - t0
    write_scores_csv(args.out, records)
    n_valid = sum(r["valid"] for r in records)
    record = {"n": len(records), "valid": n_valid, "invalid": len(records) - n_valid,
              "seh": "ok" if reason is None else f"unavailable: {reason}"}
    if reason is None:
        record["seh_unscorable"] = sum(r["valid"] and r["proxy_raw"] != r["proxy_raw"] for r in records)
    return {**record, "seconds": round(seconds, 4), "molecules_per_s": round(len(records) / max(seconds, 1e-9), 1),
            "out": args.out}


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
    update, close = progress_bar(cfg.steps, f"train {args.reward}")
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


def cmd_mol_fit_flow(args: argparse.Namespace) -> dict:
    """Refit a base model's state-flow head to its reaching probabilities (policy frozen, classifiers stay tied)."""
    from sculpt_core.domains.molecules.flow_fit import FlowFitConfig, default_fit_betas, fit_flow_head
    from sculpt_core.domains.molecules.model import MolBaseModel
    from sculpt_core.domains.molecules.zoo import load_mol_model, resolve_mol_model_path

    model = MolBaseModel.load(resolve_mol_model_path(args.model))  # a private copy: its head is modified
    try:
        betas = tuple(float(b) for b in args.betas.split(",")) if args.betas else default_fit_betas(model)
    except ValueError:
        raise SculptError(f"--betas must be comma-separated numbers, got {args.betas!r}") from None
    cfg = FlowFitConfig(betas=betas, n_traj=args.n_traj, k=args.k, max_states=args.max_states, steps=args.steps,
                        seed=args.seed)
    model.name = args.name or model.name
    names = [b for b in (args.behaviours or "").split(",") if b.strip()]
    behaviours = [load_mol_model(b.strip()) for b in names]
    figures = fit_flow_head(model, behaviours, cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    model.meta["flow_fit"] = figures
    model.meta["has_flow"] = True
    model.save(args.out)
    return {**figures, "model": args.model, "out": args.out}


# ----- mol sample: composed methods ---------------------------------------------------------------------------
def _composition(models: list, args: argparse.Namespace):
    return composition_from_args(len(models), getattr(args, "y", None), getattr(args, "alpha", None),
                                 getattr(args, "weights", None))


def _bases(models: list, args: argparse.Namespace):
    from sculpt_core.domains.molecules.compose import prepare_mol_bases

    return prepare_mol_bases(models, args.beta)


def _classifier_policy(models: list, args: argparse.Namespace):
    from sculpt_core.domains.molecules.compose import composed_policy
    from sculpt_core.domains.molecules.zoo import load_classifier_for

    bases = _bases(models, args)
    net, _, _ = load_classifier_for(models, args.beta, getattr(args, "classifier", None))
    top_k = getattr(args, "top_k", 64)
    if top_k < 1:
        raise SculptError(f"--top-k must be ≥ 1, got {top_k}")
    return composed_policy(bases, _composition(models, args), "classifier", classifier=net,
                           scoring=getattr(args, "scoring", "fast"), top_k=top_k)


def _reaching_policy(models: list, args: argparse.Namespace):
    from sculpt_core.domains.molecules.compose import DEFAULT_U_SOURCE, composed_policy

    return composed_policy(_bases(models, args), _composition(models, args), "reaching",
                           u_source=getattr(args, "u", DEFAULT_U_SOURCE))


def _ensemble_policy(models: list, args: argparse.Namespace):
    from sculpt_core.domains.molecules.compose import composed_policy

    return composed_policy(_bases(models, args), _composition(models, args), "ensemble")





def add_compose_sample_args(p: argparse.ArgumentParser) -> None:
    """The composition options of ``mol sample`` (ignored by ``--method base``)."""
    p.add_argument("--y", default=None, help="observed labels, e.g. 1,2 (harmonic mean), 1,1 (contrast), 1,2,3")
    p.add_argument("--alpha", type=float, default=None, help="α of the parameterised operators (two bases, two labels)")
    p.add_argument("--weights", default=None, help="linear scalarisation weights w1,w2[,…] (target ∝ Σ w_i R_i)")
    p.add_argument("--u", choices=["trajectory", "flow"], default="trajectory",
                   help="reaching probabilities: the p_F/p_B product along the trajectory (DB F, default) or the "
                        "learned state flow (Model F)")
    p.add_argument("--classifier", default=None, help="classifier checkpoint path or shipped name (method classifier)")
    p.add_argument("--scoring", choices=["fast", "exact", "topk"], default="fast",
                   help="successor values from the classifier's action head (fast), by scoring every successor graph "
                        "(exact), or the head then the --top-k most probable moves scored exactly (topk)")
    p.add_argument("--top-k", type=int_arg(1, 100_000), default=64, help="moves per state re-scored exactly with --scoring topk")


# ----- mol sample ------------------------------------------------------------------------------------------
PolicyBuilder = Callable[[list, argparse.Namespace], Any]


def _base_policy(models: list, args: argparse.Namespace):
    if len(models) != 1:
        raise SculptError(f"--method base samples ONE base model, got {len(models)} in --bases")
    return models[0].policy(args.beta)


#: --method name → builder(models, args) of a molecule policy.
SAMPLE_METHODS: dict[str, PolicyBuilder] = {"base": _base_policy, "classifier": _classifier_policy,
                                            "reaching": _reaching_policy, "ensemble": _ensemble_policy}


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
    from sculpt_core.domains.molecules.sampling import sample_molecules
    from sculpt_core.domains.molecules.rewards import score_smiles
    from sculpt_core.domains.molecules.seh_proxy import seh_unavailable_reason
    from sculpt_core.domains.molecules.zoo import load_mol_model

    if args.n < 1:
        raise SculptError(f"--n must be ≥ 1, got {args.n}")
    if args.batch_size < 1:
        raise SculptError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    names = parse_list(args.bases, str, "--bases")
    models = [load_mol_model(n) for n in names]
    libs = {tuple(m.env.library.smiles) for m in models}
    if len(libs) > 1:
        raise SculptError("the base models were trained on different fragment libraries")
    policy = SAMPLE_METHODS[args.method](models, args)
    if args.method == "reaching" and getattr(args, "u", None) == "flow":
        from sculpt_core.domains.molecules.compose import flow_fit_note

        if (note := flow_fit_note(models, args.beta)) is not None:
            print(f"note: {note}", file=sys.stderr)
    update, close = progress_bar(args.n, f"sample {args.method}")
    try:
        samples = sample_molecules(policy, args.n, seed=args.seed, batch_size=args.batch_size, env=models[0].env,
                                   progress=lambda valid, n: update(valid, {}))
    finally:
        close()
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


# ----- mol train-classifier --------------------------------------------------------------------------------------
def cmd_mol_train_classifier(args: argparse.Namespace) -> dict[str, Any]:
    from sculpt_core.domains.molecules.classifier import save_mol_classifier
    from sculpt_core.domains.molecules.train_classifier import (DEFAULT_BACKUP, DEFAULT_BRANCH_FRACTION, TREE_EMA,
                                                                 MolClassifierTrainConfig, train_mol_classifier)
    from sculpt_core.domains.molecules.zoo import load_mol_model

    names = parse_list(args.bases, str, "--bases")
    if len(names) < 2:
        raise SculptError("a classifier needs at least two base models in --bases")
    if args.steps < 1:
        raise SculptError(f"--steps must be ≥ 1, got {args.steps}")
    if args.alpha_cond and len(names) != 2:
        raise SculptError("--alpha-cond is defined for exactly two base models (eq. 7)")
    if not math.isfinite(args.beta):
        raise SculptError(f"--beta must be a finite number, got {args.beta}")
    labels = args.labels if args.labels is not None else (2 if len(names) == 2 else len(names))
    if args.backup is None:
        args.backup = DEFAULT_BACKUP if args.objective == "chain" else "mc"
    if args.tree_lambda is not None and args.backup != "tree":
        raise SculptError("--tree-lambda applies to --backup tree")
    args.tree_lambda = 1.0 if args.tree_lambda is None else args.tree_lambda
    if args.ema is None:  # the tree backup bootstraps from the target network: a faster average
        args.ema = TREE_EMA if args.backup == "tree" else 0.995
    if args.branch_fraction is None:  # with the tree backup every state of a guided branch is training data
        chain_default = 1.0 if args.backup == "tree" else DEFAULT_BRANCH_FRACTION
        args.branch_fraction = chain_default if args.objective == "chain" else 0.0
    if not (math.isfinite(args.branch_fraction) and 0.0 <= args.branch_fraction <= 1.0):
        raise SculptError(f"--branch-fraction must be in [0, 1], got {args.branch_fraction}")
    if args.branch_fraction > 0 and args.objective != "chain":
        raise SculptError("--branch-fraction is part of the chain objective, not of a1")
    if args.backup != "mc" and args.objective != "chain":
        raise SculptError("--backup tree is part of the chain objective, not of a1")
    if args.ema >= 1.0:
        raise SculptError(f"--ema must be below 1, got {args.ema:g}")
    models = [load_mol_model(n) for n in names]
    if args.terminal_target == "auto":  # the bases' flow posterior where it exists (README, "Classifier objectives")
        from sculpt_core.domains.molecules.compose import models_without_flow

        args.terminal_target = "flow" if (args.objective == "chain" and not models_without_flow(models)) else "head"
    cfg = MolClassifierTrainConfig(steps=args.steps, trajectories_per_model=args.batch_size, n_labels=labels,
                                   alpha_cond=args.alpha_cond, hidden=args.hidden, n_layers=args.layers,
                                   action_head=not args.no_action_head, distill_actions=args.distill_actions,
                                   objective=args.objective, branch_fraction=args.branch_fraction,
                                   terminal_target=args.terminal_target, flow_calibration=args.flow_calibration,
                                   backup=args.backup, tree_lambda=args.tree_lambda, ema=args.ema,
                                   reuse=args.reuse,
                                   seed=args.seed, lr=args.lr,
                                   warmup=max(1, min(args.warmup, args.steps)),
                                   eval_every=max(1, args.steps // 20), time_limit_s=args.time_limit,
                                   device=args.device)
    if args.init and args.warm_start:
        raise SculptError("--init continues a classifier on the same bases, --warm-start starts from another "
                          "classifier's weights: pass one of them")
    init, init_meta, warm_meta = None, {}, None
    if args.init or args.warm_start:
        from sculpt_core.domains.molecules.classifier import load_mol_classifier
        from sculpt_core.domains.molecules.zoo import resolve_mol_classifier

        source, flag = (args.init, "--init") if args.init else (args.warm_start, "--warm-start")
        init, init_bases, init_meta = load_mol_classifier(resolve_mol_classifier(source))
        same_names = (init_bases == [m.name for m in models]
                      and float(init_meta.get("beta", args.beta)) == float(args.beta))
        if not same_names:
            raise SculptError(f"{flag} {source} was trained for bases {','.join(init_bases)} at β = "
                              f"{init_meta.get('beta')}, not {','.join(m.name for m in models)} at β = {args.beta:g}")
        recorded = init_meta.get("base_fingerprints", [m.policy_fingerprint() for m in models])
        if args.init and not all(m.matches_fingerprint(fp) for m, fp in zip(models, recorded)):
            raise SculptError(f"--init {source} was trained on other weights of {','.join(init_bases)}; to start "
                              f"from its weights on these bases use --warm-start {source}")
        if args.warm_start:  # only an initialisation: the steps and seconds below are this run's, on these bases
            warm_meta = {"from": str(source), "base_fingerprints": init_meta.get("base_fingerprints"),
                         "steps": init_meta.get("steps"), "seconds": init_meta.get("seconds"),
                         "objective": init_meta.get("objective", "a1")}
            init_meta = {}
    from sculpt_core.domains.molecules.classifier import MolClassifierConfig
    from sculpt_core.domains.molecules.compose import prepare_mol_bases

    prepare_mol_bases(models, args.beta)  # checked before the progress bar opens: one library, β in range
    env = models[0].env
    MolClassifierConfig(env.n_frags, env.max_frags, len(models), labels, args.alpha_cond, args.hidden, args.layers,
                        not args.no_action_head, mixture_head=args.objective == "chain")
    update, close = progress_bar(cfg.steps, "mol classifier")
    try:
        net, info = train_mol_classifier(models, args.beta, cfg, progress=update, init=init)
    finally:
        close()
    base_names = [m.name for m in models]
    total_steps = info["steps"] + int(init_meta.get("steps", 0))  # a continued run counts the earlier steps too
    total_seconds = round(info["seconds"] + float(init_meta.get("seconds", 0.0)), 1)
    meta = {"bases": base_names, "base_fingerprints": [m.policy_fingerprint() for m in models], "beta": float(args.beta),
            "alpha_cond": bool(args.alpha_cond), "n_labels": labels,
            "action_head": not args.no_action_head, "distill_actions": args.distill_actions,
            "objective": args.objective, "branch_fraction": args.branch_fraction,
            "terminal_target": args.terminal_target, "flow_offsets": info.get("flow_offsets"), "lr": args.lr,
            "backup": args.backup, "tree_lambda": info.get("tree_lambda"), "ema": args.ema,
            "steps": total_steps, "seconds": total_seconds,
            "continued_from": ({"steps": init_meta.get("steps"), "seconds": init_meta.get("seconds"),
                                "objective": init_meta.get("objective", "a1")} if args.init else None),
            "warm_start": warm_meta if warm_meta is not None else init_meta.get("warm_start"),  # kept when continued
            "sample_seconds": round(info["sample_seconds"], 1), "device": info["device"],
            "torch_threads": info["torch_threads"], "trajectories_sampled": info["trajectories_sampled"],
            "invalid_dropped": info["invalid_dropped"],
            "final": {k: round(float(info[k]), 5) for k in ("loss", "loss_terminal", "loss_nonterminal", "loss_action",
                                                             "loss_mixture") if k in info},
            "history": info["history"]}
    save_mol_classifier(args.out, net, base_names, meta)
    return {k: v for k, v in meta.items() if k != "history"} | {"out": args.out}


# ----- registration ---------------------------------------------------------------------------------------
def register(commands: argparse._SubParsersAction, zoo: argparse._SubParsersAction) -> None:
    """Add ``mol score|train|fit-flow|sample|train-classifier|emd`` and ``zoo build-mol-map`` (the paper's Fig. 4 map)."""
    p = commands.add_parser("score", help="score SMILES with the sEH proxy, SA and QED rewards")
    p.add_argument("--in", dest="infile", required=True, help=".smi (one SMILES per line) or .csv with a 'smiles' column")
    p.add_argument("--out", required=True, help="output CSV: smiles,valid,proxy_raw,seh_reward,qed,sa_score,sa_reward")
    p.add_argument("--batch-size", type=int_arg(1, MAX_BATCH, "batch sizes"), default=256,
                   help="molecules per sEH proxy forward pass")
    p.set_defaults(func=cmd_mol_score)

    p = commands.add_parser("train", help="train a β-conditioned base GFlowNet on sEH, SA or QED")
    p.add_argument("--reward", choices=["seh", "sa", "qed"], required=True)
    p.add_argument("--steps", type=STEPS, required=True)
    p.add_argument("--out", required=True, help="output checkpoint .pt")
    p.add_argument("--beta-range", default="0,96", help="training range of the reward exponent β, 'low,high'")
    p.add_argument("--seed", type=seed_arg, default=100)
    p.add_argument("--batch-size", type=int_arg(1, MAX_BATCH, "batch sizes"), default=64, help="trajectories per step")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--lr-log-z", type=positive_float, default=3e-2)
    p.add_argument("--hidden", type=int_arg(1, 4096), default=64)
    p.add_argument("--layers", type=int_arg(1, 64), default=4)
    p.add_argument("--eval-every", type=STEPS, default=100, help="steps between on-policy evaluations at β=32")
    p.add_argument("--time-limit", type=positive_float, default=None, help="stop after this many seconds")
    p.add_argument("--save-every", type=int_arg(0, MAX_STEPS), default=250,
                   help="write --out every this many steps (0: only at the end)")
    p.add_argument("--resume", default=None, help="continue training this checkpoint (the lr decay continues; Adam restarts)")
    p.add_argument("--device", type=device_arg, default=None, help="torch device (default: CUDA if available)")
    p.add_argument("--name", default=None, help="model name stored in the checkpoint (default: the reward)")
    p.set_defaults(func=cmd_mol_train)

    p = commands.add_parser("fit-flow", help="refit a base model's state-flow head to its reaching probabilities "
                                             "(flow-u reaching; the policy and its classifiers are unchanged)")
    p.add_argument("--model", required=True, help="zoo name or .pt path of the model whose flow head is refitted")
    p.add_argument("--behaviours", default="", help="other models (comma-separated) whose roll-outs, alone and in "
                                                    "the ensemble with --model, widen the pool of fitted states")
    p.add_argument("--betas", default=None, help="comma-separated β values to fit at (default: 8,16,24,32,48,64,96 "
                                                 "inside the model's trained range; each β costs about max-states × k "
                                                 "× 6 ms on one core)")
    p.add_argument("--out", required=True, help="output checkpoint .pt (written atomically)")
    p.add_argument("--n-traj", type=int_arg(1, MAX_MOLECULES), default=256, help="roll-outs per behaviour and β")
    p.add_argument("--k", type=int_arg(1, 4096), default=6, help="backward paths per state for its log u estimate")
    p.add_argument("--max-states", type=int_arg(1, 10_000_000), default=6000,
                   help="fit at most this many state classes (a random subset; ~6 ms per state and path)")
    p.add_argument("--steps", type=STEPS, default=4000, help="Adam steps of the head")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--name", default=None, help="model name stored in the checkpoint (default: unchanged)")
    p.set_defaults(func=cmd_mol_fit_flow)

    p = commands.add_parser("sample", help="sample molecules from base models (or a composition of them)")
    p.add_argument("--bases", required=True, help="comma-separated zoo names (assets manifest mol_models) or .pt paths")
    p.add_argument("--beta", type=float, default=32.0, help="reward exponent the base models are conditioned on")
    p.add_argument("--method", choices=list(SAMPLE_METHODS), default="base")
    p.add_argument("--n", type=int_arg(1, MAX_MOLECULES, "molecules per sample"), required=True,
                   help=f"number of VALID molecules to collect (1..{MAX_MOLECULES:,})")
    p.add_argument("--out", required=True, help="output CSV: smiles,seh_reward,sa_reward,qed")
    p.add_argument("--seed", type=seed_arg, default=100)
    p.add_argument("--batch-size", type=int_arg(1, MAX_BATCH, "batch sizes"), default=128,
                   help="trajectories sampled together")
    add_compose_sample_args(p)  # --y --alpha --weights --u --classifier --scoring
    p.set_defaults(func=cmd_mol_sample)

    p = commands.add_parser("train-classifier", help="train a guidance classifier for 2-3 molecule base models")
    p.add_argument("--bases", required=True, help="comma-separated zoo names or .pt paths (label i = i-th base)")
    p.add_argument("--beta", type=float, default=32.0, help="reward exponent the bases are sampled at")
    p.add_argument("--alpha-cond", action="store_true", help="α-conditioned classifier (two bases)")
    p.add_argument("--labels", type=int_arg(1, 12), default=None, help="number of labels y1..yn (default: 2, or 3 for 3 bases)")
    p.add_argument("--steps", type=STEPS, required=True)
    p.add_argument("--out", required=True, help="output checkpoint .pt")
    p.add_argument("--batch-size", type=int_arg(1, MAX_BATCH, "batch sizes"), default=8,
                   help="trajectories per base model and step")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--warmup", type=int_arg(0, MAX_STEPS), default=800, help="steps of the non-terminal loss warm-up")
    p.add_argument("--hidden", type=int_arg(1, 4096), default=64)
    p.add_argument("--layers", type=int_arg(1, 64), default=3)
    p.add_argument("--no-action-head", action="store_true", help="no fast action head (exact successor scoring only)")
    p.add_argument("--distill-actions", type=int_arg(0, 10_000), default=2,
                   help="moves per state on which the action head is distilled from the state head (0: off)")
    from sculpt_core.domains.molecules.train_classifier import (BACKUPS, DEFAULT_BRANCH_FRACTION, DEFAULT_OBJECTIVE,
                                                                 OBJECTIVES, TERMINAL_TARGETS)

    p.add_argument("--objective", choices=OBJECTIVES, default=DEFAULT_OBJECTIVE,
                   help="chain: the label posterior of the mixture chain, exact for guidance on a DAG (default); "
                        "a1: the paper's Algorithm A.1")
    p.add_argument("--branch-fraction", type=float, default=None,
                   help="chain objective: share of its trajectories that start guided by the target network (a "
                        "random label tuple) and switch to the mixture chain at a random depth (default: 1 with "
                        f"--backup tree, {DEFAULT_BRANCH_FRACTION:g} with mc, 0 for a1)")
    p.add_argument("--terminal-target", choices=("auto",) + TERMINAL_TARGETS, default="auto",
                   help="chain objective: leaf targets from the bases' flow posterior p_i(x) / Σ_j p_j(x), defined "
                        "for any molecule (needs flow heads), or from the classifier's own terminal head; auto "
                        "(default): flow for chain when every base has a flow head, else head")
    p.add_argument("--flow-calibration", type=int_arg(0, 100_000), default=128,
                   help="--terminal-target flow: molecules of the mixture chain (and branches) on which each base's "
                        "flow is aligned with backward importance sampling by a per-model offset (0: off)")
    p.add_argument("--backup", choices=BACKUPS, default=None,
                   help="chain objective: non-terminal targets from the tree backup through the mixture chain over "
                        "every move (tree, the default; guided branches train from their first state) or from the "
                        "end of each stored trajectory (mc)")
    p.add_argument("--tree-lambda", type=unit_float, default=None,
                   help="--backup tree: weight of the observed continuation against the target network's value "
                        "of the move taken (default 1; 0: one-step backup)")
    p.add_argument("--ema", type=unit_float, default=None,
                   help="target-network average per step (default: 0.9 with --backup tree, which bootstraps from "
                        "it, else 0.995)")
    p.add_argument("--reuse", type=int_arg(1, 64), default=1,
                   help="use each sampled trajectory this many times (fresh α each time; saves sampling time)")
    p.add_argument("--seed", type=seed_arg, default=100)
    p.add_argument("--time-limit", type=positive_float, default=None, help="stop after this many seconds")
    p.add_argument("--device", type=device_arg, default=None, help="torch device (default: CUDA if available)")
    p.add_argument("--init", default=None, help="continue from this classifier (path or shipped name; same bases, "
                                                "β and architecture); steps and seconds add up")
    p.add_argument("--warm-start", default=None,
                   help="start from this classifier's weights though it was trained on other weights of the same "
                        "bases (a retrained base): recorded as 'warm_start', steps and seconds count this run only")
    p.set_defaults(func=cmd_mol_train_classifier)

    from sculpt_core.domains.molecules.maps import cmd_mol_emd, cmd_zoo_build_mol_map

    p = commands.add_parser("emd", help="pairwise earth mover's distances between molecule sample sets")
    p.add_argument("--in", dest="infiles", required=True, help="comma-separated .csv (smiles column) or .smi files")
    p.add_argument("--out", required=True, help="output .npy (or .csv): the (k, k) float64 distance matrix")
    p.add_argument("--solver", choices=["exact", "sinkhorn"], default="exact")
    p.add_argument("--reg", type=float, default=0.01, help="Sinkhorn ε relative to the mean ground cost")
    p.set_defaults(func=cmd_mol_emd)

    p = zoo.add_parser("build-mol-map", help="sample the paper's Fig. 4 distributions and store their EMD matrix")
    p.add_argument("--n", type=int, default=2000, help="valid molecules per distribution (the paper: ~5000)")
    p.add_argument("--seed", type=int, default=0, help="distribution i is sampled with seed + i")
    p.add_argument("--beta", type=float, default=32.0)
    p.add_argument("--scoring", choices=["fast", "exact", "topk"], default="fast")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--work-dir", default=None, help="keep each set's SMILES here (an interrupted build resumes)")
    p.add_argument("--embeddings-only", action="store_true",
                   help="only recompute the stored t-SNE/MDS coordinates of the existing map")
    p.set_defaults(func=cmd_zoo_build_mol_map)
