"""Composition on fragment molecules: composed samplers over :class:`MolBaseModel` s at a fixed β.

Every method returns a molecule *policy* (``start / log_probs / advance``, ``env``) that
:func:`~sculpt_core.domains.molecules.sampling.sample_molecules` samples by Gumbel-max over valid actions.
Method names, u sources and classifier compatibility are validated by :mod:`sculpt_core.core.methods`; this
module supplies what is molecular:

- ``base``: one model (:meth:`MolBaseModel.policy`);
- ``reaching``: Routing-by-Reaching mixing (:func:`~sculpt_core.core.reaching.reaching_log_policy`) with u_i from
  the learned state flow, log u_i(s) = log F_i(s) − log F_i(s0) ("Model F"; F_i(s0) is the flow's own partition
  function, so u_i(s0) = 1 exactly), or from the running product of p_iF/p_iB along the generated trajectory
  ("DB F", :class:`MolTrajectoryProductPolicy`);
- ``ensemble``: the same mixing with u_i = 1;
- ``classifier``: classifier guidance (:func:`~sculpt_core.core.guidance.guided_log_policy`): the mixture
  Σ_i Q(y1=i|s) p_iF(a|s) with the y1-marginal at the CURRENT state (not at the successor), or the classifier's own
  mixture weights log P(i | s) when it has them (a mixture head, trained by the "chain" objective, or the exact ones), times Q(y|s'_a)/Q(y|s); the Stop column uses
  the terminal classifier (stopping yields the complete object, which only the terminal head scores).
  Q(y|s'_a) comes from
  ``scoring="exact"``: every successor graph built and scored in chunked batched forwards, or
  ``scoring="fast"``: the classifier's action head, Q(y | s, a) for every action from s's own embedding, or
  ``scoring="topk"``: the action head first, then the ``top_k`` most probable moves of that guided policy are
  re-scored exactly (their successor graphs built and scored); the rest keep the head's values.
  The current-state value Q(y|s) is the non-terminal head at s in both modes (it only sets the mixture
  weights: the per-state constant log Q(y|s) cancels in the renormalisation over valid actions).

All formulas of the compositions come from :class:`~sculpt_core.core.algebra.Composition`.

For tiny libraries (:func:`~sculpt_core.domains.molecules.exact.enumerate_states`), :class:`SpaceDP` gives exact
composed distributions, exact reaching probabilities and the exact label posterior (by backward DP):
the ground truth the tests and the fast-head accuracy figures use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.core.guidance import guided_log_policy
from sculpt_core.core.methods import ClassifierGuidance, check_classifier_compat, check_models, dispatch
from sculpt_core.core.reaching import TrajectoryProductPolicy, reaching_log_policy
from sculpt_core.domains.molecules.env import FragmentEnv, FragState
from sculpt_core.domains.molecules.model import MolBaseModel
from sculpt_core.errors import SculptError

METHODS = ("base", "classifier", "reaching", "ensemble")
U_SOURCES = ("flow", "trajectory")
#: u_i(s) of molecule reaching when none is chosen: the p_F/p_B product along the trajectory ("DB F"). It needs no
#: fitted flow head: a base trained by ``mol train`` has only its detailed-balance head, 19-34 nats off on the
#: shipped bases before their refit. With flow heads refitted by ``mol fit-flow`` (the shipped bases) "flow" is the
#: better choice at β = 32 (Table 1 row (d) 65.9% vs 50.9% all high, pair rows within 3 points), the trajectory
#: product at β = 48 (README, "Learned flows").
DEFAULT_U_SOURCE = "trajectory"
SCORINGS = ("fast", "exact", "topk")


def models_without_flow(models: Sequence[MolBaseModel]) -> list[str]:
    """Names of the models that carry no learned state flow (``meta["has_flow"]`` False)."""
    return [mod.name for mod in models if mod.meta.get("has_flow") is False]


def flow_fit_note(models: Sequence[MolBaseModel], beta: float) -> str | None:
    """None when every model's flow head was refitted to its reaching probabilities (``mol fit-flow``, recorded
    in ``meta["flow_fit"]["betas"]``) over a β range covering ``beta``; otherwise the sentence saying which heads
    are not and what to do (a detailed-balance head next to an imbalanced policy can be tens of nats off)."""
    off = []
    for mod in models:
        fit = mod.meta.get("flow_fit")
        betas = fit.get("betas") if isinstance(fit, dict) else None
        if not betas:
            off.append(f"{mod.name} (flow head not refitted)")
        elif not min(betas) - 1e-9 <= float(beta) <= max(betas) + 1e-9:
            off.append(f"{mod.name} (refitted for β in [{min(betas):g}, {max(betas):g}])")
    if not off:
        return None
    return ("the learned flows may be far from the reaching probabilities for " + ", ".join(off) + "; use the "
            "trajectory product (u = trajectory) or refit them with `python -m sculpt_core mol fit-flow`")


# ----- the base models at one β -------------------------------------------------------------------------------
@dataclass
class MolBases:
    """Base models evaluated at a fixed β: what every composed sampler shares.

    ``log_z[i]``: learned log Z_i(β) (TB head; used by linear scalarisation); ``log_f0[i]``: learned log F_i(s0)
    (the flow head's own partition function, used to normalise u_i)."""

    models: list[MolBaseModel]
    beta: float
    log_z: torch.Tensor
    log_f0: torch.Tensor

    @property
    def env(self) -> FragmentEnv:
        return self.models[0].env

    @property
    def m(self) -> int:
        return len(self.models)

    @torch.no_grad()
    def log_pf(self, states: Sequence[FragState]) -> torch.Tensor:
        """Masked, normalised forward log-probs of every model ``[m, B, A]`` (float64, −inf = invalid)."""
        return torch.stack([_renorm(mod.log_pf(states, self.beta)) for mod in self.models])

    @torch.no_grad()
    def log_pf_and_u(self, states: Sequence[FragState]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_F ``[m, B, A]``, learned log u_i(s) = log F_i(s) − log F_i(s0) ``[m, B]``), one pass per model."""
        pf, u = [], []
        for mod, f0 in zip(self.models, self.log_f0):
            lp, lf = mod.log_pf_and_flow(states, self.beta)
            pf.append(_renorm(lp))
            u.append(lf.double().cpu() - f0)
        return torch.stack(pf), torch.stack(u)

    @torch.no_grad()
    def log_flow_marginals(self, molecules: Sequence[FragState]) -> torch.Tensor:
        """log p_i(x) = log u_i(x) + log p_iF(⊤ | x) from each model's learned state flow ``[m, B]`` (needs every
        model's flow head; SculptError for a state that cannot stop)."""
        missing = models_without_flow(self.models)
        if missing:
            raise SculptError(f"no learned state flow in {', '.join(missing)}: the flow posterior needs one")
        log_pf, log_u = self.log_pf_and_u(molecules)
        log_px = self.log_stop_marginals(log_pf, log_u)
        if not torch.isfinite(log_px).all():
            raise SculptError("some molecule cannot stop here (not a complete state of this environment)")
        return log_px

    def log_stop_marginals(self, log_pf: torch.Tensor, log_u: torch.Tensor) -> torch.Tensor:
        """log p_i(s) = log u_i(s) + log p_iF(⊤ | s) ``[m, B]`` from :meth:`log_pf_and_u`'s outputs (−inf where s
        cannot stop)."""
        return log_u + log_pf[:, :, self.env.stop_action]

    def log_terminal_posterior(self, molecules: Sequence[FragState], offsets: torch.Tensor | None = None
                               ) -> torch.Tensor:
        """log P(y = i | x) = log p_i(x) − log Σ_j p_j(x) ``[B, m]`` (uniform prior over the models) from
        :meth:`log_flow_marginals`, each model's log p_i shifted by ``offsets[i]`` (a per-model calibration,
        :func:`~sculpt_core.domains.molecules.marginals.flow_offsets`): the terminal label posterior of any
        molecule, whoever generated it."""
        return self.posterior_from_marginals(self.log_flow_marginals(molecules), offsets)

    @staticmethod
    def posterior_from_marginals(log_px: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """log P(y = i | x) ``[B, m]`` from log p_i(x) ``[m, B]`` shifted by the per-model ``offsets``."""
        if offsets is not None:
            log_px = log_px + torch.as_tensor(offsets, dtype=log_px.dtype).reshape(-1, 1)
        return torch.log_softmax(log_px.T, 1)


def _renorm(log_pf: torch.Tensor) -> torch.Tensor:
    """float64 on the CPU, renormalised (float32 log-softmax sums to 1 only within ~1e-7; the exactness of
    linear reaching rests on Σ_a p_iF(a|s) = 1)."""
    return torch.log_softmax(log_pf.detach().double().cpu(), -1)


@torch.no_grad()
def prepare_mol_bases(models: Sequence[MolBaseModel], beta: float) -> MolBases:
    """Check that the models share one environment and cover β; evaluate log Z_i(β) and log F_i(s0)."""
    models = list(models)
    if not models:
        raise SculptError("choose at least one base model")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta)):
        raise SculptError(f"β must be a finite number, got {beta!r}")
    env = models[0].env
    for mod in models[1:]:
        if mod.env.library.smiles != env.library.smiles or mod.env.max_frags != env.max_frags:
            raise SculptError(f"models {models[0].name!r} and {mod.name!r} use different fragment libraries or "
                              "maximal sizes, so their actions do not line up")
    for mod in models:
        mod.betas(beta, 1)  # SculptError outside the trained range
    log_z = torch.stack([mod.log_z(float(beta)).double().cpu() for mod in models])
    s0 = env.initial_states(1)
    log_f0 = torch.stack([mod.log_flow(s0, float(beta))[0].double().cpu() for mod in models])
    return MolBases(models, float(beta), log_z, log_f0)


# ----- reaching / ensemble ----------------------------------------------------------------------------------------
@dataclass
class ReachingPolicy:
    """Reaching mixing with u_i from the learned flows (``ensemble=True``: u_i = 1). Stateless."""

    bases: MolBases
    composition: Composition
    ensemble: bool = False

    @property
    def env(self) -> FragmentEnv:
        return self.bases.env

    def start(self, n: int) -> None:
        return None

    def log_probs(self, states: Sequence[FragState], carry: Any = None) -> torch.Tensor:
        if self.ensemble:
            log_pf = self.bases.log_pf(states)
            log_u = torch.zeros(log_pf.shape[:2], dtype=torch.float64)
        else:
            log_pf, log_u = self.bases.log_pf_and_u(states)
        return reaching_log_policy(self.composition, log_pf, log_u, self.bases.log_z)[0]

    def advance(self, carry: Any, states: Sequence[FragState], actions: torch.Tensor,
                next_states: Sequence[FragState]) -> None:
        return None


class MolTrajectoryProductPolicy(TrajectoryProductPolicy):
    """:class:`TrajectoryProductPolicy` on fragment graphs ("DB F"): states are lists of graphs, the base
    policies are renormalised over valid actions, and a step is a move iff its action is not Stop."""

    def __init__(self, composition: Composition, forward_fns: list, backward_fns: list, log_z: torch.Tensor | None,
                 env: FragmentEnv) -> None:
        super().__init__(composition, forward_fns, backward_fns, log_z)
        self.env = env

    def forward_log_probs(self, states: Sequence[FragState]) -> torch.Tensor:
        return torch.stack([_renorm(f(states)).cpu() for f in self.forward_fns])

    def moved(self, states: Sequence[FragState], actions: torch.Tensor, next_states: Sequence[FragState]
              ) -> torch.Tensor:
        return actions.reshape(-1).cpu() != self.env.stop_action


def trajectory_policy(bases: MolBases, composition: Composition) -> MolTrajectoryProductPolicy:
    """Reaching mixing with u_i from each model's own p_F / p_B product along the generated trajectory."""
    check_models(bases.m, composition)
    fwd = [mod.forward_fn(bases.beta) for mod in bases.models]
    bwd = [mod.backward_fn() for mod in bases.models]
    return MolTrajectoryProductPolicy(composition, fwd, bwd, bases.log_z, bases.env)


# ----- classifier guidance ----------------------------------------------------------------------------------------
def check_classifier(bases: MolBases, composition: Composition, classifier: Any, scoring: str) -> None:
    """SculptError unless ``classifier`` can guide ``composition`` over ``bases`` with ``scoring``."""
    check_models(bases.m, composition)
    if scoring not in SCORINGS:
        raise SculptError(f"unknown scoring {scoring!r}; one of {', '.join(SCORINGS)}")
    check_classifier_compat(classifier.cfg, bases.m, composition, fallback=("reaching",))
    env = getattr(classifier, "env", None)
    if env is not None and (env.library.smiles != bases.env.library.smiles or env.max_frags != bases.env.max_frags):
        raise SculptError("the classifier was trained on another fragment library than these base models")
    if scoring in ("fast", "topk") and not bool(getattr(classifier.cfg, "action_head", True)):
        raise SculptError(f"this classifier has no action head: use scoring='exact', not {scoring!r}")


def _successors(env: FragmentEnv, states: Sequence[FragState], mask: torch.Tensor
                ) -> tuple[list[FragState], torch.Tensor, torch.Tensor]:
    """Every valid non-stop successor: (states ``[S]``, row ``[S]``, action ``[S]``)."""
    moves = mask.clone()
    moves[:, env.stop_action] = False
    rows, acts = torch.nonzero(moves, as_tuple=True)
    succ = env.step([states[r] for r in rows.tolist()], acts)
    return succ, rows, acts


@dataclass
class GuidedPolicy:
    """Classifier guidance (Thm 5.3) for a label, mixture or linear composition. Stateless.

    ``classifier`` is a :class:`~sculpt_core.domains.molecules.classifier.MolClassifier` or anything with the same
    ``cfg`` / ``log_q_nonterminal`` / ``log_q_terminal_single`` (/ ``embed_states`` + ``action_values`` for
    ``scoring="fast"``) methods, e.g. :class:`ExactClassifier`. ``chunk``: successor graphs per forward pass;
    ``top_k``: moves per state re-scored exactly with ``scoring="topk"``."""

    bases: MolBases
    composition: Composition
    classifier: Any
    scoring: str = "fast"
    chunk: int = 8192
    top_k: int = 64
    stats: dict = field(default_factory=lambda: {"successors": 0, "states": 0})

    def __post_init__(self) -> None:
        check_classifier(self.bases, self.composition, self.classifier, self.scoring)
        self._guide = ClassifierGuidance.of(self.composition, self.classifier.cfg, self.bases.log_z)
        self._guided = self._guide.guided
        self._logit_alpha = self._guide.logit_alpha

    @property
    def env(self) -> FragmentEnv:
        return self.bases.env

    def start(self, n: int) -> None:
        return None

    def advance(self, carry: Any, states: Sequence[FragState], actions: torch.Tensor,
                next_states: Sequence[FragState]) -> None:
        return None

    def _observed(self, joint: torch.Tensor) -> torch.Tensor:
        return self._guide.observed(joint)

    @torch.no_grad()
    def guidance(self, states: Sequence[FragState]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log mixture weights ``[B, m]``, log Q(y|s) ``[B]``, log Q(y|s'_a) ``[B, A]`` with the Stop column
        from the terminal classifier). Mixtures/linear: weights reweighted by the prior, no guidance terms."""
        clf, env = self.classifier, self.env
        B = len(states)
        self.stats["states"] += B
        need_children = self._guided
        emb = None
        if need_children and self.scoring in ("fast", "topk"):
            emb = clf.embed_states(states, self._logit_alpha, False)
            log_qn = clf.joint_from_embedding(emb).double().cpu()
            children = clf.action_values(emb, self._observed).double().cpu()
        else:
            log_qn = clf.log_q_nonterminal(states, self._logit_alpha).double().cpu()
            children = None
        own = self._own_mixture_weights(states, emb)
        log_y1 = own.double().cpu() if own is not None else self._guide.y1_marginal(log_qn)  # [B, m]
        log_w = self._guide.mixture_weights(log_y1)
        if not self._guided:
            zeros = torch.zeros(B, dtype=torch.float64)
            return log_w, zeros, torch.zeros(B, env.n_actions, dtype=torch.float64)
        log_v = self._observed(log_qn)
        mask = env.forward_mask(states).cpu()
        if children is None:
            children = torch.full((B, env.n_actions), float("-inf"), dtype=torch.float64)
            succ, rows, acts = _successors(env, states, mask)
            self._score_into(children, succ, rows, acts)
        stop_ok = mask[:, env.stop_action]
        stop = torch.full((B,), float("-inf"), dtype=torch.float64)
        if stop_ok.any():
            done = [s for s, ok in zip(states, stop_ok.tolist()) if ok]
            log_qt = clf.log_q_terminal_single(done).double().cpu()
            stop[stop_ok] = self._guide.stop_values(log_qt)
        children[:, env.stop_action] = stop
        return log_w, log_v, children

    def _own_mixture_weights(self, states: Sequence[FragState], emb: Any) -> torch.Tensor | None:
        """The classifier's own log P(i | s) (a mixture head, or the exact weights), else None."""
        clf = self.classifier
        if emb is not None and hasattr(clf, "mixture_from_embedding"):
            return clf.mixture_from_embedding(emb)
        weights = getattr(clf, "log_mixture_weights", None)
        return weights(states, self._logit_alpha) if weights is not None else None

    def _score_into(self, children: torch.Tensor, succ: list[FragState], rows: torch.Tensor, acts: torch.Tensor
                    ) -> None:
        """children[rows, acts] = log Q(y | s'), every successor graph scored by the non-terminal head."""
        self.stats["successors"] += len(succ)
        for lo in range(0, len(succ), self.chunk):
            part = succ[lo:lo + self.chunk]
            vals = self._observed(self.classifier.log_q_nonterminal(part, self._logit_alpha)).double().cpu()
            children[rows[lo:lo + self.chunk], acts[lo:lo + self.chunk]] = vals

    def _rescore_top(self, states: Sequence[FragState], log_pf: torch.Tensor, log_w: torch.Tensor,
                     log_v: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
        """The ``top_k`` most probable moves of the head-guided policy, re-scored exactly (Stop is exact already)."""
        env = self.env
        draft = guided_log_policy(log_pf, log_w, log_v, children)
        draft[:, env.stop_action] = float("-inf")
        vals, idx = draft.topk(min(int(self.top_k), draft.shape[1]), dim=1)
        keep = torch.isfinite(vals)
        rows = torch.arange(len(states)).unsqueeze(1).expand_as(idx)[keep]
        acts = idx[keep]
        children = children.clone()
        if len(rows):
            succ = env.step([states[r] for r in rows.tolist()], acts)
            self._score_into(children, succ, rows, acts)
        return children

    @torch.no_grad()
    def log_probs(self, states: Sequence[FragState], carry: Any = None) -> torch.Tensor:
        log_w, log_v, children = self.guidance(states)
        log_pf = self.bases.log_pf(states)
        if self.scoring == "topk" and self._guided:
            children = self._rescore_top(states, log_pf, log_w, log_v, children)
        return guided_log_policy(log_pf, log_w, log_v, children)


# ----- one entry point ----------------------------------------------------------------------------------------------
def composed_policy(
    bases: MolBases,
    composition: Composition | None,
    method: str,
    classifier: Any = None,
    u_source: str = DEFAULT_U_SOURCE,
    scoring: str = "fast",
    top_k: int = 64,
):
    """The molecule policy of ``method`` ∈ :data:`METHODS` for ``composition`` over ``bases``."""

    def reaching(u: str):
        if u == "flow":
            missing = models_without_flow(bases.models)
            if missing:
                raise SculptError(f"no learned state flow in {', '.join(missing)}: use --u trajectory")
            return ReachingPolicy(bases, composition)
        return trajectory_policy(bases, composition)

    builders = {
        "base": lambda: bases.models[0].policy(bases.beta),
        "classifier": lambda clf: GuidedPolicy(bases, composition, clf, scoring, top_k=top_k),
        "reaching": reaching,
        "ensemble": lambda: ReachingPolicy(bases, composition, ensemble=True),
    }
    return dispatch(method, builders, bases.m, composition, u_source=u_source, u_sources=U_SOURCES,
                    classifier=classifier, classifier_hint="train one with `mol train-classifier`")


__all__ = ["flow_fit_note", "GuidedPolicy", "METHODS", "MolBases", "MolTrajectoryProductPolicy", "ReachingPolicy",
           "DEFAULT_U_SOURCE", "SCORINGS", "U_SOURCES", "check_classifier", "composed_policy", "models_without_flow",
           "prepare_mol_bases", "trajectory_policy"]
