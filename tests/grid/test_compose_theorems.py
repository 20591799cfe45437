"""The theorems, exactly (dynamic programming on small grids with arbitrary base policies)."""

import pytest
import torch

from sculpt_core.core import algebra as A
from sculpt_core.domains.grid.compose import compose, prepare_bases, reaching_policy
from sculpt_core.core.guidance import guided_log_policy
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.exact import log_terminal
from sculpt_core.core.metrics import l1_distance

from helpers import random_model


ALL_2 = [A.harmonic_mean(), A.contrast(), A.reverse_contrast()] + [
    op(a) for op in (A.harmonic_mean, A.contrast, A.reverse_contrast) for a in (0.05, 0.5, 0.95)
] + [A.chained_harmonic_mean(2), A.linear([0.2, 0.8]), A.mixture([2, 1]), A.harmonic_mean(beta=1.7)]
ALL_3 = [A.conditioning(y, 3) for y in [(1, 2), (2, 3), (1, 3), (1, 2, 3), (1, 1), (2, 2), (3, 3), (1, 1, 1), (2, 2, 2), (3, 3, 3)]] + [
    A.chained_harmonic_mean(3), A.linear([1, 2, 3]), A.mixture(n_models=3)]


@pytest.mark.parametrize("comp", ALL_2, ids=lambda c: c.describe())
def test_oracle_guidance_reproduces_every_binary_operator(bases2, comp):
    res = compose(bases2, comp, "oracle")
    assert abs(res.p.sum() - 1) < 1e-9
    assert res.l1 < 1e-9


@pytest.mark.parametrize("comp", ALL_3, ids=lambda c: c.describe())
def test_oracle_guidance_reproduces_every_three_model_operator(bases3, comp):
    assert compose(bases3, comp, "oracle").l1 < 1e-9


def test_mixture_policy_with_exact_posterior_is_the_mixture(bases3):
    """Prop. 5.1: p_M,F(s'|s) = Σ_i p(y=i|s) p_i,F(s'|s), p(y=i|s) ∝ ω_i u_i(s), reproduces Σ ω_i p_i."""
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    log_post = w.log()[:, None] + bases3.log_u
    log_post = log_post - torch.logsumexp(log_post, 0)
    zeros = torch.zeros(bases3.env.n_states, dtype=torch.float64)
    log_pf = guided_log_policy(bases3.log_pf, log_post.T, zeros, torch.zeros_like(bases3.log_pf[0]))
    p = log_terminal(bases3.env, log_pf).exp()
    assert l1_distance(p, (w[:, None] * bases3.log_p.exp()).sum(0)) < 1e-12
    # and with uniform (wrong) weights it is NOT the mixture: the posterior matters
    log_pf_bad = guided_log_policy(bases3.log_pf, torch.log(w).expand(bases3.env.n_states, 3), zeros, torch.zeros_like(bases3.log_pf[0]))
    assert l1_distance(log_terminal(bases3.env, log_pf_bad).exp(), (w[:, None] * bases3.log_p.exp()).sum(0)) > 1e-3


@pytest.mark.parametrize("weights", [[1, 1], [0.1, 0.9], [3, 1, 2], [1, 0, 5], [0.5, 2, 1, 1, 4]])
def test_reaching_is_exact_for_linear_scalarisation_and_delta_is_constant(weights):
    models = [random_model(8, seed=30 + i, name=f"m{i}") for i in range(len(weights))]
    for i, mod in enumerate(models):  # give each model its own Z_i
        mod.net.log_z_param.data.fill_(0.7 * i - 1.0)
    bases = prepare_bases(models)
    res = compose(bases, A.linear(weights), "reaching")
    assert res.l1 < 1e-10
    c = torch.tensor(weights, dtype=torch.float64) * bases.log_z.exp()
    assert l1_distance(res.p.reshape(-1), (c[:, None] * bases.log_p.exp()).sum(0) / c.sum()) < 1e-10
    delta = torch.from_numpy(res.delta)
    assert torch.allclose(delta, torch.full_like(delta, 1 / c.sum().item()), rtol=1e-9)
    # the ensemble baseline (u_i = 1) is not exact
    assert compose(bases, A.linear(weights), "ensemble").l1 > 1e-3 or sum(w > 0 for w in weights) == 1


def test_reaching_distortion_formula_holds_for_nonlinear_operators(bases2):
    """p_M(x) = δ(x) · G(p_1(x), p_2(x)) with δ = u_M / N_M, exactly."""
    comp = A.harmonic_mean()
    res = compose(bases2, comp, "reaching")
    g = comp.log_combine(bases2.log_p).exp().reshape(res.p.shape).numpy()
    assert abs((res.delta * g - res.p)).max() < 1e-12
    assert res.delta.std() / res.delta.mean() > 1e-3  # not constant for the harmonic mean


def test_flow_u_equals_exact_u_for_balanced_models(bases2):
    """With a state flow equal to the policy's own flow, "Model F" reaching equals exact reaching. The bases are
    evaluated afresh (the module's ``bases2`` is shared by other tests and must not change)."""
    bases = prepare_bases(bases2.models)
    untrained = compose(bases, A.harmonic_mean(), "reaching", u_source="flow")
    for t in bases.tables:
        t.log_flow = t.exact_log_u(bases.env) + 2.5
    a = compose(bases, A.harmonic_mean(), "reaching", u_source="flow")
    b = compose(bases, A.harmonic_mean(), "reaching", u_source="exact")
    assert l1_distance(a.p, b.p) < 1e-12
    assert l1_distance(untrained.p, b.p) > 1e-3  # the random flow head is not the policy's flow: the u source matters
    assert all(not torch.equal(t.log_flow, u.log_flow) for t, u in zip(bases.tables, bases2.tables))


def test_trajectory_product_u_matches_exact_for_a_balanced_model():
    """For a model whose p_B is the true backward policy of its p_F (TB-optimal), Σ log p_F - log p_B along any
    path equals log u(s) exactly, so trajectory-product reaching samples the exact-u composition."""
    models = [random_model(6, seed=s) for s in (1, 2)]
    bases = prepare_bases(models)
    env = bases.env
    for t in bases.tables:  # replace p_B by the exact backward policy of p_F: p_B(s|s') = u(s) p_F(s'|s) / u(s')
        log_u = t.exact_log_u(env)
        for d in range(env.ndim):
            parent = env.all_states().clone()
            parent[:, d] -= 1
            ok = parent[:, d] >= 0
            pidx = env.flat_index(parent.clamp(min=0))
            t.log_pb[:, d] = torch.where(ok, log_u[pidx] + t.log_pf[pidx, d] - log_u, torch.tensor(float("-inf"), dtype=torch.float64))
    comp = A.linear([1.0, 2.0])
    sampled = compose(bases, comp, "reaching", u_source="trajectory", n_samples=60000, seed=3)
    exact = compose(bases, comp, "reaching", u_source="exact")
    assert sampled.sampled and l1_distance(sampled.p, exact.p) < 0.05


def test_methods_report_clear_errors(bases2, bases3):
    with pytest.raises(SculptError, match="defined for 3 models"):
        compose(bases2, A.conditioning((1, 2, 3), 3), "oracle")
    with pytest.raises(SculptError, match="no classifier"):
        compose(bases2, A.harmonic_mean(), "classifier")
    with pytest.raises(SculptError, match="unknown method"):
        compose(bases2, A.harmonic_mean(), "magic")
    with pytest.raises(SculptError, match="different grids"):
        prepare_bases([random_model(6), random_model(7)])
