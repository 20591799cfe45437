import math

import pytest
import torch

from sculpt_core.core import algebra as A
from sculpt_core.errors import SculptError


def rand_logp(m, n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, n, generator=g, dtype=torch.float64) * 2
    return x - torch.logsumexp(x, 1, keepdim=True)


def test_formulas_match_the_paper():
    lp = rand_logp(3)
    p = lp.exp()
    def norm(q):
        return q / q.sum()
    checks = [
        (A.harmonic_mean(), norm(p[0] * p[1] / (p[0] + p[1])), 2),
        (A.contrast(), norm(p[0] ** 2 / (p[0] + p[1])), 2),
        (A.reverse_contrast(), norm(p[1] ** 2 / (p[0] + p[1])), 2),
        (A.harmonic_mean(0.2), norm(p[0] * p[1] / (0.2 * p[0] + 0.8 * p[1])), 2),
        (A.contrast(0.05), norm(p[0] ** 2 / (0.05 * p[0] + 0.95 * p[1])), 2),
        (A.conditioning((1, 2, 3), 3), norm(p[0] * p[1] * p[2] / (p.sum(0)) ** 2), 3),
        (A.conditioning((1, 2), 3), norm(p[0] * p[1] / p.sum(0)), 3),
        (A.conditioning((1, 1, 1), 3), norm(p[0] ** 3 / p.sum(0) ** 2), 3),
        (A.chained_harmonic_mean(3), norm(p[0] * p[1] * p[2] / (p[0] * p[1] + p[0] * p[2] + p[1] * p[2])), 3),
        (A.mixture([1, 3]), norm(p[0] + 3 * p[1]), 2),
    ]
    for comp, expected, m in checks:
        assert torch.allclose(comp.log_target(lp[:m]).exp(), expected, atol=1e-12), comp.describe()
    log_z = torch.tensor([0.5, -1.0], dtype=torch.float64)
    lin = A.linear([0.3, 0.7]).log_target(lp[:2], log_z).exp()
    assert torch.allclose(lin, norm(0.3 * math.exp(0.5) * p[0] + 0.7 * math.exp(-1.0) * p[1]), atol=1e-12)
    beta = A.harmonic_mean(beta=2.0).log_target(lp[:2]).exp()
    assert torch.allclose(beta, norm((p[0] * p[1] / (p[0] + p[1])) ** 2), atol=1e-12)


def test_identities():
    lp = rand_logp(3, seed=1)
    hm = A.harmonic_mean().log_target(lp[:2])
    assert torch.allclose(hm, A.harmonic_mean().log_target(lp[[1, 0]]), atol=1e-12)  # ⊗ commutes
    assert not torch.allclose(A.contrast().log_target(lp[:2]), A.contrast().log_target(lp[[1, 0]]))  # ◑ does not
    assert torch.allclose(A.contrast().log_target(lp[[1, 0]]), A.reverse_contrast().log_target(lp[:2]), atol=1e-12)
    # eq. 8 associativity: (p1 ⊗ p2) ⊗ p3 ∝ p1 ⊗ (p2 ⊗ p3) ∝ chained HM, as unnormalised 1/Σ1/p
    def hm_unnorm(a, b):
        return -torch.logaddexp(-a, -b)
    left = hm_unnorm(hm_unnorm(lp[0], lp[1]), lp[2])
    right = hm_unnorm(lp[0], hm_unnorm(lp[1], lp[2]))
    chained = A.chained_harmonic_mean(3).log_target(lp)
    for x in (left, right):
        assert torch.allclose(x - torch.logsumexp(x, 0), chained, atol=1e-12)
    # y=(1,2,3) is NOT the chained harmonic mean
    assert not torch.allclose(A.conditioning((1, 2, 3), 3).log_target(lp), chained, atol=1e-3)
    # α = 0.5 is the unparameterised operator; α → 0 / 1 recovers p1 / p2
    assert torch.allclose(A.harmonic_mean(0.5).log_target(lp[:2]), hm, atol=1e-12)
    assert torch.allclose(A.harmonic_mean(1e-9).log_target(lp[:2]).exp(), lp[0].exp(), atol=1e-6)
    assert torch.allclose(A.harmonic_mean(1 - 1e-9).log_target(lp[:2]).exp(), lp[1].exp(), atol=1e-6)
    # y=(2,1) with α gives the same law as (1,2)
    assert torch.allclose(A.conditioning((2, 1), 2, 0.3).log_target(lp[:2]), A.conditioning((1, 2), 2, 0.3).log_target(lp[:2]))


@pytest.mark.parametrize("build, message", [
    (lambda: A.harmonic_mean(alpha=1.0), "strictly between 0 and 1"),
    (lambda: A.contrast(alpha=-0.2), "strictly between 0 and 1"),
    (lambda: A.contrast(alpha=float("nan")), "strictly between 0 and 1"),
    (lambda: A.conditioning((1, 4), 3), "1..3"),
    (lambda: A.conditioning((1, 2), 3, alpha=0.3), "two models"),
    (lambda: A.conditioning((), 2), "at least one"),
    (lambda: A.linear([1.0, float("nan")]), "finite"),
    (lambda: A.linear([-1.0, 2.0]), "non-negative"),
    (lambda: A.mixture([0.0, 0.0]), "positive sum"),
    (lambda: A.harmonic_mean(beta=0), "β"),
    (lambda: A.chained_harmonic_mean(1), "two models"),
])
def test_invalid_compositions_raise_clear_errors(build, message):
    with pytest.raises(SculptError, match=message):
        build()


def test_disjoint_support_is_an_error_not_a_nan():
    lp = torch.full((2, 4), float("-inf"), dtype=torch.float64)
    lp[0, :2] = math.log(0.5)
    lp[1, 2:] = math.log(0.5)
    with pytest.raises(SculptError, match="disjoint support"):
        A.harmonic_mean().log_target(lp)
    assert torch.isfinite(A.contrast().log_target(lp)[:2]).all()  # contrast is fine: p1 where p2 = 0
    with pytest.raises(SculptError, match="expects 3 models"):
        A.conditioning((1, 2, 3), 3).log_target(lp)


def test_printing_shows_the_formula():
    assert str(A.harmonic_mean()) == "p1 ⊗ p2 ∝ p1 · p2 / (p1 + p2)"
    assert "0.05·p1 + 0.95·p2" in A.contrast(0.05).formula()
    assert A.conditioning((1, 2, 3), 3).formula() == "∝ p1 · p2 · p3 / (p1 + p2 + p3)^2"
    assert "Z1" in A.linear([1, 2]).formula()
