"""Composition on molecules from the command line: ``mol sample --method classifier|reaching|ensemble`` and
``mol train-classifier``.

:mod:`sculpt_core.domains.molecules.cli` owns the ``mol`` commands; this module supplies the composed-sampling builders
(:data:`COMPOSE_METHODS`, merged into ``mol_cli.SAMPLE_METHODS``), the extra ``mol sample`` options
(:func:`add_compose_sample_args`) and the ``train-classifier`` sub-command (:func:`register_train_classifier`).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from sculpt_core.errors import SculptError


# ----- mol sample: composed methods ---------------------------------------------------------------------------
def _composition(models: list, args: argparse.Namespace):
    from sculpt_core.cli import composition_from_args

    return composition_from_args(len(models), getattr(args, "y", None), getattr(args, "alpha", None),
                                 getattr(args, "weights", None))


def _bases(models: list, args: argparse.Namespace):
    from sculpt_core.domains.molecules.compose import prepare_mol_bases

    return prepare_mol_bases(models, args.beta)


def load_classifier_for(models: list, beta: float, name_or_path: str | None):
    """The classifier named by ``--classifier`` (a path or a manifest name), else the shipped one for these
    bases; SculptError with the command that trains one when there is none, or when it does not fit."""
    from sculpt_core.domains.molecules.train_classifier import find_mol_classifier, load_mol_classifier, resolve_mol_classifier

    names = [m.name for m in models]
    if name_or_path:
        path = resolve_mol_classifier(name_or_path)
    else:
        path = find_mol_classifier(names)
        if path is None:
            raise SculptError(f"no classifier for bases {','.join(names)}: train one with `python -m sculpt_core mol "
                              f"train-classifier --bases {','.join(names)} --beta {beta:g} --out clf.pt` and pass "
                              "--classifier clf.pt")
    net, clf_bases, meta = load_mol_classifier(path)
    if len(clf_bases) != len(models):
        raise SculptError(f"{path} was trained for {len(clf_bases)} base models ({','.join(clf_bases)}), "
                          f"{len(models)} given")
    stale = [f"{m.name} (classifier trained on {clf_name})" for m, clf_name, fp in
             zip(models, clf_bases, meta.get("base_fingerprints") or [None] * len(models))
             if fp is not None and fp != m.fingerprint()]
    if stale:
        raise SculptError(f"{path} was trained on other versions of these base models: {', '.join(stale)}; "
                          f"retrain it with `python -m sculpt_core mol train-classifier --bases {','.join(names)}`")
    trained_beta = meta.get("beta")
    if trained_beta is not None and abs(float(trained_beta) - float(beta)) > 1e-9:
        raise SculptError(f"{path} was trained on the bases at β = {float(trained_beta):g}; sample with --beta "
                          f"{float(trained_beta):g} or train a classifier for β = {beta:g}")
    return net, clf_bases, meta


def _classifier_policy(models: list, args: argparse.Namespace):
    from sculpt_core.domains.molecules.compose import composed_policy

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


#: --method name → builder(models, args) of a composed molecule policy.
COMPOSE_METHODS = {"classifier": _classifier_policy, "reaching": _reaching_policy, "ensemble": _ensemble_policy}


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
    p.add_argument("--top-k", type=int, default=64, help="moves per state re-scored exactly with --scoring topk")


# ----- mol train-classifier --------------------------------------------------------------------------------------
def cmd_mol_train_classifier(args: argparse.Namespace) -> dict[str, Any]:
    from sculpt_core.cli import _parse_list, _progress_bar
    from sculpt_core.domains.molecules.train_classifier import MolClassifierTrainConfig, save_mol_classifier, train_mol_classifier
    from sculpt_core.domains.molecules.zoo import load_mol_model

    names = _parse_list(args.bases, str, "--bases")
    if len(names) < 2:
        raise SculptError("a classifier needs at least two base models in --bases")
    if args.steps < 1:
        raise SculptError(f"--steps must be ≥ 1, got {args.steps}")
    if args.alpha_cond and len(names) != 2:
        raise SculptError("--alpha-cond is defined for exactly two base models (eq. 7)")
    if not math.isfinite(args.beta):
        raise SculptError(f"--beta must be a finite number, got {args.beta}")
    labels = args.labels if args.labels is not None else (2 if len(names) == 2 else len(names))
    models = [load_mol_model(n) for n in names]
    cfg = MolClassifierTrainConfig(steps=args.steps, trajectories_per_model=args.batch_size, n_labels=labels,
                                   alpha_cond=args.alpha_cond, hidden=args.hidden, n_layers=args.layers,
                                   action_head=not args.no_action_head, distill_actions=args.distill_actions,
                                   seed=args.seed, lr=args.lr,
                                   warmup=max(1, min(args.warmup, args.steps)),
                                   eval_every=max(1, args.steps // 20), time_limit_s=args.time_limit,
                                   device=args.device)
    init, init_meta = None, {}
    if args.init:
        from sculpt_core.domains.molecules.train_classifier import load_mol_classifier, resolve_mol_classifier

        init, init_bases, init_meta = load_mol_classifier(resolve_mol_classifier(args.init))
        if init_bases != [m.name for m in models] or float(init_meta.get("beta", args.beta)) != float(args.beta):
            raise SculptError(f"--init {args.init} was trained for bases {','.join(init_bases)} at β = "
                              f"{init_meta.get('beta')}, not {','.join(m.name for m in models)} at β = {args.beta:g}")
    update, close = _progress_bar(cfg.steps, "mol classifier")
    try:
        net, info = train_mol_classifier(models, args.beta, cfg, progress=update, init=init)
    finally:
        close()
    base_names = [m.name for m in models]
    total_steps = info["steps"] + int(init_meta.get("steps", 0))  # a continued run counts the earlier steps too
    total_seconds = round(info["seconds"] + float(init_meta.get("seconds", 0.0)), 1)
    meta = {"bases": base_names, "base_fingerprints": [m.fingerprint() for m in models], "beta": float(args.beta),
            "alpha_cond": bool(args.alpha_cond), "n_labels": labels,
            "action_head": not args.no_action_head, "distill_actions": args.distill_actions,
            "steps": total_steps, "seconds": total_seconds,
            "continued_from": ({"steps": init_meta.get("steps"), "seconds": init_meta.get("seconds")}
                               if init is not None else None),
            "sample_seconds": round(info["sample_seconds"], 1), "device": info["device"],
            "torch_threads": info["torch_threads"], "trajectories_sampled": info["trajectories_sampled"],
            "invalid_dropped": info["invalid_dropped"],
            "final": {k: round(float(info[k]), 5) for k in ("loss", "loss_terminal", "loss_nonterminal", "loss_action")
                      if k in info},
            "history": info["history"]}
    save_mol_classifier(args.out, net, base_names, meta)
    return {k: v for k, v in meta.items() if k != "history"} | {"out": args.out}


def register_train_classifier(mol: argparse._SubParsersAction) -> None:
    """Add ``train-classifier`` to the ``mol`` sub-command group."""
    p = mol.add_parser("train-classifier", help="train a guidance classifier for 2-3 molecule base models (Alg. A.1)")
    p.add_argument("--bases", required=True, help="comma-separated zoo names or .pt paths (label i = i-th base)")
    p.add_argument("--beta", type=float, default=32.0, help="reward exponent the bases are sampled at")
    p.add_argument("--alpha-cond", action="store_true", help="α-conditioned classifier (two bases)")
    p.add_argument("--labels", type=int, default=None, help="number of labels y1..yn (default: 2, or 3 for 3 bases)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True, help="output checkpoint .pt")
    p.add_argument("--batch-size", type=int, default=8, help="trajectories per base model and step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=800, help="steps of the non-terminal loss warm-up")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--no-action-head", action="store_true", help="no fast action head (exact successor scoring only)")
    p.add_argument("--distill-actions", type=int, default=2,
                   help="moves per state on which the action head is distilled from the state head (0: off)")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--device", default=None, help="torch device (default: CUDA if available)")
    p.add_argument("--init", default=None, help="continue from this classifier (path or shipped name; same bases, "
                                                "β and architecture); steps and seconds add up")
    p.set_defaults(func=cmd_mol_train_classifier)


__all__ = ["COMPOSE_METHODS", "add_compose_sample_args", "cmd_mol_train_classifier", "load_classifier_for",
           "register_train_classifier"]
