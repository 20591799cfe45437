"""``python -m sculpt_core grid …`` and the grid zoo builders (``zoo build-grid``, ``zoo build-classifiers``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sculpt_core.core import algebra as A
from sculpt_core.core.cli import composition_from_args, int_arg, parse_list, progress_bar, seed_arg
from sculpt_core.core.io import save_array
from sculpt_core.core.limits import MAX_BATCH, MAX_STEPS, MAX_TRAJECTORIES
from sculpt_core.errors import SculptError

STEPS = int_arg(1, MAX_STEPS, "training steps")


def check_array_out(path: str, ndim: int) -> None:
    """Refuse, before any work, a CSV ``--out`` for an array a CSV cannot hold (more than two dimensions)."""
    if Path(path).suffix.lower() == ".csv" and ndim > 2:
        raise SculptError(f"--out {path}: a CSV holds a 1-D or 2-D array, and this grid has {ndim} dimensions; "
                          "write a .npy instead")


# ----- grid dist ---------------------------------------------------------------------------------
def cmd_grid_dist(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.exact import log_terminal
    from sculpt_core.core.metrics import l1_distance
    from sculpt_core.domains.grid.zoo import load_grid_model

    t0 = time.perf_counter()
    model = load_grid_model(args.base)
    check_array_out(args.out, model.env.ndim)
    tables = model.tables(args.beta)
    p = log_terminal(model.env, tables.log_pf).exp()
    seconds = time.perf_counter() - t0
    arr = p.reshape(model.env.shape).cpu().numpy().astype(np.float64)
    save_array(args.out, arr)
    target = model.target_log_p(args.beta)
    record = {
        "base": model.name,
        "shape": list(arr.shape),
        "sum": float(arr.sum()),
        "beta": model.beta_or_default(args.beta),
        "l1_to_target": None if target is None else l1_distance(arr, target.exp().reshape(arr.shape)),
        "max_prob": float(arr.max()),
        "seconds": round(seconds, 4),
        "out": args.out,
    }
    return record


# ----- grid train --------------------------------------------------------------------------------
def cmd_grid_train(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.env import GridEnv
    from sculpt_core.domains.grid.rewards import grid_log_reward, load_log_reward_file
    from sculpt_core.domains.grid.train import GridTrainConfig, check_train_inputs, train_grid_model

    if args.reward_file:
        log_r = load_log_reward_file(None, args.reward_file)
        name = Path(args.reward_file).stem
    else:
        env = GridEnv(args.height, 2)
        log_r = grid_log_reward(env, args.reward)
        name = args.reward
    cfg = GridTrainConfig(loss=args.loss, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                          eval_every=max(1, min(100, args.steps // 20)), target_l1=args.target_l1)
    check_train_inputs(log_r, args.temperature, cfg)  # before the progress bar opens
    update, close = progress_bar(cfg.steps, f"train {name}")
    try:
        model, info = train_grid_model(log_r, args.temperature, cfg, name, progress=update)
    finally:
        close()
    model.save(args.out)
    return {"reward": name, "temperature": args.temperature, "loss": args.loss, "steps": info["steps"],
            "final_loss": info["loss"], "l1": info["l1"], "seconds": round(info["seconds"], 2), "out": args.out}


# ----- grid compose ------------------------------------------------------------------------------
def cmd_grid_compose(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.compose import compose, prepare_bases
    from sculpt_core.domains.grid.classifier import load_classifier
    from sculpt_core.domains.grid.zoo import check_classifier_bases, find_grid_classifier, load_grid_model

    names = parse_list(args.bases, str, "--bases")
    t0 = time.perf_counter()
    models = [load_grid_model(n) for n in names]
    check_array_out(args.out, models[0].env.ndim)
    composition = composition_from_args(len(models), args.y, args.alpha, args.weights, args.result_beta)
    bases = prepare_bases(models, args.beta)
    classifier = None
    if args.method == "classifier":
        if args.classifier:
            classifier, clf_bases, clf_meta = load_classifier(args.classifier)
            check_classifier_bases(args.classifier, clf_bases, clf_meta, models)
        else:
            found = find_grid_classifier([m.name for m in models], models)
            if found is None:
                raise SculptError(f"no shipped classifier for bases {names}; train one with "
                                  "`python -m sculpt_core grid train-classifier` and pass --classifier")
            classifier = found[0]
    result = compose(bases, composition, args.method, classifier, args.u, args.samples, args.seed)
    seconds = time.perf_counter() - t0
    save_array(args.out, result.p.astype(np.float64))
    return {**result.figures(), "bases": [m.name for m in models], "u_source": args.u if args.method == "reaching" else None,
            "seconds": round(seconds, 4), "out": args.out}


def cmd_grid_train_classifier(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.compose import prepare_bases
    from sculpt_core.domains.grid.classifier import GridClassifierConfig, save_classifier
    from sculpt_core.domains.grid.train_classifier import ClassifierTrainConfig, guided_l1, train_grid_classifier
    from sculpt_core.domains.grid.zoo import load_grid_model
    from sculpt_core.domains.grid.zoo import paper_evaluation_compositions

    names = parse_list(args.bases, str, "--bases")
    models = [load_grid_model(n) for n in names]
    if len(models) < 2:
        raise SculptError("a classifier needs at least two base models in --bases")
    alpha_cond = len(models) == 2 and args.labels == 2
    cfg = ClassifierTrainConfig(steps=args.steps, n_labels=args.labels, alpha_cond=alpha_cond, seed=args.seed,
                                eval_every=max(1, args.steps // 20), objective=args.objective)
    env = models[0].env  # the classifier's shape is checked before the progress bar opens
    GridClassifierConfig(env.height, env.ndim, len(models), args.labels, alpha_cond, cfg.hidden,
                         mixture_head=args.objective == "chain")
    prepare_bases(models)  # the bases share one grid
    update, close = progress_bar(cfg.steps, "classifier")
    try:
        net, info = train_grid_classifier(models, cfg, progress=update)
    finally:
        close()
    bases = prepare_bases(models)
    l1s = {}
    if len(models) in (2, 3):  # the paper's compositions this classifier can guide (a 1-label one: mixtures only)
        comps = [c for c in paper_evaluation_compositions(len(models)) if _guides(net, len(models), c)]
        l1s = {c.describe(): round(guided_l1(bases, net, c), 5) for c in comps or [A.mixture(n_models=len(models))]}
    meta = {"bases": [m.name for m in models], "alpha_cond": alpha_cond, "n_labels": args.labels,
            "objective": args.objective, "steps": args.steps,
            "train_seconds": round(info["seconds"], 1), "guided_l1": l1s}
    save_classifier(args.out, net, [m.name for m in models], meta, [m.fingerprint() for m in models])
    return {**meta, "out": args.out}


def _guides(net, n_models: int, composition) -> bool:
    from sculpt_core.core.methods import check_classifier_compat

    try:
        check_classifier_compat(net.cfg, n_models, composition)
    except SculptError:
        return False
    return True


def cmd_grid_rewards(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.rewards import GRID_REWARDS

    return {"rewards": list(GRID_REWARDS)}


def cmd_zoo_build_grid(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.train import GridTrainConfig
    from sculpt_core.domains.grid.zoo import GRID_ZOO_SPECS, build_grid_zoo

    names = args.names.split(",") if args.names else None
    unknown = [n for n in names or [] if n not in GRID_ZOO_SPECS]
    if unknown:
        raise SculptError(f"unknown zoo model(s) {unknown}; known: {', '.join(GRID_ZOO_SPECS)}")
    cfg = GridTrainConfig(steps=args.steps, seed=args.seed, flow_hidden=args.flow_hidden, betas_per_step=args.betas_per_step)
    return build_grid_zoo(names, cfg, progress_factory=lambda name, total: progress_bar(total, f"zoo {name}"))


def cmd_zoo_build_classifiers(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.grid.zoo import GRID_CLASSIFIER_SPECS, build_grid_classifiers

    keys = args.keys.split(",") if args.keys else None
    unknown = [k for k in keys or [] if k not in GRID_CLASSIFIER_SPECS]
    if unknown:
        raise SculptError(f"unknown classifier(s) {unknown}; known: {', '.join(GRID_CLASSIFIER_SPECS)}")
    return build_grid_classifiers(keys, args.steps, progress_factory=lambda k, total: progress_bar(total, f"classifier {k}"))



def register(commands: argparse._SubParsersAction, zoo: argparse._SubParsersAction) -> None:
    """Add ``grid dist|train|compose|train-classifier|rewards|emd`` and ``zoo build-grid|build-classifiers``."""
    p = commands.add_parser("dist", help="write the exact terminal distribution of a zoo model or checkpoint")
    p.add_argument("--base", required=True, help="zoo model name or path to a .pt checkpoint")
    p.add_argument("--beta", type=float, default=None, help="reward exponent (β-conditioned models only)")
    p.add_argument("--out", required=True, help="output .npy (or .csv), indexed p[z0, z1]")
    p.set_defaults(func=cmd_grid_dist)

    p = commands.add_parser("train", help="train a base GFlowNet on a paper reward or a log-reward .npy")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reward", help="paper reward name (see `grid rewards`)")
    src.add_argument("--reward-file", help=".npy array of log-rewards, shape (H, H)")
    p.add_argument("--temperature", type=float, default=1.0, help="target ∝ R^(1/T)")
    p.add_argument("--loss", choices=["tb", "db"], default="tb")
    p.add_argument("--steps", type=STEPS, default=3000)
    p.add_argument("--batch-size", type=int_arg(1, MAX_BATCH, "batch sizes"), default=256)
    p.add_argument("--seed", type=seed_arg, default=100)
    p.add_argument("--height", type=int_arg(2, 512), default=32, help="grid side for paper rewards")
    p.add_argument("--target-l1", type=float, default=None, help="stop early once exact L1 ≤ this")
    p.add_argument("--out", required=True, help="output checkpoint .pt")
    p.set_defaults(func=cmd_grid_train)

    p = commands.add_parser("compose", help="compose base models and write the exact composed distribution")
    p.add_argument("--bases", required=True, help="comma-separated zoo names or .pt paths (2 or more)")
    p.add_argument("--y", default=None, help="observed labels y1..yn, e.g. 1,2 (harmonic mean) or 1,1 (contrast)")
    p.add_argument("--alpha", type=float, default=None, help="α of eq. 7 (two bases, two labels)")
    p.add_argument("--weights", default=None, help="linear scalarisation weights w1,w2,... (target ∝ Σ w_i R_i)")
    p.add_argument("--method", choices=["oracle", "classifier", "reaching", "ensemble"], required=True)
    p.add_argument("--u", choices=["exact", "flow", "trajectory"], default="exact", help="reaching probabilities source")
    p.add_argument("--classifier", default=None, help="classifier .pt (default: the shipped one for these bases)")
    p.add_argument("--beta", type=float, default=None, help="reward exponent of β-conditioned base models")
    p.add_argument("--result-beta", type=float, default=1.0, help="temperature on the composed result")
    p.add_argument("--samples", type=int_arg(1, MAX_TRAJECTORIES, "sampled trajectories"), default=20000,
                   help=f"samples for trajectory-product reaching (1..{MAX_TRAJECTORIES:,})")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--out", required=True, help="output .npy (or .csv), indexed p[z0, z1]")
    p.set_defaults(func=cmd_grid_compose)

    from sculpt_core.domains.grid.train_classifier import DEFAULT_OBJECTIVE, OBJECTIVES

    p = commands.add_parser("train-classifier", help="train a guidance classifier for base models")
    p.add_argument("--bases", required=True, help="comma-separated zoo names or .pt paths")
    p.add_argument("--objective", choices=OBJECTIVES, default=DEFAULT_OBJECTIVE,
                   help="chain: the mixture chain's label posterior, exact for guidance on a DAG; a1: the paper's "
                        "Algorithm A.1")
    p.add_argument("--labels", type=int_arg(1, 12), default=2,
                   help="number of labels n (α-conditioned when 2 bases, 2 labels; 1: mixtures and linear only)")
    p.add_argument("--steps", type=STEPS, default=1500)
    p.add_argument("--seed", type=seed_arg, default=100)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_grid_train_classifier)

    p = commands.add_parser("rewards", help="list the paper's grid rewards")
    p.set_defaults(func=cmd_grid_rewards)

    from sculpt_core.domains.grid.maps import cmd_grid_emd

    p = commands.add_parser("emd", help="pairwise earth mover's distances between exact grid distributions")
    p.add_argument("--dists", required=True, help="comma-separated .npy/.csv probability tables (grid dist/compose --out)")
    p.add_argument("--out", required=True, help="output .npy (or .csv): the (k, k) float64 distance matrix")
    p.add_argument("--solver", choices=["exact", "sinkhorn"], default="exact")
    p.add_argument("--reg", type=float, default=0.01, help="Sinkhorn ε relative to the mean ground cost")
    p.set_defaults(func=cmd_grid_emd)

    p = zoo.add_parser("build-grid", help="re-train the shipped grid base models into assets/")
    p.add_argument("--names", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--steps", type=STEPS, default=4000)
    p.add_argument("--seed", type=seed_arg, default=100)
    p.add_argument("--flow-hidden", type=int_arg(0, 4096), default=128, help="width of the separate state-flow MLP (0: flow head on the policy trunk)")
    p.add_argument("--betas-per-step", type=int_arg(1, 256), default=8, help="β values per training step (β-conditioned models)")
    p.set_defaults(func=cmd_zoo_build_grid)
    p = zoo.add_parser("build-classifiers", help="re-train the shipped grid classifiers (Algorithm A.1)")
    p.add_argument("--keys", default=None, help="comma-separated subset, e.g. circle1+circle2+circle3")
    p.add_argument("--steps", type=STEPS, default=1500)
    p.set_defaults(func=cmd_zoo_build_classifiers)
