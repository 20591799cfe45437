"""The image side of ``python -m sculpt_core diffusion``: ``sample`` and ``train-classifier`` on colored-MNIST
bases (the 2-D commands hand over when every ``--bases`` entry is an image base), ``train-images`` (a score-model
family on chosen data sets) and ``zoo build-diffusion-images``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sculpt_core.core import algebra as A
from sculpt_core.core.cli import composition_from_args, parse_list, progress_bar, seed_arg
from sculpt_core.core.io import save_array
from sculpt_core.core.methods import check_models
from sculpt_core.errors import SculptError

DEFAULT_N = 64
DEFAULT_STEPS = 200


def is_image_request(names: list[str]) -> bool:
    """True when every base is a colored-MNIST base; SculptError when images and 2-D bases are mixed."""
    from sculpt_core.domains.diffusion.images.zoo import is_image_base

    flags = [is_image_base(n) for n in names]
    if any(flags) and not all(flags):
        raise SculptError("--bases mixes colored-MNIST bases with 2-D bases; compose models of one kind")
    return bool(flags) and all(flags)


def _composition(args: argparse.Namespace, m: int):
    if args.y is None and args.weights is None:
        if args.method != "base":
            raise SculptError("give --y (labels) or --weights (mixture) for a composition, or use --method base")
        comp = A.mixture([1.0] * m)
    else:
        comp = composition_from_args(m, args.y, args.alpha, args.weights)
    check_models(m, comp)
    if comp.kind == "linear":  # the bases are normalised: linear scalarisation is the mixture
        comp = A.mixture(list(comp.weights))
    return comp


def _image_classifier(args: argparse.Namespace, names: list[str], models: list):
    from sculpt_core.domains.diffusion.images.zoo import find_image_classifier

    return find_image_classifier(names, models, args.classifier)


def cmd_sample_images(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device, describe_device
    from sculpt_core.domains.diffusion.images.compose import IMAGE_METHODS, check_image_args, image_field, sample_images
    from sculpt_core.domains.diffusion.images.zoo import judge_report, resolve_image_bases

    t0 = time.perf_counter()
    n = DEFAULT_N if args.n is None else args.n
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    if args.method not in IMAGE_METHODS:
        raise SculptError(f"unknown method {args.method!r} for images; one of {', '.join(IMAGE_METHODS)} "
                          "(no oracle: image models have no exact posterior)")
    check_image_args(n, steps, args.sampler, args.gamma)
    if args.prior not in (None, "gaussian"):
        raise SculptError("image models start from the reference prior only (--prior gaussian)")
    if Path(args.out).suffix.lower() == ".csv":
        raise SculptError("images are written as .npy (an (N, 3, H, W) array); a CSV holds 1-D or 2-D arrays only")
    names = [s.strip() for s in parse_list(args.bases, str, "--bases")]
    models = resolve_image_bases(names, args.precision)
    comp = _composition(args, len(models))
    if args.method == "base" and not (1 <= args.model <= len(models)):
        raise SculptError(f"--model must be a base index in 1..{len(models)}, got {args.model}")
    clf, clf_source = _image_classifier(args, names, models) if args.method == "classifier" else (None, None)
    device = default_device()
    image_field(models, comp, args.method, args.gamma, args.model, clf, device)  # refuse what cannot run, before any work
    update, close = progress_bar(steps, f"{args.method} {args.sampler}")
    try:
        x = sample_images(models, comp, args.method, n, steps, args.sampler, args.seed, args.gamma, args.model, clf,
                          device, progress=update)
    finally:
        close()
    seconds = time.perf_counter() - t0
    save_array(args.out, x.numpy().astype(np.float32))
    sets = [m.name for m in models]
    return {"bases": names, "composition": comp.describe(), "method": args.method, "sampler": args.sampler,
            "steps": steps, "n": n, "shape": list(x.shape),
            "gamma": args.gamma if args.method == "classifier" else None, "classifier": clf_source,
            "model": args.model if args.method == "base" else None, "precision": args.precision, "seed": args.seed,
            "judge": judge_report(x, sets, comp, args.method, args.model), "sample_seconds": round(seconds, 3),
            "device": describe_device(device), "out": args.out}


def cmd_train_classifier_images(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device, describe_device
    from sculpt_core.domains.diffusion.images.zoo import IMAGE_CLASSIFIER_TRAIN, resolve_image_bases, train_image_classifier

    if Path(args.out).is_dir():
        raise SculptError(f"cannot write {args.out}: it is a folder")
    names = [s.strip() for s in parse_list(args.bases, str, "--bases")]
    n_labels = args.labels if args.labels is not None else (2 if args.alpha_cond else len(names))
    models = resolve_image_bases(names)
    settings = {k: v for k, v in {"steps": args.steps, "batch": args.batch, "trajectories": args.trajectories,
                                  "pool_steps": args.pool_steps, "lr": args.lr}.items() if v is not None}
    steps = settings.get("steps", IMAGE_CLASSIFIER_TRAIN["steps"])
    device = default_device()
    update, close = progress_bar(steps, "image classifier")
    try:
        clf = train_image_classifier(models, n_labels, args.alpha_cond, settings, args.seed, device, update)
    finally:
        close()
    clf.save(args.out)
    keys = ("bases", "loss_terminal", "loss_nonterminal", "seconds", "pool_seconds")
    return {**{k: clf.meta[k] for k in keys}, "n_labels": n_labels, "alpha_cond": args.alpha_cond, "steps": steps,
            "device": describe_device(device), "out": args.out}


def cmd_train_images(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device, describe_device
    from sculpt_core.domains.diffusion.images.train import ImageTrainConfig, train_image_family

    if Path(args.out).is_dir():
        raise SculptError(f"cannot write {args.out}: it is a folder")
    sets = tuple(s.strip() for s in parse_list(args.sets, str, "--sets"))
    channels = tuple(parse_list(args.channels, int, "--channels"))
    cfg = ImageTrainConfig(sets=sets, size=args.size, channels=channels, steps=args.steps, batch=args.batch, lr=args.lr,
                           seed=args.seed)
    cfg.unet()  # refuse a size the U-Net cannot halve before any work
    device = default_device()
    update, close = progress_bar(cfg.steps, "image dsm")
    try:
        family, done = train_image_family(cfg, args.state, time_limit=args.time_limit, device=device,
                                          progress=lambda k, d: update(k, d))
    finally:
        close()
    family.save(args.out)
    return {"sets": list(sets), "size": cfg.size, "steps_done": family.meta["steps_done"], "steps": cfg.steps,
            "finished": done, "final_loss": family.meta["final_loss"], "seconds": family.meta["seconds"],
            "state": args.state, "device": describe_device(device), "out": args.out}


def cmd_zoo_build_images(args: argparse.Namespace) -> dict:
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.images.zoo import build_image_zoo

    bars: dict[str, tuple] = {}

    def progress(what: str, k: int, info: dict) -> None:
        if what not in bars:
            bars[what] = progress_bar(args.steps or 5500 if what == "family" else 1500, f"images {what}")
        bars[what][0](k, info)

    try:
        return build_image_zoo(args.state_dir, steps=args.steps, classifiers=not args.no_classifiers, seed=args.seed,
                               time_limit=args.time_limit, device=default_device(), progress=progress)
    finally:
        for _, close in bars.values():
            close()


def register(commands: argparse._SubParsersAction, zoo: argparse._SubParsersAction) -> None:
    """Add ``diffusion train-images`` and ``zoo build-diffusion-images``."""
    p = commands.add_parser("train-images", help=(
        "train one U-Net score-model family on colored-MNIST data sets (resumable: --state keeps the run)"))
    p.add_argument("--sets", default="mn1,mn2,mn3,m1,m2", help="comma-separated data sets: mn1, mn2, mn3, m1, m2")
    p.add_argument("--size", type=int, default=16, help="image side: 28, 16, 14 or 7")
    p.add_argument("--channels", default="32,64,64", help="U-Net widths per resolution (the side must halve "
                   "len - 1 times: 16 and 28 take 3 levels, 14 two, 7 one)")
    p.add_argument("--steps", type=int, default=5500, help="Adam steps")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--state", default=None, help="run-state file: written every 250 steps, continued when present")
    p.add_argument("--time-limit", type=float, default=None, help="stop (resumably) after this many seconds")
    p.add_argument("--out", required=True, help="output checkpoint (.pt) of the EMA weights, written atomically")
    p.set_defaults(func=cmd_train_images)

    p = zoo.add_parser("build-diffusion-images", help=(
        "re-train the shipped colored-MNIST family, judge and guidance classifiers into assets/ (resumable)"))
    p.add_argument("--state-dir", default="runs", help="folder of the resumable run state")
    p.add_argument("--steps", type=int, default=None, help="DSM steps of the family (default 5500)")
    p.add_argument("--time-limit", type=float, default=None, help="stop (resumably) after this many seconds")
    p.add_argument("--no-classifiers", action="store_true", help="only the family and the judge")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.set_defaults(func=cmd_zoo_build_images)
