r"""Sampling colored-MNIST compositions, and what each composition should produce.

**Sampling** (:func:`sample_images`) runs the 2-D domain's score fields (``compose.build_field``) and reverse
samplers (``sampling.reverse_sample``) on images: methods ``classifier`` (the paper's guidance with a learned
time-conditioned classifier, scale γ), ``superdiff`` (training-free: OR for mixtures, AND for every base once),
``score-sum`` (Σ_i s_i) and ``base``. There is no ``oracle``: no exact posterior exists for image models. Every
run starts from the reference prior N(0, σ(1)² I) and returns the final mean clamped to [0, 1].

**The ideal composition** (:func:`ideal_composition`): treat each base as uniform over its (color, digit)
pairs (what it was trained on) and compose those 20-atom tables with the same operator algebra as every other
domain (``Composition.log_target``). Its modal pairs are the **expected set** a judge counts samples in (HM of
M1, M2 → green 0; M1 ◑ M2 → red 0; y = (1, 2, 3) of MN1..MN3 → green 0), and its full table is the
distribution γ = 1 guidance aims at (M1 ◑ M2 is 2/3 red 0, 1/3 green 0: a guidance scale γ > 1 sharpens it
towards the modal set, which is why the paper used γ = 10).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.domains.diffusion.compose import build_field
from sculpt_core.domains.diffusion.images.data import COLORS, dataset
from sculpt_core.domains.diffusion.sampling import SAMPLERS, make_generator, reverse_sample
from sculpt_core.errors import SculptError

IMAGE_METHODS = ("classifier", "superdiff", "score-sum", "base")
MAX_IMAGES = 4096
MAX_IMAGE_STEPS = 2000
ATOMS = [(c, d) for c in COLORS for d in range(10)]


def base_table(name: str) -> torch.Tensor:
    """A base set as a distribution over :data:`ATOMS` ``[20]`` (uniform over its pairs)."""
    pairs = set(dataset(name).pairs)
    p = torch.tensor([1.0 if a in pairs else 0.0 for a in ATOMS], dtype=torch.float64)
    return p / p.sum()


def ideal_composition(sets: list[str], composition: Composition, model_index: int = 1,
                      method: str = "classifier") -> dict[str, float]:
    """The composition of the bases' ideal tables: ``{"green 0": 1.0, ...}`` (atoms with mass > 1e-12, largest
    first). ``base`` → that base's own table."""
    if method == "base":
        q = base_table(sets[model_index - 1])
    else:
        log_p = torch.stack([base_table(s) for s in sets]).log()
        q = composition.log_target(log_p).exp()
    order = torch.argsort(q, descending=True)
    return {f"{ATOMS[i][0]} {ATOMS[i][1]}": round(float(q[i]), 6) for i in order.tolist() if q[i] > 1e-12}


def expected_set(ideal: dict[str, float]) -> list[tuple[str, int]]:
    """The modal atoms of an ideal table (within 1e-9 of its maximum): what a sample should be."""
    top = max(ideal.values())
    return [(k.split()[0], int(k.split()[1])) for k, v in ideal.items() if v >= top - 1e-9]


def check_image_args(n: int, steps: int, sampler: str, gamma: float) -> None:
    """SculptError unless 1 ≤ n ≤ MAX_IMAGES, 1 ≤ steps ≤ MAX_IMAGE_STEPS, a known sampler and γ > 0."""
    if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_IMAGES):
        raise SculptError(f"n must be an integer in 1..{MAX_IMAGES} for images, got {n!r}")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= MAX_IMAGE_STEPS):
        raise SculptError(f"steps must be an integer in 1..{MAX_IMAGE_STEPS} for images, got {steps!r}")
    if sampler not in SAMPLERS:
        raise SculptError(f"unknown sampler {sampler!r}; one of {', '.join(SAMPLERS)}")
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise SculptError(f"the guidance scale γ must be a positive number, got {gamma!r}")


def image_field(models: list, composition: Composition | None, method: str, gamma: float = 1.0, model_index: int = 1,
                classifier=None, device: torch.device | str = "cpu"):
    """The score field of ``method`` over image ``models`` (SculptError, before any work, for a method or
    operator that does not apply); ``composition`` None means the equal mixture."""
    from sculpt_core.core import algebra as A

    if method not in IMAGE_METHODS:
        raise SculptError(f"unknown method {method!r} for images; one of {', '.join(IMAGE_METHODS)}")
    if composition is None:
        composition = A.mixture([1.0] * len(models))
    posterior = None
    if method == "classifier":
        if classifier is None:
            raise SculptError("no guidance classifier for these bases: train one with "
                              "`python -m sculpt_core diffusion train-classifier`")
        from sculpt_core.domains.diffusion.classifier import ClassifierPosterior

        posterior = ClassifierPosterior(classifier.to(device), composition)
    return build_field(method, models, composition, None, gamma, model_index, models[0].sde, posterior)


def sample_images(models: list, composition: Composition | None, method: str, n: int, steps: int = 200,
                  sampler: str = "em", seed: int = 0, gamma: float = 1.0, model_index: int = 1, classifier=None,
                  device: torch.device | str = "cpu",
                  progress: Callable[[int, dict], None] | None = None) -> torch.Tensor:
    """``n`` images ``[n, 3, H, W]`` (float32 in [0, 1], CPU) of ``method`` for ``composition`` over the image
    score ``models``; ``classifier``: the ``GuidanceClassifier`` of the ``classifier`` method."""
    check_image_args(n, steps, sampler, gamma)
    field = image_field(models, composition, method, gamma, model_index, classifier, device)
    sde = models[0].sde
    gen = make_generator(seed, device)
    x1 = sde.prior_sample(n, gen, device, tuple(models[0].shape))
    x = reverse_sample(field, x1, steps, sampler, sde, gen, progress=progress)
    return x.float().clamp(0, 1).cpu()
