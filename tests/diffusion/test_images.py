"""Colored-MNIST diffusion: the data sets, the U-Net family (shapes, checkpoints, resumable training), the
m-way SuperDiff AND weights, the judge, and, exactly, the whole image sampling path: bases that are uniform
over a few atom images have closed-form diffused scores and label posteriors, so guided sampling with the
exact posterior must land on the atoms with the frequencies of the ideal composition."""

from __future__ import annotations

import math

import pytest
import torch

from sculpt_core.core import algebra as A
from sculpt_core.domains.diffusion.compose import GuidedField, and_weights, build_field
from sculpt_core.domains.diffusion.images.compose import ATOMS, base_table, expected_set, ideal_composition
from sculpt_core.domains.diffusion.images.data import DATASETS, ColoredSampler, colorize, digits, split_indices
from sculpt_core.domains.diffusion.images.judge import Judge, fractions, train_judge
from sculpt_core.domains.diffusion.images.model import ImageFamily
from sculpt_core.domains.diffusion.images.train import ImageTrainConfig, train_image_family
from sculpt_core.domains.diffusion.images.unet import UNet, UNetConfig
from sculpt_core.domains.diffusion.sampling import make_generator, reverse_sample
from sculpt_core.domains.diffusion.sde import SDE
from sculpt_core.errors import SculptError


# ----- data -----------------------------------------------------------------------------------------------
def test_base_sets_are_the_papers():
    assert set(DATASETS["mn1"].pairs) == {("green", d) for d in (0, 1, 2, 3)}
    assert set(DATASETS["mn2"].pairs) == {(c, d) for c in ("red", "green") for d in (0, 1)}
    assert set(DATASETS["mn3"].pairs) == {(c, d) for c in ("red", "green") for d in (0, 2)}
    assert set(DATASETS["m1"].pairs) == {("red", 0), ("green", 0)}
    assert set(DATASETS["m2"].pairs) == {("green", 0), ("green", 1)}


def test_colored_draws_use_one_channel_and_the_sets_digits():
    gen = torch.Generator().manual_seed(0)
    x = ColoredSampler("mn1", 16).sample(64, gen)
    assert x.shape == (64, 3, 16, 16) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x[:, 0].abs().sum()) == 0 and float(x[:, 2].abs().sum()) == 0  # green only
    x = ColoredSampler("m1", 16).sample(400, gen)
    red = (x[:, 0].sum((1, 2)) > 0).float()
    assert bool(((x[:, 0].sum((1, 2)) > 0) ^ (x[:, 1].sum((1, 2)) > 0)).all())  # exactly one channel
    assert 0.4 < float(red.mean()) < 0.6


def test_held_out_split_is_disjoint_and_balanced():
    train, held = split_indices()
    assert len(set(train.tolist()) & set(held.tolist())) == 0 and len(train) + len(held) == 5000
    _, labels = digits(28)
    assert torch.bincount(labels[held], minlength=10).tolist() == [100] * 10
    gray16, _ = digits(16)
    assert gray16.shape == (5000, 16, 16) and 0 <= float(gray16.min()) and float(gray16.max()) <= 1


def test_unknown_set_and_size_are_refused():
    with pytest.raises(SculptError, match="unknown colored-MNIST set"):
        ColoredSampler("mn9")
    with pytest.raises(SculptError, match="image size"):
        ColoredSampler("mn1", 20)


# ----- U-Net family ----------------------------------------------------------------------------------------
def test_unet_shapes_zero_init_and_config_checks():
    net = UNet(UNetConfig(size=8, channels=(8, 16), n_sets=2))
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        out = net(x, 0.5, torch.tensor([0, 1, 1]))
    assert out.shape == x.shape and float(out.abs().max()) == 0.0  # zero-initialised output conv
    with pytest.raises(SculptError, match="divisible"):
        UNetConfig(size=6, channels=(8, 16, 16)).validate()
    with pytest.raises(SculptError, match="channels"):
        UNetConfig(channels=(12,)).validate()


def _tiny_cfg(**kw) -> ImageTrainConfig:
    return ImageTrainConfig(sets=("m1", "m2"), size=7, channels=(8,), steps=8, batch=8, warmup=2, **kw)


def test_training_resumes_to_the_same_weights(tmp_path):
    straight, done = train_image_family(_tiny_cfg())
    assert done and straight.meta["steps_done"] == 8
    state = tmp_path / "run.state.pt"
    first, done = train_image_family(_tiny_cfg(), state, time_limit=0.0, save_every=1)  # stops before any step
    assert not done
    _, _ = train_image_family(_tiny_cfg(), state, save_every=1)
    resumed, done = train_image_family(_tiny_cfg(), state)  # already finished: loads the state only
    assert done and resumed.meta["steps_done"] == 8
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(SculptError, match="other settings"):
        train_image_family(_tiny_cfg(lr=5e-4), state)


def test_family_checkpoint_round_trip_and_fingerprints(tmp_path):
    family, _ = train_image_family(_tiny_cfg())
    path = family.save(tmp_path / "fam.pt")
    back = ImageFamily.load(path)
    assert back.sets == ["m1", "m2"] and back.size == 7
    x = torch.rand(2, 3, 7, 7, dtype=torch.float64)
    assert torch.allclose(back.model("m2").score(x, 0.3), family.model("m2").score(x, 0.3))
    assert back.model("m1").fingerprint() != back.model("m2").fingerprint()
    assert back.model("m1").fingerprint() == family.model("m1").fingerprint()
    with pytest.raises(SculptError, match="no base"):
        back.model("mn1")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SculptError):
        ImageFamily.load(tmp_path / "bad.pt")


# ----- SuperDiff AND for m models -------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3, 4])
def test_and_weights_keep_every_tracked_density_equal(m):
    gen = torch.Generator().manual_seed(m)
    n, d, g, dt = 50, 12, 3.0, 0.01
    s = torch.randn(n, m, d, dtype=torch.float64, generator=gen)
    log_q = torch.randn(n, m, dtype=torch.float64, generator=gen) * 0.01
    z = torch.randn(n, d, dtype=torch.float64, generator=gen)
    kappa = and_weights(s, log_q, g, dt, z)
    assert torch.allclose(kappa.sum(1), torch.ones(n, dtype=torch.float64), atol=1e-8)
    dx = g * g * dt * (kappa[..., None] * s).sum(1) + g * math.sqrt(dt) * z
    after = log_q + (dx[:, None, :] * s).sum(-1) - 0.5 * g * g * dt * (s ** 2).sum(-1)
    assert float((after - after[:, :1]).abs().max()) < 1e-7


# ----- exact image sampling: atom bases --------------------------------------------------------------------
class AtomBase:
    """A base uniform over a few atom images: p_t = mean_a N(a, σ(t)² I), score in closed form."""

    def __init__(self, name: str, atoms: torch.Tensor) -> None:
        self.name = name
        self.weights = base_table(name)  # over ATOMS
        self.atoms = atoms  # [20, 3, 2, 2]
        self.sde = SDE
        self.shape = tuple(atoms.shape[1:])

    def log_prob_atoms(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """log w_a + log N(x; a, σ² I) ``[N, 20]``."""
        var = float(SDE.marginal_std(t)) ** 2
        d2 = ((x.flatten(1)[:, None, :] - self.atoms.flatten(1)[None]) ** 2).sum(-1)
        return self.weights.log()[None] - 0.5 * d2 / var

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        var = float(SDE.marginal_std(t)) ** 2
        r = torch.softmax(self.log_prob_atoms(x, t), 1)  # responsibilities
        mean = (r[:, :, None] * self.atoms.flatten(1)[None]).sum(1)
        return ((mean - x.flatten(1)) / var).reshape(x.shape)


class AtomPosterior:
    """The exact label posterior of the augmented model over atom bases (``compose.LabelPosterior``)."""

    def __init__(self, bases: list[AtomBase], composition) -> None:
        self.bases = bases
        self.labels = composition.labels
        p = torch.stack([b.weights for b in bases])  # [m, 20]
        self.p_y = p / p.sum(0, keepdim=True).clamp_min(1e-300)  # p(y = i | atom)

    def _log_terms(self, x, t):
        var = float(SDE.marginal_std(t)) ** 2
        mix = torch.stack([b.weights for b in self.bases]).mean(0)
        d2 = ((x.flatten(1)[:, None, :] - self.bases[0].atoms.flatten(1)[None]) ** 2).sum(-1)
        return mix.clamp_min(1e-300).log()[None] - 0.5 * d2 / var  # log p_mix(atom, x_t) + const

    def weights_and_grad(self, x, t):
        with torch.enable_grad():  # the sampler runs under no_grad
            xg = x.detach().clone().requires_grad_(True)
            log_a = self._log_terms(xg, t)
            log_post = log_a - torch.logsumexp(log_a, 1, keepdim=True)  # p(atom | x_t)
            log_w = torch.logsumexp(log_post[:, None, :] + self.p_y.clamp_min(1e-300).log()[None], 2)  # Q(y1 = i | x_t)
            lik = sum(self.p_y[y - 1].clamp_min(1e-300).log() for y in self.labels)
            value = torch.logsumexp(log_post + lik[None], 1)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        return log_w.detach(), grad


@pytest.fixture(scope="module")
def atoms():
    gen = torch.Generator().manual_seed(3)
    return 2.0 * torch.randn(len(ATOMS), 3, 2, 2, dtype=torch.float64, generator=gen)  # well separated at t = ε


@pytest.mark.parametrize("sets,labels", [(("m1", "m2"), (1, 2)), (("m1", "m2"), (1, 1)),
                                         (("mn1", "mn2", "mn3"), (1, 2, 3)), (("mn2", "mn3"), (1, 1))])
def test_exact_guidance_on_images_reproduces_the_ideal_composition(atoms, sets, labels):
    """The composed score (Σ Q(y1 = i | x_t) s_i + ∇ log Q(y | x_t)) run backwards from the composition's own
    law at t = 1 (atoms of the ideal table + σ(1) noise, so only the reverse dynamics are tested) must hit the
    atoms with the ideal composition's frequencies (L1 within sampling error)."""
    bases = [AtomBase(s, atoms) for s in sets]
    comp = A.conditioning(labels, len(sets))
    field = GuidedField(bases, AtomPosterior(bases, comp), 1.0)
    ideal = ideal_composition(list(sets), comp)
    want = torch.zeros(len(ATOMS), dtype=torch.float64)
    for key, v in ideal.items():
        c, d = key.split()
        want[ATOMS.index((c, int(d)))] = v
    n = 2000
    gen = make_generator(0, "cpu")
    start = atoms[torch.multinomial(want, n, replacement=True, generator=gen)]
    x1 = start + SDE.prior_std * torch.randn(start.shape, dtype=torch.float64, generator=gen)
    x = reverse_sample(field, x1, 100, "em", SDE, gen)
    nearest = ((x.flatten(1)[:, None, :] - atoms.flatten(1)[None]) ** 2).sum(-1).argmin(1)
    freq = torch.bincount(nearest, minlength=len(ATOMS)).double() / n
    assert float((freq - want).abs().sum()) < 0.05, (ideal, freq)
    # the same dynamics from the reference prior: close, not exact (the prior is not the composition's law at t = 1)
    if len(sets) == 2 and labels == (1, 2):
        x = reverse_sample(field, SDE.prior_sample(n, gen, "cpu", bases[0].shape), 100, "em", SDE, gen)
        nearest = ((x.flatten(1)[:, None, :] - atoms.flatten(1)[None]) ** 2).sum(-1).argmin(1)
        assert float((torch.bincount(nearest, minlength=len(ATOMS)).double() / n - want).abs().sum()) < 0.1


def test_ideal_compositions_and_expected_sets():
    assert ideal_composition(["m1", "m2"], A.conditioning((1, 2), 2)) == {"green 0": 1.0}
    contrast = ideal_composition(["m1", "m2"], A.conditioning((1, 1), 2))
    assert contrast == pytest.approx({"red 0": 2 / 3, "green 0": 1 / 3}, abs=1e-6)
    assert expected_set(contrast) == [("red", 0)]
    assert expected_set(ideal_composition(["m1", "m2"], A.conditioning((2, 2), 2))) == [("green", 1)]
    assert ideal_composition(["mn1", "mn2", "mn3"], A.conditioning((1, 2, 3), 3)) == {"green 0": 1.0}
    assert set(ideal_composition(["mn1"], A.mixture([1.0]), 1, "base")) == {f"green {d}" for d in range(4)}
    # every shipped set holds green 0, so every label composition of them has mass: the HM of MN1 and MN2 is
    # green {0, 1}, each half (the support intersection with equal ideal weights)
    assert ideal_composition(["mn1", "mn2"], A.conditioning((1, 2), 2)) == pytest.approx({"green 0": 0.5, "green 1": 0.5})


# ----- the judge ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_judge() -> Judge:
    return train_judge(16, epochs=3)


def test_judge_reads_held_out_colored_digits(quick_judge):
    assert quick_judge.meta["held_out_accuracy"] > 0.85  # 3 epochs; the shipped judge trains 20
    gen = torch.Generator().manual_seed(1)
    x = ColoredSampler("mn2", 16, split="held").sample(200, gen)
    out = fractions(quick_judge.judge(x), DATASETS["mn2"].pairs)
    assert out["fraction"] > 0.85 and out["n"] == 200
    gray, labels = digits(16)
    _, held = split_indices()
    yellow = colorize(gray[held[:10]], torch.zeros(10, dtype=torch.long))
    yellow[:, 1] = yellow[:, 0]  # both channels: neither red nor green
    verdict = quick_judge.judge(yellow)
    assert set(verdict["color"]) == {"mixed"}
    blank = quick_judge.judge(torch.zeros(2, 3, 16, 16))
    assert blank["color"] == ["blank", "blank"] and blank["digit"] == [-1, -1]
    with pytest.raises(SculptError, match="judge reads"):
        quick_judge.judge(torch.zeros(2, 3, 28, 28))


def test_grouped_scores_equal_one_base_at_a_time():
    from sculpt_core.domains.diffusion.compose import all_scores

    family, _ = train_image_family(_tiny_cfg())
    models = [family.model("m1"), family.model("m2")]
    x = torch.rand(5, 3, 7, 7, dtype=torch.float64)
    for got, m in zip(all_scores(models, x, 0.2), models):
        assert torch.allclose(got, m.score(x, 0.2), atol=1e-6) and got.dtype == torch.float64
    assert float((all_scores(models, x, 0.2)[0] - all_scores(models, x, 0.2)[1]).abs().max()) > 0  # set index matters
