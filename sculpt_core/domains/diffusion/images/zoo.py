"""Shipped colored-MNIST models: the score-model family, the judge and the guidance classifiers.

Manifest sections:

- ``diffusion_image_models``: family name → {"file", "sets", "size", training figures, each base's own-set
  fraction by the judge}; a base is named by its data set (``mn1``) or ``FAMILY:SET`` (``mnist16:mn1``, or a
  checkpoint path before the colon);
- ``diffusion_image_judge``: family name → {"file", held-out accuracy};
- guidance classifiers share the ``diffusion_classifiers`` section of the 2-D domain (keys ``mn1+mn2+mn3``,
  ``m1+m2``), so ``--method classifier`` finds them the same way and checks the same fingerprints.

``python -m sculpt_core zoo build-diffusion-images`` re-creates everything (resumable: a killed run continues).
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable


from sculpt_core.core.zoo import assets_dir, read_manifest, resolve_checkpoint, update_manifest
from sculpt_core.domains.diffusion.images.data import DATASETS
from sculpt_core.domains.diffusion.images.judge import Judge
from sculpt_core.domains.diffusion.images.model import ImageFamily, ImageScoreModel
from sculpt_core.errors import SculptError

SECTION = "diffusion_image_models"
JUDGE_SECTION = "diffusion_image_judge"
DEFAULT_FAMILY = "mnist16"

#: Shipped image classifiers: key → (bases in order, labels, α-conditioned, training settings).
IMAGE_ZOO_CLASSIFIERS: dict[str, tuple[tuple[str, ...], int, bool, dict]] = {
    "mn1+mn2+mn3": (("mn1", "mn2", "mn3"), 3, False, {}),
    "m1+m2": (("m1", "m2"), 2, False, {"steps": 4000}),  # at 1500 steps M2 ◑ M1 reached 0.63 at γ = 10, at 4000 0.81
}
#: Image classifier training defaults (pool: reverse EM trajectories of the bases themselves).
IMAGE_CLASSIFIER_TRAIN = {"steps": 1500, "batch": 96, "trajectories": 192, "pool_steps": 100, "refresh_every": 250,
                          "lr": 1e-3, "warmup": 200, "hidden": 128}
IMAGE_CLASSIFIER_CHANNELS = (16, 32, 32)


def image_model_entries() -> dict[str, Any]:
    """The ``diffusion_image_models`` section of the manifest (empty if absent)."""
    entries = read_manifest().get(SECTION, {})
    if not isinstance(entries, dict):
        raise SculptError(f"manifest section {SECTION!r} must be an object")
    return entries


def is_image_base(text: str) -> bool:
    """Whether a ``--bases`` entry names a colored-MNIST base (a data-set name or ``FAMILY:SET``)."""
    text = text.strip()
    if text in DATASETS:
        return True
    head, sep, tail = text.rpartition(":")
    return bool(sep) and tail in DATASETS and (head in image_model_entries() or Path(head).suffix in (".pt", ".pth"))


def load_family(name_or_path: str = DEFAULT_FAMILY) -> ImageFamily:
    """A family by manifest name or checkpoint path (cached per process by path and mtime)."""
    path = resolve_checkpoint(name_or_path, SECTION, "image model")
    return _load_family_cached(str(path.resolve()), path.stat().st_mtime)


@lru_cache(maxsize=4)
def _load_family_cached(path: str, mtime: float) -> ImageFamily:
    return ImageFamily.load(path)


def resolve_image_bases(names: list[str], precision: str = "fp32") -> list[ImageScoreModel]:
    """``--bases`` entries → image score models, all from one family (one image size)."""
    models = []
    for text in names:
        text = text.strip()
        head, sep, tail = text.rpartition(":")
        family_name, set_name = (head, tail) if sep else (DEFAULT_FAMILY, text)
        if set_name not in DATASETS:
            raise SculptError(f"unknown colored-MNIST base {text!r}; bases: {', '.join(DATASETS)}")
        models.append(load_family(family_name).model(set_name, precision))
    if len({m.shape for m in models}) > 1:
        raise SculptError("the bases are image models of different sizes; choose bases of one family")
    return models


def load_judge(size: int, family: str = DEFAULT_FAMILY) -> Judge:
    """The shipped judge for images of side ``size`` (SculptError when none is shipped)."""
    entries = read_manifest().get(JUDGE_SECTION, {})
    if not isinstance(entries, dict):
        raise SculptError(f"manifest section {JUDGE_SECTION!r} must be an object")
    for name, entry in entries.items():
        if isinstance(entry, dict) and entry.get("size") == size:
            path = resolve_checkpoint(name, JUDGE_SECTION, "image judge")
            return _load_judge_cached(str(path.resolve()), path.stat().st_mtime)
    raise SculptError(f"no shipped judge for {size}×{size} images; build it with "
                      "`python -m sculpt_core zoo build-diffusion-images`")


@lru_cache(maxsize=4)
def _load_judge_cached(path: str, mtime: float) -> Judge:
    return Judge.load(path)


def find_image_classifier(names: list[str], models: list, source: str | Path | None = None):
    """(guidance classifier, its source) for the image bases ``names`` (``FAMILY:SET`` or set names) and their
    loaded ``models``: ``source`` (a checkpoint path or manifest key) when given, else the one shipped for these
    sets in this order. SculptError when there is none, it is for another image size, or it was trained on other
    bases (its recorded fingerprints), so guidance never runs with a classifier of other models."""
    from sculpt_core.domains.diffusion.zoo import find_diffusion_classifier, load_diffusion_classifier

    source = source or find_diffusion_classifier([n.rpartition(":")[2] for n in names])
    if source is None:
        raise SculptError(f"no shipped classifier for bases {','.join(names)}; train one with `python -m sculpt_core "
                          "diffusion train-classifier --bases ... --out clf.pt` and pass --classifier clf.pt")
    clf = load_diffusion_classifier(source)
    if getattr(clf.cfg, "image_size", None) != models[0].shape[1]:
        raise SculptError(f"{source} is not a classifier for {models[0].shape[1]}×{models[0].shape[1]} images")
    clf.check_bases([m.fingerprint() for m in models])
    return clf, str(source)


def judge_report(images, sets: list[str], comp, method: str, model_index: int) -> dict:
    """The shipped judge's verdict on ``images`` ``[N, 3, S, S]`` of ``method`` for ``comp`` over the data sets
    ``sets``: the fraction inside the expected set, the counts of every (color, digit) seen, the ideal composition
    and the judge's held-out accuracy (what the CLI prints and the page shows under each grid)."""
    from sculpt_core.domains.diffusion.images.compose import expected_set, ideal_composition
    from sculpt_core.domains.diffusion.images.judge import fractions

    judge = load_judge(images.shape[-1])
    ideal = ideal_composition(sets, comp, model_index, method)
    out = fractions(judge.judge(images), expected_set(ideal))
    return {**out, "ideal": ideal, "judge_held_out_accuracy": judge.meta.get("held_out_accuracy")}


# ----- building the zoo ---------------------------------------------------------------------------------
def own_set_fractions(family: ImageFamily, judge: Judge, n: int = 256, steps: int = 200, seed: int = 0,
                      device: Any = "cpu") -> dict[str, dict]:
    """Per base: the judge's fraction of its own samples inside its own (color, digit) set."""
    from sculpt_core.domains.diffusion.images.compose import sample_images
    from sculpt_core.domains.diffusion.images.judge import fractions

    out = {}
    for name in family.sets:
        x = sample_images([family.model(name)], None, "base", n, steps, seed=seed, device=device)
        out[name] = fractions(judge.judge(x), DATASETS[name].pairs)
    return out


def train_image_classifier(models: list[ImageScoreModel], n_labels: int, alpha_cond: bool = False,
                           settings: dict | None = None, seed: int = 0, device: Any = "cpu",
                           progress: Callable[[int, dict], None] | None = None):
    """A guidance classifier for image bases by the diffusion analogue of Algorithm A.1 (``train_classifier``)."""
    from sculpt_core.domains.diffusion.classifier import ImageClassifierConfig
    from sculpt_core.domains.diffusion.train_classifier import DiffusionClassifierTrainConfig, train_diffusion_classifier

    opts = {**IMAGE_CLASSIFIER_TRAIN, **(settings or {})}
    cfg = DiffusionClassifierTrainConfig(n_labels=n_labels, alpha_cond=alpha_cond, seed=seed, **opts)
    net_cfg = models[0].net.cfg
    ccfg = ImageClassifierConfig(n_models=len(models), n_labels=n_labels, alpha_cond=alpha_cond, hidden=cfg.hidden,
                                 sigma_data=net_cfg.sigma_data, sde_sigma=net_cfg.sde_sigma, t_eps=net_cfg.t_eps,
                                 image_size=net_cfg.size, in_channels=net_cfg.in_channels,
                                 channels=IMAGE_CLASSIFIER_CHANNELS)
    return train_diffusion_classifier(models, cfg, models[0].sde, device, [m.name for m in models],
                                      classifier_config=ccfg, progress=progress)


def ship_image_family(name: str, family: ImageFamily, judge: Judge, figures: dict) -> dict:
    """Save a trained family and its judge in ``assets/zoo/diffusion/`` and write their manifest entries."""
    rel, rel_judge = f"zoo/diffusion/{name}.pt", f"zoo/diffusion/{name}_judge.pt"
    family.meta["own_set"] = figures
    family.save(assets_dir() / rel)
    judge.save(assets_dir() / rel_judge)
    train = family.meta.get("train", {})
    entry = {"file": rel, "sets": list(family.sets), "size": family.size, "channels": train.get("channels"),
             "steps": family.meta.get("steps_done"), "batch": train.get("batch"), "seconds": family.meta.get("seconds"),
             "final_loss": family.meta.get("final_loss"),
             "own_set_fraction": {k: v["fraction"] for k, v in figures.items()}}
    update_manifest(SECTION, name, entry)
    update_manifest(JUDGE_SECTION, name, {"file": rel_judge, "size": judge.size, **{
        k: judge.meta[k] for k in ("held_out_accuracy", "held_out_n", "train_n", "epochs")}})
    return entry


def ship_image_classifier(key: str, clf) -> dict:
    """Save an image classifier as the zoo's ``key`` and write its manifest entry."""
    from sculpt_core.domains.diffusion.zoo import CLASSIFIER_SECTION

    rel = f"zoo/diffusion/classifier_{key}.pt"
    clf.save(assets_dir() / rel)
    meta, train = clf.meta, clf.meta["train"]
    entry = {"file": rel, "bases": list(meta["bases"]), "n_labels": clf.cfg.n_labels, "alpha_cond": clf.cfg.alpha_cond,
             "image_size": clf.cfg.image_size,
             **{k: train[k] for k in ("steps", "batch", "trajectories", "pool_steps", "seed")},
             "seconds": meta["seconds"], "loss_terminal": meta["loss_terminal"], "loss_nonterminal": meta["loss_nonterminal"]}
    update_manifest(CLASSIFIER_SECTION, key, entry)
    return entry


def build_image_zoo(state_dir: str | Path, name: str = DEFAULT_FAMILY, steps: int | None = None, classifiers: bool = True,
                    seed: int = 0, time_limit: float | None = None, device: Any = "cpu",
                    progress: Callable[[str, int, dict], None] | None = None) -> dict:
    """Train (or continue) the family, the judge and the classifiers, measure and ship them. Returns the
    manifest entries; ``{"finished": False}`` when ``time_limit`` ran out during the family's training."""
    from sculpt_core.domains.diffusion.images.judge import train_judge
    from sculpt_core.domains.diffusion.images.train import ImageTrainConfig, train_image_family

    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg = ImageTrainConfig(seed=seed, **({"steps": steps} if steps is not None else {}))
    t0 = time.perf_counter()
    family, done = train_image_family(cfg, state_dir / f"{name}.state.pt", time_limit=time_limit, device=device,
                                      progress=None if progress is None else (lambda k, d: progress("family", k, d)))
    if not done:
        return {"finished": False, "steps_done": family.meta["steps_done"]}
    judge = train_judge(cfg.size, seed=seed)
    entries = {"family": ship_image_family(name, family, judge, own_set_fractions(family, judge, device=device))}
    if classifiers:
        for key, (bases, n_labels, alpha_cond, settings) in IMAGE_ZOO_CLASSIFIERS.items():
            models = resolve_image_bases([f"{name}:{b}" for b in bases])
            clf = train_image_classifier(models, n_labels, alpha_cond, settings, seed, device,
                                         None if progress is None else (lambda k, d, key=key: progress(key, k, d)))
            entries[key] = ship_image_classifier(key, clf)
    entries["seconds"] = round(time.perf_counter() - t0, 1)
    return entries
