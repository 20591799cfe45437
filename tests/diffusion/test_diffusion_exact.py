"""The exact 2-D diffusion core: closed-form mixture scores, diffused marginals, per-bin targets, the exact
composed score by quadrature, the oracle sampler at the noise floor on invented specs, score-sum's bias,
spec validation and the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers import PAIR, TILT, TRIO
from sculpt_core.cli import main
from sculpt_core.core import algebra as A
from sculpt_core.core.labels import observed_log_prob, terminal_joint
from sculpt_core.domains.diffusion.compose import ExactScoreModel
from sculpt_core.domains.diffusion.exact import ExactComposition, bases_log_prob, gmm_log_prob, gmm_score
from sculpt_core.domains.diffusion.metrics import evaluate, noise_floor
from sculpt_core.domains.diffusion.sampling import sample_method
from sculpt_core.domains.diffusion.sde import SDE
from sculpt_core.domains.diffusion.spec import BUILTIN_SPECS, load_spec, spec_from_dict
from sculpt_core.errors import SculptError

# Invented specs (not the built-ins): full and isotropic covariances, unequal weights, overlapping supports.


@pytest.fixture(scope="module")
def specs():
    return [spec_from_dict(TILT, "tilt"), spec_from_dict(TRIO, "trio"), spec_from_dict(PAIR, "pair")]


# ----- closed-form mixtures ----------------------------------------------------------------------
@pytest.mark.parametrize("var", [0.0, 0.01, 1.0, 90.0])
def test_gmm_score_equals_autograd_of_log_density(specs, var):
    x = (torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_()
    for g in specs:
        auto, = torch.autograd.grad(gmm_log_prob(g, x, var).sum(), x)
        assert torch.allclose(gmm_score(g, x.detach(), var), auto, rtol=1e-10, atol=1e-12)


def test_gmm_density_integrates_to_one_and_sde_formulas(specs):
    h = 0.02
    g = torch.arange(-8, 8, h, dtype=torch.float64) + h / 2
    pts = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    for s in specs:
        assert abs(float(gmm_log_prob(s, pts, 0.04).exp().sum()) * h * h - 1) < 1e-6
    # σ(t)² = ∫_0^t g(s)² ds, and the prior at t = 1 is N(0, σ(1)² I)
    for t in (0.001, 0.1, 0.5, 1.0):
        s = torch.linspace(0, t, 20001, dtype=torch.float64)
        assert abs(torch.trapz(SDE.diffusion(s) ** 2, s).item() - SDE.marginal_std(t) ** 2) < 1e-6 * max(1, SDE.marginal_std(t) ** 2)
    assert abs(SDE.prior_std - math.sqrt(624 / (2 * math.log(25)))) < 1e-12


@pytest.mark.parametrize("t", [0.05, 0.4])
def test_diffused_marginal_matches_monte_carlo_noising(specs, t):
    """x_0 ~ spec, x_t = x_0 + σ(t) ε: the histogram matches the closed-form marginal Σ_k π_k N(μ_k, Σ_k + σ² I)."""
    gen = torch.Generator().manual_seed(3)
    spec = specs[0]
    sigma = SDE.marginal_std(t)
    n = 200_000
    xt = spec.sample(n, gen) + sigma * torch.randn(n, 2, dtype=torch.float64, generator=gen)
    extent, bins = 4.0, 20
    edges = np.linspace(-extent, extent, bins + 1)
    counts, _, _ = np.histogram2d(xt[:, 0].numpy(), xt[:, 1].numpy(), bins=[edges, edges])
    sub = 10  # midpoint rule, 10×10 points per bin
    h = 2 * extent / (bins * sub)
    c = torch.arange(-extent + h / 2, extent, h, dtype=torch.float64)
    dens = gmm_log_prob(spec, torch.stack(torch.meshgrid(c, c, indexing="ij"), -1), sigma ** 2).exp() * h * h
    mass = dens.reshape(bins, sub, bins, sub).sum((1, 3)).numpy()
    l1 = np.abs(counts / n - mass).sum()
    assert l1 < 1.5 * noise_floor(mass / mass.sum(), n) + 0.003


# ----- the exact composed target -----------------------------------------------------------------
COMPOSITIONS = {
    "harmonic_mean": (A.harmonic_mean(), 2),
    "contrast_0.3": (A.contrast(alpha=0.3), 2),
    "y123": (A.conditioning((1, 2, 3), 3), 3),
    "mixture": (A.mixture([1.0, 2.0, 1.0]), 3),
}


def test_bin_masses_sum_to_one_and_match_fine_quadrature(specs):
    ec = ExactComposition(specs[:2], A.contrast(alpha=0.3))
    q, info = ec.bin_masses(3.5, 40)
    assert q.shape == (40, 40) and q.dtype == np.float64 and abs(q.sum() - 1) < 1e-12
    assert info["quadrature_error"] < 1e-8 and 0.99 < info["mass_in_square"] <= 1.0
    sub = 16  # independent check: midpoint rule, 16×16 points per bin (error O(h²) ≈ 1e-5)
    h = 7.0 / (40 * sub)
    c = torch.arange(-3.5 + h / 2, 3.5, h, dtype=torch.float64)
    lq = ec.log_target_unnorm(torch.stack(torch.meshgrid(c, c, indexing="ij"), -1))
    m = torch.exp(lq - lq.max()).reshape(40, sub, 40, sub).sum((1, 3)).numpy()
    assert np.abs(q - m / m.sum()).sum() < 1e-4
    # ix bins the first coordinate: the marginal over iy equals the first coordinate's marginal
    assert np.allclose(q.sum(1), (m / m.sum()).sum(1), atol=1e-5)


@pytest.mark.parametrize("key", ["harmonic_mean", "contrast_0.3", "y123"])
def test_label_joint_is_the_target_and_the_core_label_algebra(specs, key):
    comp, m = COMPOSITIONS[key]
    ec = ExactComposition(specs[:m], comp)
    x = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 1.5
    diff = ec.log_joint(x) - ec.log_target_unnorm(x)
    assert float(diff.max() - diff.min()) < 1e-10  # same law up to a constant
    lp = bases_log_prob(ec.bases, x) + ec.log_c[:, None]
    post = (lp - torch.logsumexp(lp, 0)).T
    joint = terminal_joint(post, len(comp.labels), comp.alpha)
    ref = torch.logsumexp(lp, 0) + observed_log_prob(joint, comp.labels)
    assert torch.allclose(ec.log_joint(x), ref, atol=1e-10)


def _brute_force(ec: ExactComposition, x: torch.Tensor, sigma: float, window: bool = True, finer: float = 4.0):
    """log q_t and its score by a log-space sum over a grid ``finer``× finer than the one ``exact.py`` uses,
    on the window x ± 9σ (``window``: valid where q varies slowly against the kernel) or the whole box."""
    h = min(sigma, ec.s_feat) / (2 * finer)
    logs, scores = [], []
    for xi in x:
        g = [torch.arange(max(lo, float(c) - 9 * sigma), min(hi, float(c) + 9 * sigma) + h, h, dtype=torch.float64)
             if window else torch.arange(lo, hi + h, h, dtype=torch.float64) for (lo, hi), c in zip(ec.box, xi)]
        pts = torch.stack(torch.meshgrid(*g, indexing="ij"), -1)
        lk = ec.log_joint(pts) + 2 * math.log(h) - ((pts - xi) ** 2).sum(-1) / (2 * sigma ** 2)
        tot = torch.logsumexp(lk.flatten(), 0)
        logs.append(tot - math.log(2 * math.pi * sigma ** 2))
        scores.append(((pts - xi) * torch.exp(lk - tot)[..., None]).sum((0, 1)) / sigma ** 2)
    return torch.stack(logs), torch.stack(scores)


@pytest.mark.parametrize("t", [1e-3, 0.02, 0.3, 1.0])
def test_exact_composed_score_matches_brute_force_quadrature(specs, t):
    ec = ExactComposition(specs[:2], A.contrast(alpha=0.3))
    sigma = SDE.marginal_std(t)
    x = ec.sample_diffused(12, sigma, torch.Generator().manual_seed(5))
    log_q, score = ec.diffused(x, sigma)
    ref_log, ref_score = _brute_force(ec, x, sigma)
    assert torch.allclose(log_q, ref_log, atol=1e-6)
    assert ((score - ref_score).norm(dim=1) / (1 + ref_score.norm(dim=1))).max() < 1e-6


def test_far_particles_at_small_noise_use_the_log_space_sum(specs):
    """A particle far from all mass at σ_ε underflows the shifted sums; the log-space redo is still exact
    (there the posterior of x_0 sits far from x_t: q falls faster than the kernel)."""
    narrow = [spec_from_dict({"weights": [1], "means": [[0.0, 0.0]], "stds": [0.05]}),
              spec_from_dict({"weights": [1], "means": [[0.3, 0.0]], "stds": [1.0]})]
    ec = ExactComposition(narrow, A.harmonic_mean())
    sigma = SDE.marginal_std(SDE.t_eps)
    x = torch.tensor([[2.0, 2.0], [-2.5, 1.5], [0.05, 0.02]], dtype=torch.float64)
    log_q, score = ec.diffused(x, sigma)
    assert ec.log_space_rows == 2
    ref_log, ref_score = _brute_force(ec, x, sigma, window=False, finer=2.0)
    assert bool(torch.isfinite(score).all()) and torch.allclose(log_q, ref_log, atol=1e-6)
    assert ((score - ref_score).norm(dim=1) / (1 + ref_score.norm(dim=1))).max() < 1e-6


def test_label_posterior_gradient_and_mixture_weights(specs):
    ec = ExactComposition(specs, A.conditioning((1, 2, 3), 3))
    sigma = SDE.marginal_std(0.1)
    x = ec.sample_diffused(40, sigma, torch.Generator().manual_seed(6))
    log_q = ec.log_label_posterior(x, sigma)
    assert bool((log_q < 0).all())
    eps = 1e-5
    fd = torch.stack([(ec.log_label_posterior(x + eps * e, sigma) - ec.log_label_posterior(x - eps * e, sigma)) / (2 * eps)
                      for e in torch.eye(2, dtype=torch.float64)], 1)
    assert torch.allclose(ec.grad_log_label_posterior(x, sigma), fd, atol=1e-5, rtol=1e-5)
    w = ec.mixture_log_weights(x, sigma).exp()
    assert torch.allclose(w.sum(1), torch.ones(40, dtype=torch.float64))
    # composed score = Σ_i Q(y1 = i | x_t) s_i + ∇ log Q(y | x_t)
    models = [ExactScoreModel(s) for s in ec.bases]
    mix = sum(w[:, i, None] * m.score(x, 0.1) for i, m in enumerate(models))
    assert torch.allclose(mix + ec.grad_log_label_posterior(x, sigma), ec.score(x, sigma), atol=1e-10)
    # at t = 1 the posterior is nearly the prior p̃(y) = ∫ p̃(x_0, y) dx_0
    h = 0.02
    g = [torch.arange(lo, hi, h, dtype=torch.float64) + h / 2 for lo, hi in ec.box]
    p_y = float(ec.log_joint(torch.stack(torch.meshgrid(*g, indexing="ij"), -1)).exp().sum()) * h * h
    q1 = ec.log_label_posterior(ec.sample_diffused(200, SDE.prior_std), SDE.prior_std).exp()
    assert abs(float(q1.mean()) - p_y) < 0.1 * p_y


# ----- samplers ---------------------------------------------------------------------------------
N, STEPS = 3000, 100  # the full-size figure (n = 20000, 500 steps) is bench/diffusion_2d.py


@pytest.mark.parametrize("key", list(COMPOSITIONS))
def test_oracle_sampler_reaches_the_noise_floor(specs, key):
    comp, m = COMPOSITIONS[key]
    x, ec = sample_method(specs[:m], comp, "oracle", N, STEPS, "em", seed=11, device="cpu")
    fig = evaluate(x, ec, 3.5, 40, emd_repeats=1, emd_points=1000)
    assert fig["l1"] <= 1.25 * fig["l1_floor"] + 0.02, fig
    assert fig["frac_outside"] <= fig["target_outside"] + 0.005


def test_score_sum_misses_the_harmonic_mean(specs):
    comp, _ = COMPOSITIONS["harmonic_mean"]
    x, ec = sample_method(specs[:2], comp, "score-sum", N, STEPS, "em", seed=11, device="cpu")
    fig = evaluate(x, ec, 3.5, 40, emd_repeats=1, emd_points=1000)
    assert fig["l1"] > 1.25 * fig["l1_floor"] + 0.1, fig


@pytest.mark.parametrize("sampler", ["pc", "ode"])
def test_pc_and_ode_samplers_reach_the_mixture(specs, sampler):
    x, ec = sample_method(specs[1:], A.mixture([1.0, 3.0]), "oracle", 3000, 300, sampler, seed=2, device="cpu")
    fig = evaluate(x, ec, 3.5, 30, emd_repeats=1, emd_points=500)
    assert fig["l1"] <= 1.3 * fig["l1_floor"] + 0.03, fig


def test_superdiff_or_samples_the_mixture(specs):
    x, ec = sample_method(specs[1:], A.mixture([1.0, 3.0]), "superdiff", N, STEPS, "em", seed=3, device="cpu")
    fig = evaluate(x, ec, 3.5, 40, emd_repeats=1, emd_points=500)
    assert fig["l1"] <= 1.25 * fig["l1_floor"] + 0.02, fig


def test_superdiff_and_keeps_the_tracked_densities_equal(specs):
    from sculpt_core.domains.diffusion.compose import ExactLabelPosterior, build_field
    from sculpt_core.domains.diffusion.sampling import reverse_sample

    models = [ExactScoreModel(s) for s in specs[:2]]
    field = build_field("superdiff", models, A.harmonic_mean())
    gen = torch.Generator().manual_seed(0)
    x1 = SDE.prior_sample(500, gen)
    x = reverse_sample(field, x1, 200, "em", generator=gen)
    gap = (models[0].log_prob(x, SDE.t_eps) - models[1].log_prob(x, SDE.t_eps)).abs()
    assert float(gap.median()) < 0.5
    with pytest.raises(SculptError, match="Euler"):
        reverse_sample(field, x1, 10, "pc")
    with pytest.raises(SculptError, match="superdiff composes"):
        build_field("superdiff", models, A.contrast(), ExactLabelPosterior(ExactComposition(specs[:2], A.contrast())))


@pytest.mark.parametrize("sigma", [0.5, 3.0, SDE.prior_std])
def test_diffused_draws_have_the_diffused_targets_moments(specs, sigma):
    """sample_diffused (coarser cells at large σ) has the mean and covariance of the exact draws plus σ² I."""
    exact = ExactComposition(specs[:2], A.contrast(alpha=0.3))
    gen = torch.Generator().manual_seed(3)
    n = 200_000
    x0 = exact.sample(n, gen)
    xt = exact.sample_diffused(n, sigma, gen)
    mean0, cov0 = x0.mean(0), torch.cov(x0.T)
    se = math.sqrt((cov0.diagonal().max() + sigma ** 2) / n)
    assert torch.allclose(xt.mean(0), mean0, atol=5 * se)
    cov_t = torch.cov(xt.T) - sigma ** 2 * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(cov_t, cov0, atol=6 * math.sqrt(2 / n) * (cov0.diagonal().max() + sigma ** 2))


def test_samples_are_seeded(specs):
    a, _ = sample_method(specs[:2], A.harmonic_mean(), "score-sum", 50, 20, seed=5, device="cpu")
    b, _ = sample_method(specs[:2], A.harmonic_mean(), "score-sum", 50, 20, seed=5, device="cpu")
    c, _ = sample_method(specs[:2], A.harmonic_mean(), "score-sum", 50, 20, seed=6, device="cpu")
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == torch.float64 and a.shape == (50, 2)


# ----- specs ------------------------------------------------------------------------------------
def test_builtin_specs():
    ring = load_spec("ring")
    assert ring.n_components == 8 and torch.allclose(ring.means.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    assert torch.allclose(ring.covs, 0.09 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2))
    band = load_spec("band")
    assert band.means.tolist() == [[-2, 0], [0, 0], [2, 0]] and abs(band.std_range()[0] - 0.5) < 1e-12
    assert set(BUILTIN_SPECS) >= {"ring", "band", "column"}
    w = spec_from_dict({"weights": [1, 3], "means": [[0, 0], [1, 1]], "stds": [1, 1]}).weights
    assert w.tolist() == [0.25, 0.75]


@pytest.mark.parametrize("data, message", [
    ({"weights": [1, 1], "means": [[0, 0], [1, 1]], "covs": [[[1, 2], [2, 1]], [[1, 0], [0, 1]]]}, "not positive definite"),
    ({"weights": [1, -1], "means": [[0, 0], [1, 1]], "stds": [1, 1]}, "non-negative"),
    ({"weights": [0, 0], "means": [[0, 0], [1, 1]], "stds": [1, 1]}, "positive sum"),
    ({"weights": [1, float("nan")], "means": [[0, 0], [1, 1]], "stds": [1, 1]}, "finite"),
    ({"weights": [1, 1], "means": [[0, 0], [1, float("inf")]], "stds": [1, 1]}, "finite"),
    ({"weights": [1, 1], "means": [[0, 0, 0], [1, 1, 1]], "stds": [1, 1]}, "means must be one point"),
    ({"weights": [1, 1], "means": [[0, 0]], "stds": [1, 1]}, "means must be one point"),
    ({"weights": [1, 1], "means": [[0, 0], [1, 1]], "stds": [1]}, "stds must be 2 numbers"),
    ({"weights": [1], "means": [[0, 0]], "covs": [[1, 0], [0, 1]]}, "2×2 matrices"),
    ({"weights": [1], "means": [[0, 0]], "stds": [0]}, "positive"),
    ({"weights": [1], "means": [[0, 0]], "stds": [1], "covs": [[[1, 0], [0, 1]]]}, "exactly one of"),
    ({"weights": [1], "means": [[0, 0]]}, "exactly one of"),
    ({"means": [[0, 0]], "stds": [1]}, "lacks weights"),
    ({"weights": [1], "means": [[0, 0]], "covs": [[[1, 0.5], [0.1, 1]]]}, "symmetric"),
    ({"weights": [1], "means": [[0, 0]], "stds": [0.001]}, "standard deviations"),
    ({"weights": [1], "means": [[50, 0]], "stds": [1]}, "within"),
    ({"weights": "abc", "means": [[0, 0]], "stds": [1]}, "numbers"),
    ([1, 2], "JSON object"),
])
def test_bad_specs_give_clear_errors(data, message):
    with pytest.raises(SculptError, match=message):
        spec_from_dict(data, "bad")


# ----- command line -----------------------------------------------------------------------------
def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_density_and_sample_round_trip(tmp_path, capsys):
    (tmp_path / "tilt.json").write_text(json.dumps(TILT))
    (tmp_path / "trio.json").write_text(json.dumps(TRIO))
    bases = f"{tmp_path / 'tilt.json'},{tmp_path / 'trio.json'}"
    code, out, _ = _cli(["diffusion", "density", "--bases", bases, "--y", "1,1", "--alpha", "0.3", "--extent", "3",
                         "--bins", "30", "--out", str(tmp_path / "q.npy")], capsys)
    assert code == 0
    rec = json.loads(out)
    q = np.load(tmp_path / "q.npy")
    assert q.shape == (30, 30) and q.dtype == np.float64 and abs(q.sum() - 1) < 1e-12 and rec["shape"] == [30, 30]
    assert rec["bases"] == ["tilt", "trio"] and rec["quadrature_error"] < 1e-6
    ec = ExactComposition([spec_from_dict(TILT), spec_from_dict(TRIO)], A.contrast(alpha=0.3))
    assert np.allclose(q, ec.bin_masses(3.0, 30)[0], atol=1e-14)

    code, out, _ = _cli(["diffusion", "sample", "--bases", f"ring,{tmp_path / 'trio.json'}", "--weights", "1,2",
                         "--method", "oracle", "--n", "300", "--steps", "30", "--seed", "1",
                         "--out", str(tmp_path / "x.npy")], capsys)
    assert code == 0
    rec = json.loads(out)
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (300, 2) and x.dtype == np.float64
    for key in ("l1", "l1_floor", "frac_outside", "emd", "emd_floor", "target_outside", "method", "composition"):
        assert key in rec
    code, out, _ = _cli(["diffusion", "specs"], capsys)
    assert code == 0 and "ring" in json.loads(out)["specs"]


@pytest.mark.parametrize("extra, message", [
    (["--bases", "ring,nope", "--y", "1,2"], "unknown diffusion base"),
    (["--bases", "BAD", "--y", "1,2"], "not positive definite"),
    (["--bases", "ring,band", "--y", "1,3"], "labels must be model indices"),
    (["--bases", "ring,band,column", "--y", "1,2", "--alpha", "0.3"], "two models and two labels"),
    (["--bases", "ring,band", "--y", "1,2", "--weights", "1,1"], "exactly one of"),
    (["--bases", "ring,band", "--weights", "1,-1"], "non-negative"),
    (["--bases", "ring,band", "--y", "1,2", "--n", "0"], "n must be"),
    (["--bases", "ring,band", "--y", "1,2", "--steps", "0"], "steps must be"),
    (["--bases", "ring,band", "--y", "1,2", "--gamma", "0"], "--gamma"),
    (["--bases", "ring,band", "--y", "1,2", "--gamma", "-1"], "--gamma"),
    (["--bases", "ring,band", "--y", "1,1", "--method", "superdiff"], "superdiff composes"),
    (["--bases", "ring,band", "--y", "1,2", "--method", "magic"], "unknown method"),
    (["--bases", "ring,band", "--y", "1,2", "--sampler", "rk9"], "unknown sampler"),
    (["--bases", "ring,band", "--y", "1,2", "--method", "base", "--model", "3"], "--model"),
    (["--bases", "ring,band", "--y", "1,2", "--extent", "-1"], "--extent"),
    (["--bases", "ring,band", "--y", "1,2", "--bins", "401"], "--bins must be in 1..400"),
    (["--bases", "ring", "--weights", "1,1"], "defined for 2 models, 1 chosen"),
    (["--bases", "ring,band", "--y", "1,2", "--seed", str(2 ** 70)], "--seed must be at most"),
])
def test_cli_bad_input_exits_2_with_one_error_line(tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = {"weights": [1], "means": [[0, 0]], "covs": [[[1, 2], [2, 1]]]}
    (tmp_path / "BAD").write_text(json.dumps(bad))
    (tmp_path / "x.npy").write_bytes(b"keep")
    code, out, err = _cli(["diffusion", "sample", *extra, "--n", "50", "--steps", "5", "--out", "x.npy"]
                          if "--n" not in extra and "--steps" not in extra else
                          ["diffusion", "sample", *extra, "--out", "x.npy"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error:") and message in lines[-1]
    assert [ln for ln in lines if ln.startswith("error:")] == [lines[-1]]
    assert (tmp_path / "x.npy").read_bytes() == b"keep"  # nothing written on failure
