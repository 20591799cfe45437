"""The generic exact DP (core ``ExactSpace``) against the grid's anti-diagonal DP, the generic oracle and exact
reaching on both, a hand-made space where several actions lead to the same child, the shared method checks,
and the domain classes against the core protocols."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import random_model, tiny_fragment_env
from sculpt_core.core import algebra as A
from sculpt_core.core import protocols as P
from sculpt_core.core.exact import ExactSpace, exact_log_target, exact_reaching_log_policy, oracle_log_policy
from sculpt_core.core.methods import METHOD_NAMES, ClassifierGuidance, check_classifier_compat, dispatch
from sculpt_core.domains.grid.compose import compose, oracle_policy, prepare_bases
from sculpt_core.domains.grid.exact import (GridSpace, backward_expectation, generic_grid_space, log_reaching,
                                            log_terminal)
from sculpt_core.errors import SculptError

TOL = 1e-12


@pytest.fixture(scope="module")
def bases():
    return prepare_bases([random_model(8, seed=s) for s in (3, 4, 5)])


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(torch.isfinite(a), torch.isfinite(b))
    fin = torch.isfinite(a)
    assert float((a[fin] - b[fin]).abs().max()) < TOL


def test_generic_dp_matches_grid_dp(bases):
    env = bases.env
    generic = generic_grid_space(env)
    for log_pf in bases.log_pf:
        _close(generic.log_reaching(log_pf), log_reaching(env, log_pf))
        _close(generic.log_terminal(log_pf), log_terminal(env, log_pf))
        value = torch.randn(env.n_states, 3, 2, dtype=torch.float64)  # trailing dims are carried through
        _close(generic.backward_expectation(log_pf, value), backward_expectation(env, log_pf, value))
    assert abs(float(generic.log_terminal(bases.log_pf[0]).exp().sum()) - 1) < TOL


@pytest.mark.parametrize("comp", [A.conditioning((1, 2, 3), 3), A.conditioning((1, 1, 2), 3), A.chained_harmonic_mean(3),
                                  A.linear([1.0, 2.0, 0.5]), A.mixture([1.0, 1.0, 3.0])], ids=str)
def test_generic_oracle_and_reaching_match_grid(bases, comp):
    env = bases.env
    generic, fast = generic_grid_space(env), GridSpace(env)
    oracle = oracle_log_policy(generic, bases.log_pf, comp, bases.log_z)
    _close(oracle, oracle_log_policy(fast, bases.log_pf, comp, bases.log_z))
    _close(oracle, oracle_policy(bases, comp))
    # the oracle is exact: its terminal law is the target
    target = exact_log_target(generic, bases.log_pf, comp, bases.log_z).exp()
    assert float((generic.log_terminal(oracle).exp() - target).abs().sum()) < 1e-12
    for ensemble in (False, True):
        g_pol, g_norm = exact_reaching_log_policy(generic, bases.log_pf, comp, bases.log_z, ensemble)
        f_pol, f_norm = exact_reaching_log_policy(fast, bases.log_pf, comp, bases.log_z, ensemble)
        _close(g_pol, f_pol)
        _close(g_norm, f_norm)
    if comp.kind in ("linear", "mixture"):  # reaching with exact u is exact for these
        res = compose(bases, comp, "reaching")
        assert res.l1 < 1e-12


def test_child_values_and_duplicate_children():
    # s0 -a0-> s1, s0 -a1-> s1 (two actions, one child), s0 -a2-> s2; s1 -a0-> s2; stop = action 3
    child = torch.tensor([[1, 1, 2, -1], [2, -1, -1, -1], [-1, -1, -1, -1]])
    space = ExactSpace(child, [torch.tensor([0]), torch.tensor([1]), torch.tensor([2])],
                       torch.tensor([False, True, True]), 3)
    p = torch.tensor([[0.2, 0.3, 0.5, 0.0], [0.4, 0.0, 0.0, 0.6], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    log_pf = p.log()
    u = space.log_reaching(log_pf).exp()
    assert torch.allclose(u, torch.tensor([1.0, 0.5, 0.5 + 0.5 * 0.4], dtype=torch.float64), atol=1e-15)
    term = space.log_terminal(log_pf).exp()
    assert torch.allclose(term, torch.tensor([0.0, 0.3, 0.7], dtype=torch.float64), atol=1e-15)
    v = torch.tensor([0.0, 2.0, 5.0], dtype=torch.float64).log()
    expect = space.backward_expectation(log_pf, v).exp()
    assert math.isclose(float(expect[0]), 0.3 * 2 + 0.7 * 5, rel_tol=1e-14)
    vals = space.child_values(v, torch.zeros(3, dtype=torch.float64))
    assert vals[0, :3].exp().tolist() == pytest.approx([2.0, 2.0, 5.0]) and vals[1, 1] == float("-inf")
    assert vals[:, 3].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(SculptError, match="policy table must have shape"):
        space.log_reaching(log_pf[:, :2])


class _Cfg:
    def __init__(self, n_models=2, n_labels=2, alpha_cond=False):
        self.n_models, self.n_labels, self.alpha_cond = n_models, n_labels, alpha_cond


@pytest.mark.parametrize("cfg,comp,match", [
    (_Cfg(3), A.harmonic_mean(), "trained for 3 base models, 2 chosen"),
    (_Cfg(), A.chained_harmonic_mean(2), "chained harmonic mean"),
    (_Cfg(), A.harmonic_mean(beta=2.0), "β = 1"),
    (_Cfg(), A.conditioning((1, 2, 2), 2), "knows 2 labels"),
    (_Cfg(), A.harmonic_mean(alpha=0.3), "not α-conditioned"),
    (_Cfg(), A.conditioning((1, 2, 3), 3), "defined for 3 models, 2 chosen"),
])
def test_one_set_of_classifier_rules(cfg, comp, match):
    with pytest.raises(SculptError, match=match):
        check_classifier_compat(cfg, 2, comp)
    check_classifier_compat(_Cfg(alpha_cond=True), 2, A.harmonic_mean(alpha=0.3))  # fine when α-conditioned


def test_guidance_prior_reweights_mixtures():
    guide = ClassifierGuidance.of(A.mixture([1.0, 3.0]), _Cfg())
    assert not guide.guided and guide.logit_alpha is None
    log_w = guide.mixture_weights(torch.log(torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)))
    assert torch.allclose(log_w.exp(), torch.tensor([[0.25, 0.75], [0.2 / 2.6, 2.4 / 2.6]], dtype=torch.float64))
    alpha = ClassifierGuidance.of(A.harmonic_mean(alpha=0.2), _Cfg(alpha_cond=True))
    assert alpha.guided and alpha.alpha == 0.2 and math.isclose(alpha.logit_alpha, math.log(0.25))


def test_dispatch_validates_and_routes():
    calls = []
    builders = {"base": lambda: "b", "classifier": lambda c: ("c", c), "reaching": lambda u: ("r", u),
                "ensemble": lambda: "e"}
    hm = A.harmonic_mean()
    assert dispatch("reaching", builders, 2, hm, u_source="flow", u_sources=("flow",)) == ("r", "flow")
    assert dispatch("classifier", builders, 2, hm, classifier=7) == ("c", 7)
    assert dispatch("base", builders, 1, None) == "b"
    for method, n, comp, kw, match in [("magic", 2, hm, {}, "unknown method"),
                                       ("reaching", 2, hm, {"u_source": "x", "u_sources": ("flow",)}, "unknown u source"),
                                       ("base", 2, None, {}, "ONE base model"), ("ensemble", 2, None, {}, "needs a composition"),
                                       ("ensemble", 3, hm, {}, "defined for 2 models, 3 chosen"),
                                       ("classifier", 2, hm, {}, "no classifier")]:
        with pytest.raises(SculptError, match=match):
            dispatch(method, builders, n, comp, **kw)
    with pytest.raises(SculptError, match="no such composition method"):
        dispatch("x", {"x": lambda: calls}, 1, None)
    assert set(builders) <= set(METHOD_NAMES)


def test_domain_classes_implement_the_protocols(bases):
    from sculpt_core.core.reaching import TrajectoryProductPolicy
    from sculpt_core.domains.grid.classifier import GridClassifier, GridClassifierConfig
    from sculpt_core.domains.grid.sampling import TablePolicy

    env = bases.env
    assert isinstance(env, P.Env) and isinstance(env, P.HasParentCounts)
    assert isinstance(TablePolicy(env, bases.log_pf[0]), P.Policy)
    assert isinstance(TrajectoryProductPolicy(A.harmonic_mean(), [], []), P.Policy)
    assert isinstance(bases.models[0], P.TabulatedBaseModel) and isinstance(bases.tables[0], P.PolicyTables)
    clf = GridClassifier(GridClassifierConfig(height=8))
    assert isinstance(clf, P.Classifier) and isinstance(clf.cfg, P.ClassifierConfig)
    assert isinstance(GridSpace(env), ExactSpace)


def test_molecule_classes_implement_the_protocols():
    from sculpt_core.domains.molecules.classifier import MolClassifier, MolClassifierConfig
    from sculpt_core.domains.molecules.model import MolBaseModel

    env = tiny_fragment_env()
    model = MolBaseModel.create(env, hidden=16, n_layers=2)
    assert isinstance(env, P.Env) and isinstance(env, P.HasParentCounts)
    assert isinstance(model, P.BatchedBaseModel) and isinstance(model.policy(1.0), P.Policy)
    clf = MolClassifier(MolClassifierConfig(n_frags=3, max_frags=3, hidden=16, n_layers=1), env)
    assert isinstance(clf, P.ActionHeadClassifier) and isinstance(clf.cfg, P.ClassifierConfig)
