"""``python -m sculpt_core diffusion density|sample|specs|train|train-classifier``: exact composed targets and composed samplers
of 2-D Gaussian-mixture diffusion models (bases: zoo models, built-in spec names, checkpoints or JSON spec files;
see ``zoo.resolve_base``), learned score models trained on a spec by denoising score matching, and
``zoo build-diffusion``."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from sculpt_core.core import algebra as A
from sculpt_core.core.cli import composition_from_args, parse_list, progress_bar, seed_arg
from sculpt_core.core.io import save_array
from sculpt_core.core.methods import check_models
from sculpt_core.errors import SculptError


def _base_names(args: argparse.Namespace) -> list[str]:
    return [n.strip() for n in parse_list(args.bases, str, "--bases")]


def _resolve_bases(args: argparse.Namespace) -> list:
    """``--bases`` → one ``ResolvedBase`` each (precedence: ``zoo.resolve_base``)."""
    from sculpt_core.domains.diffusion.zoo import resolve_base

    return [resolve_base(n) for n in _base_names(args)]


def _classifier_for(args: argparse.Namespace, bases: list):
    """The guidance classifier of the ``classifier`` method: ``--classifier`` or the zoo's for these bases,
    checked against the bases' fingerprints (a classifier trained for other or retrained bases is refused)."""
    from sculpt_core.domains.diffusion.zoo import base_fingerprints, find_diffusion_classifier, load_diffusion_classifier

    source = args.classifier or find_diffusion_classifier(_base_names(args))
    if source is None:
        raise SculptError(f"no shipped classifier for bases {args.bases}; train one with `python -m sculpt_core "
                          "diffusion train-classifier --bases ... --out clf.pt` and pass --classifier clf.pt")
    clf = load_diffusion_classifier(source)
    clf.check_bases(base_fingerprints(bases))
    return clf, str(source)


def _bases_and_composition(args: argparse.Namespace, bases: list | None = None):
    bases = _resolve_bases(args) if bases is None else bases
    specs = [b.spec for b in bases]
    comp = composition_from_args(len(specs), args.y, args.alpha, args.weights)
    check_models(len(specs), comp)  # e.g. two mixture weights for one base: refused before any work
    if comp.kind == "linear":  # specs are normalised (Z_i = 1): linear scalarisation is the mixture
        comp = A.mixture(list(comp.weights))
    return specs, comp


def _check_extent(extent: float, bins: int) -> None:
    if not (math.isfinite(extent) and extent > 0):
        raise SculptError(f"--extent must be a positive number, got {extent!r}")
    from sculpt_core.domains.diffusion.exact import MAX_BINS

    if not 1 <= bins <= MAX_BINS:
        raise SculptError(f"--bins must be in 1..{MAX_BINS}, got {bins}")


def _describe(specs, comp) -> dict:
    return {"bases": [s.name for s in specs], "composition": comp.describe(), "formula": comp.formula()}


def cmd_density(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.exact import ExactComposition

    t0 = time.perf_counter()
    _check_extent(args.extent, args.bins)
    specs, comp = _bases_and_composition(args)
    q, info = ExactComposition(specs, comp, default_device()).bin_masses(args.extent, args.bins)
    seconds = time.perf_counter() - t0
    save_array(args.out, q.astype(np.float64))
    return {**_describe(specs, comp), "extent": args.extent, "bins": args.bins, "shape": list(q.shape),
            "sum": float(q.sum()), "max_prob": float(q.max()), **{k: float(f"{v:.6g}") for k, v in info.items()},
            "seconds": round(seconds, 4), "out": args.out}


def cmd_sample(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device, describe_device
    from sculpt_core.domains.diffusion.compose import METHODS, ExactScoreModel
    from sculpt_core.domains.diffusion.sde import SDE
    from sculpt_core.domains.diffusion.metrics import evaluate
    from sculpt_core.domains.diffusion.sampling import SAMPLERS, check_sample_args, sample_method

    from sculpt_core.domains.diffusion.images.cli import cmd_sample_images, is_image_request

    if is_image_request(_base_names(args)):
        return cmd_sample_images(args)
    t0 = time.perf_counter()
    args.n = 20000 if args.n is None else args.n
    args.steps = 500 if args.steps is None else args.steps
    args.prior = "exact" if args.prior is None else args.prior
    if args.method not in METHODS:
        raise SculptError(f"unknown method {args.method!r}; one of {', '.join(METHODS)}")
    if args.sampler not in SAMPLERS:
        raise SculptError(f"unknown sampler {args.sampler!r}; one of {', '.join(SAMPLERS)}")
    if not (math.isfinite(args.gamma) and args.gamma > 0):
        raise SculptError(f"--gamma must be a positive number, got {args.gamma!r}")
    _check_extent(args.extent, args.bins)
    check_sample_args(args.n, args.steps, args.prior)
    bases = _resolve_bases(args)
    specs, comp = _bases_and_composition(args, bases)
    device = default_device()
    clf, clf_source = _classifier_for(args, bases) if args.method == "classifier" else (None, None)
    if clf is not None:
        from sculpt_core.domains.diffusion.classifier import ClassifierPosterior

        ClassifierPosterior(clf, comp)  # refuse an operator this classifier cannot express before any work
    models = None
    if args.method != "oracle" and any(b.model is not None for b in bases):
        models = [ExactScoreModel(b.spec, SDE, device) if b.model is None else b.model.with_precision(args.precision)
                  for b in bases]
    scores = ["exact" if args.method == "oracle" else b.score for b in bases]
    update, close = progress_bar(args.steps, f"{args.method} {args.sampler}")
    try:
        x, exact = sample_method(specs, comp, args.method, args.n, args.steps, args.sampler, args.seed, args.prior,
                                 args.gamma, args.model, device, progress=update, models=models, classifier=clf)
    finally:
        close()
    sample_seconds = time.perf_counter() - t0
    figures = evaluate(x, exact, args.extent, args.bins, seed=args.seed)
    arr = x.numpy().astype(np.float64)
    save_array(args.out, arr)
    return {**_describe(specs, comp), "scores": scores, "method": args.method, "sampler": args.sampler, "steps": args.steps,
            "prior": args.prior, "gamma": args.gamma if args.method in ("oracle", "classifier") else None,
            "classifier": clf_source, "precision": args.precision if models is not None else None,
            "model": args.model if args.method == "base" else None, "seed": args.seed, **figures,
            "sample_seconds": round(sample_seconds, 3), "device": describe_device(device), "out": args.out}


def cmd_specs(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS, load_spec

    return {"specs": {name: load_spec(name).to_json() for name in BUILTIN_SPECS}}


def cmd_train(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device, describe_device
    from sculpt_core.domains.diffusion.spec import load_spec
    from sculpt_core.domains.diffusion.train import check_train_args, train_dsm

    check_train_args(args.steps, args.batch, args.lr)
    if Path(args.out).is_dir():
        raise SculptError(f"cannot write {args.out}: it is a folder")
    spec = load_spec(args.spec)
    device = default_device()
    update, close = progress_bar(args.steps, f"dsm {spec.name}")
    try:
        model = train_dsm(spec, args.steps, args.batch, args.lr, args.seed, device=device, progress=update)
    finally:
        close()
    model.save(args.out)
    meta = model.meta
    return {"spec": spec.name, "steps": meta["steps"], "batch": meta["batch"], "lr": meta["lr"], "seed": meta["seed"],
            "seconds": meta["seconds"], "final_loss": meta["final_loss"], "score_error": meta["score_error"],
            "score_error_grid": meta["score_error_grid"], "score_error_by_t": meta["score_error_by_t"],
            "device": describe_device(device), "out": args.out}


def cmd_train_classifier(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device, describe_device
    from sculpt_core.domains.diffusion.model import data_scale
    from sculpt_core.domains.diffusion.train_classifier import (
        DiffusionClassifierTrainConfig,
        posterior_error,
        train_diffusion_classifier,
    )
    from sculpt_core.domains.diffusion.zoo import score_models

    from sculpt_core.domains.diffusion.images.cli import cmd_train_classifier_images, is_image_request

    if is_image_request(_base_names(args)):
        return cmd_train_classifier_images(args)
    args.steps = 1500 if args.steps is None else args.steps
    args.batch = 1024 if args.batch is None else args.batch
    args.trajectories = 2048 if args.trajectories is None else args.trajectories
    args.pool_steps = 200 if args.pool_steps is None else args.pool_steps
    args.lr = 2e-3 if args.lr is None else args.lr
    if Path(args.out).is_dir():
        raise SculptError(f"cannot write {args.out}: it is a folder")
    names = _base_names(args)
    n_labels = args.labels if args.labels is not None else (2 if args.alpha_cond else len(names))
    cfg = DiffusionClassifierTrainConfig(steps=args.steps, batch=args.batch, trajectories=args.trajectories,
                                         pool_steps=args.pool_steps, lr=args.lr, n_labels=n_labels,
                                         alpha_cond=args.alpha_cond, seed=args.seed)
    from sculpt_core.domains.diffusion.classifier import DiffusionClassifierConfig

    DiffusionClassifierConfig(len(names), n_labels, args.alpha_cond).validate()  # refuse bad shapes before any work
    bases = _resolve_bases(args)
    device = default_device()
    update, close = progress_bar(args.steps, "classifier")
    try:
        clf = train_diffusion_classifier(score_models(bases, device), cfg, device=device, base_names=names,
                                         sigma_data=max(data_scale(b.spec) for b in bases), progress=update)
    finally:
        close()
    clf.meta.update(posterior_error(clf, [b.spec for b in bases]))
    clf.save(args.out)
    keys = ("bases", "loss_terminal", "loss_nonterminal", "seconds", "pool_seconds", "posterior_tv_y1_mean",
            "posterior_tv_joint_mean", "posterior_tv_y1", "posterior_tv_joint")
    return {**{k: clf.meta[k] for k in keys if k in clf.meta}, "n_labels": n_labels, "alpha_cond": args.alpha_cond,
            "steps": args.steps, "scores": [b.score for b in bases], "device": describe_device(device), "out": args.out}


def cmd_zoo_build_diffusion_classifiers(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.diffusion.zoo import build_diffusion_classifiers

    keys = [n.strip() for n in parse_list(args.names, str, "--names")] if args.names else None
    return build_diffusion_classifiers(keys, args.steps, args.seed,
                                       progress_factory=lambda key, total: progress_bar(total, f"classifier {key}"))


def _composition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bases", required=True, help=(
        "comma-separated bases, each resolved by the first match of: spec:NAME (the exact spec NAME, built-in or "
        "JSON path, never a learned model); a zoo model name (learned score, its recorded spec for target, oracle "
        "and metrics); a built-in spec name (ring, band, column); a .pt checkpoint path (learned); a JSON spec "
        "path. The oracle always uses the exact spec scores"))
    p.add_argument("--y", default=None, help="observed labels y1..yn, e.g. 1,2 (harmonic mean), 1,1 (contrast), 1,2,3")
    p.add_argument("--alpha", type=float, default=None, help="α of the parameterised operators (two bases, two labels)")
    p.add_argument("--weights", default=None, help="mixture weights w1,w2,... over the normalised bases")


def cmd_zoo_build_diffusion(args: argparse.Namespace) -> dict:
    from sculpt_core.domains.diffusion.train import check_train_args
    from sculpt_core.domains.diffusion.zoo import build_diffusion_zoo

    names = [n.strip() for n in parse_list(args.names, str, "--names")] if args.names else None
    check_train_args(args.steps, 1024, 2e-3)
    return build_diffusion_zoo(names, args.steps, args.seed,
                               progress_factory=lambda name, total: progress_bar(total, f"zoo {name}"))


def register(commands: argparse._SubParsersAction, zoo: argparse._SubParsersAction) -> None:
    """Add ``diffusion density|sample|specs|train`` and ``zoo build-diffusion``."""
    p = commands.add_parser("density", help="write the exact composed target's probability per bin on [−L, L]²")
    _composition_args(p)
    p.add_argument("--extent", type=float, default=3.5, help="half-width L of the square [−L, L]²")
    p.add_argument("--bins", type=int, default=40, help="bins per axis B")
    p.add_argument("--out", required=True, help="output .npy (or .csv) q[ix, iy], ix bins the first coordinate")
    p.set_defaults(func=cmd_density)

    p = commands.add_parser("sample", help="sample a composition by the reverse SDE and score it against the exact target")
    _composition_args(p)
    p.add_argument("--method", default="oracle", help="oracle | classifier | superdiff | score-sum | base")
    p.add_argument("--classifier", default=None,
                   help="guidance classifier checkpoint of the classifier method (default: the zoo's for --bases)")
    p.add_argument("--n", type=int, default=None, help="number of particles (default 20000; images: 64)")
    p.add_argument("--steps", type=int, default=None, help="reverse-time steps from t = 1 to ε (default 500; images: 200)")
    p.add_argument("--sampler", default="em", help="em (Euler–Maruyama) | pc (predictor–corrector) | ode (probability flow)")
    p.add_argument("--prior", default=None, choices=["exact", "gaussian"],
                   help="start: the target's own law at t = 1 (exact, the 2-D default) or N(0, σ(1)² I) (gaussian, images)")
    p.add_argument("--gamma", type=float, default=1.0,
                   help="guidance scale γ on ∇ log Q(y | x_t) (oracle, classifier); γ = 1 is the theory")
    p.add_argument("--model", type=int, default=1, help="which base the `base` method samples (1-based)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="learned score networks' hidden layers in float32 or bfloat16 (faster on CPUs with AMX)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--extent", type=float, default=3.5, help="half-width L of the evaluation square")
    p.add_argument("--bins", type=int, default=40, help="bins per axis of the binned L1")
    p.add_argument("--out", required=True, help="output .npy (or .csv): the (N, 2) float64 samples; images: an "
                   "(N, 3, H, W) float32 .npy in [0, 1] (channel 0 red, 1 green)")
    p.set_defaults(func=cmd_sample)

    p = commands.add_parser("specs", help="print the built-in Gaussian-mixture specs")
    p.set_defaults(func=cmd_specs)

    from sculpt_core.domains.diffusion.maps import add_emd_command

    add_emd_command(commands)  # diffusion emd: pairwise EMDs of sample sets (distribution maps)

    from sculpt_core.domains.diffusion.images.cli import register as register_images

    register_images(commands, zoo)  # diffusion train-images, zoo build-diffusion-images

    p = commands.add_parser("train", help="train a score network on a spec by denoising score matching")
    p.add_argument("--spec", required=True, help="built-in spec name (ring, band, column) or JSON spec path")
    p.add_argument("--out", required=True, help="output checkpoint (.pt), written atomically")
    p.add_argument("--steps", type=int, default=10000, help="Adam steps (a fresh batch of the spec each step)")
    p.add_argument("--batch", type=int, default=1024, help="samples per step")
    p.add_argument("--lr", type=float, default=2e-3, help="initial learning rate (cosine decay to 5%%)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("train-classifier", help=(
        "train a time-conditioned guidance classifier for the bases (the diffusion analogue of Algorithm A.1)"))
    p.add_argument("--bases", required=True, help="comma-separated bases, as for sample (zoo names, specs, checkpoints)")
    p.add_argument("--alpha-cond", action="store_true", help="condition on α (two bases, two labels; eq. 7)")
    p.add_argument("--labels", type=int, default=None, help="labels y1..yn the classifier knows (default: one per base)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 1500)")
    p.add_argument("--batch", type=int, default=None, help="(trajectory, step) pairs per base and step (default 1024; images 96)")
    p.add_argument("--trajectories", type=int, default=None, help="reverse trajectories per base and pool (default 2048; images 192)")
    p.add_argument("--pool-steps", type=int, default=None, help="reverse-SDE steps of the training trajectories (default 200; images 100)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-3; images 1e-3)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--out", required=True, help="output checkpoint (.pt), written atomically")
    p.set_defaults(func=cmd_train_classifier)

    p = zoo.add_parser("build-diffusion-classifiers", help="re-train the shipped diffusion guidance classifiers")
    p.add_argument("--names", default=None, help="comma-separated subset of ring+band, ring+band+column (default: all)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per classifier (default: each one's own)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.set_defaults(func=cmd_zoo_build_diffusion_classifiers)

    p = zoo.add_parser("build-diffusion", help="re-train the shipped diffusion score models into assets/")
    p.add_argument("--names", default=None, help="comma-separated subset of ring, band, column (default: all)")
    p.add_argument("--steps", type=int, default=10000, help="DSM steps per model")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.set_defaults(func=cmd_zoo_build_diffusion)
