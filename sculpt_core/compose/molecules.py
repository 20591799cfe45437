"""Composition on fragment molecules: composed samplers over :class:`MolBaseModel` s at a fixed β.

Every method returns a molecule *policy* (``start / log_probs / advance``, ``env``) that
:func:`~sculpt_core.evaluate.mol_sampling.sample_molecules` samples by Gumbel-max over valid actions:

- ``base``: one model (:meth:`MolBaseModel.policy`);
- ``reaching``: Routing-by-Reaching mixing (:func:`~sculpt_core.compose.reaching.reaching_log_policy`) with u_i from
  the learned state flow, log u_i(s) = log F_i(s) − log F_i(s0) ("Model F", F_i(s0) is the flow's Z_i, so
  u_i(s0) = 1 exactly, METHOD F.3), or from the running product of p_iF/p_iB along the generated trajectory
  ("DB F", :class:`MolTrajectoryProductPolicy`);
- ``ensemble``: the same mixing with u_i = 1;
- ``classifier``: Thm 5.3 (:func:`~sculpt_core.compose.guidance.guided_log_policy`): the mixture
  Σ_i Q(y1=i|s) p_iF(a|s) with the y1-marginal at the CURRENT state (trap G.8; a classifier may instead
  provide ``log_mixture_weights``, as the exact one does), times Q(y|s'_a)/Q(y|s); the Stop column uses the
  terminal classifier (trap G.3). Q(y|s'_a) comes from
  ``scoring="exact"``: every successor graph built and scored in chunked batched forwards, or
  ``scoring="fast"``: the classifier's action head, Q(y | s, a) for every action from s's own embedding, or
  ``scoring="topk"``: the action head first, then the ``top_k`` most probable moves of that guided policy are
  re-scored exactly (their successor graphs built and scored); the rest keep the head's values.
  The current-state value Q(y|s) is the non-terminal head at s in both modes (it only sets the mixture
  weights: the per-state constant log Q(y|s) cancels in the renormalisation over valid actions, trap G.7).

All formulas of the compositions come from :class:`~sculpt_core.compose.algebra.Composition`.

For tiny libraries (:func:`~sculpt_core.envs.fragments.enumerate_states`), :class:`SpaceDP` gives exact
composed distributions, exact reaching probabilities and the exact label posterior (eq. 13 by backward DP):
the ground truth the tests and the fast-head accuracy figures use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..envs.fragments import FragmentEnv, FragState, FragStateSpace, canonical_key, enumerate_states
from ..errors import SculptError
from ..models.grid_classifier import logit, observed_log_prob, terminal_joint
from ..models.mol_model import MolBaseModel
from .algebra import Composition
from .guidance import guided_log_policy
from .reaching import TrajectoryProductPolicy, reaching_log_policy

METHODS = ("base", "classifier", "reaching", "ensemble")
U_SOURCES = ("flow", "trajectory")
#: u_i(s) of molecule reaching when none is chosen: the p_F/p_B product along the trajectory ("DB F"). On the shipped
#: β=32 models it puts more samples where the observed labels' rewards are all high than the learned state flows on
#: Table 1 rows (a)-(d) (a 95 vs 92%, b 96 vs 87%, c 92 vs 66%, d 48-54 vs 22.5%) and as many on (e)-(g); the
#: flow heads' log u is 19-34 nats off (README, "Molecules"). It also needs no flow head.
DEFAULT_U_SOURCE = "trajectory"
SCORINGS = ("fast", "exact", "topk")


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


def _check_models(bases: MolBases, composition: Composition) -> None:
    if composition.n_models != bases.m:
        raise SculptError(f"{composition.describe()} is defined for {composition.n_models} models, {bases.m} chosen")


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
    _check_models(bases, composition)
    fwd = [mod.forward_fn(bases.beta) for mod in bases.models]
    bwd = [mod.backward_fn() for mod in bases.models]
    return MolTrajectoryProductPolicy(composition, fwd, bwd, bases.log_z, bases.env)


# ----- classifier guidance ----------------------------------------------------------------------------------------
def _classifier_cfg(classifier: Any) -> tuple[int, int, bool, bool]:
    cfg = classifier.cfg
    return cfg.n_models, cfg.n_labels, bool(cfg.alpha_cond), bool(getattr(cfg, "action_head", True))


def check_classifier(bases: MolBases, composition: Composition, classifier: Any, scoring: str) -> None:
    """SculptError unless ``classifier`` can guide ``composition`` over ``bases`` with ``scoring``."""
    _check_models(bases, composition)
    n_models, n_labels, alpha_cond, has_action = _classifier_cfg(classifier)
    if scoring not in SCORINGS:
        raise SculptError(f"unknown scoring {scoring!r}; one of {', '.join(SCORINGS)}")
    if n_models != bases.m:
        raise SculptError(f"this classifier was trained for {n_models} base models, {bases.m} chosen")
    env = getattr(classifier, "env", None)
    if env is not None and (env.library.smiles != bases.env.library.smiles or env.max_frags != bases.env.max_frags):
        raise SculptError("the classifier was trained on another fragment library than these base models")
    if composition.kind == "chained_hm":
        raise SculptError("the chained harmonic mean (eq. 8) is not a label posterior, so classifier guidance "
                          "cannot express it; use the reaching method")
    if composition.kind == "labels":
        if composition.beta != 1.0:
            raise SculptError("classifier guidance samples the composition at β = 1; use reaching for a β on the result")
        if len(composition.labels) > n_labels:
            raise SculptError(f"this classifier knows {n_labels} labels, the composition observes {len(composition.labels)}")
        if composition.alpha is not None and not alpha_cond and abs(composition.alpha - 0.5) > 1e-12:
            raise SculptError("this classifier is not α-conditioned; only α = 0.5 is available")
    if scoring in ("fast", "topk") and not has_action:
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

    ``classifier`` is a :class:`~sculpt_core.models.mol_classifier.MolClassifier` or anything with the same
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
        comp = self.composition
        _, n_labels, alpha_cond, _ = _classifier_cfg(self.classifier)
        self._guided = comp.kind == "labels"
        use_alpha = comp.kind == "labels" and comp.alpha is not None and alpha_cond
        self._alpha = comp.alpha if use_alpha else None
        self._logit_alpha = logit(comp.alpha) if use_alpha else None
        self._n_labels = max(n_labels, len(comp.labels)) if comp.kind == "labels" else n_labels
        self._prior = None if self._guided else comp.prior_log_weights(self.bases.log_z)

    @property
    def env(self) -> FragmentEnv:
        return self.bases.env

    def start(self, n: int) -> None:
        return None

    def advance(self, carry: Any, states: Sequence[FragState], actions: torch.Tensor,
                next_states: Sequence[FragState]) -> None:
        return None

    def _observed(self, joint: torch.Tensor) -> torch.Tensor:
        return observed_log_prob(joint, self.composition.labels)

    @torch.no_grad()
    def guidance(self, states: Sequence[FragState]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log mixture weights ``[B, m]``, log Q(y|s) ``[B]``, log Q(y|s'_a) ``[B, A]`` with the Stop column
        from the terminal classifier). Mixtures/linear: weights reweighted by the prior, no guidance terms."""
        clf, env = self.classifier, self.env
        B = len(states)
        self.stats["states"] += B
        need_children = self._guided
        if need_children and self.scoring in ("fast", "topk"):
            emb = clf.embed_states(states, self._logit_alpha, False)
            log_qn = clf.joint_from_embedding(emb).double().cpu()
            children = clf.action_values(emb, self._observed).double().cpu()
        else:
            log_qn = clf.log_q_nonterminal(states, self._logit_alpha).double().cpu()
            children = None
        log_y1 = torch.logsumexp(log_qn.flatten(2), 2) if log_qn.dim() > 2 else log_qn  # [B, m]
        weights = getattr(clf, "log_mixture_weights", None)
        exact_w = weights(states) if weights is not None else None
        if exact_w is not None:
            log_y1 = exact_w.double().cpu()
        if not self._guided:
            log_w = log_y1 + self._prior[None, :]
            log_w = log_w - torch.logsumexp(log_w, 1, keepdim=True)
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
            stop[stop_ok] = self._observed(terminal_joint(log_qt, self._n_labels, self._alpha))
        children[:, env.stop_action] = stop
        return log_y1, log_v, children

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
    if method not in METHODS:
        raise SculptError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if method == "base":
        if bases.m != 1:
            raise SculptError(f"method 'base' samples ONE base model, got {bases.m}")
        return bases.models[0].policy(bases.beta)
    if composition is None:
        raise SculptError(f"method {method!r} needs a composition (labels y or weights)")
    _check_models(bases, composition)
    if method == "classifier":
        if classifier is None:
            raise SculptError("no classifier for these base models: train one with `mol train-classifier`")
        return GuidedPolicy(bases, composition, classifier, scoring, top_k=top_k)
    if method == "ensemble":
        return ReachingPolicy(bases, composition, ensemble=True)
    if u_source not in U_SOURCES:
        raise SculptError(f"unknown u source {u_source!r}; one of {', '.join(U_SOURCES)}")
    if u_source == "flow":
        missing = [mod.name for mod in bases.models if mod.meta.get("has_flow") is False]
        if missing:
            raise SculptError(f"no learned state flow in {', '.join(missing)}: use --u trajectory")
        return ReachingPolicy(bases, composition)
    return trajectory_policy(bases, composition)


# ----- exact dynamic programming on tiny libraries --------------------------------------------------------------------
@dataclass
class SpaceDP:
    """Exact computations over an enumerated state space (class level; valid for node-numbering-invariant
    policies, see :class:`~sculpt_core.envs.fragments.FragStateSpace`)."""

    space: FragStateSpace
    env: FragmentEnv
    child: torch.Tensor = field(init=False)  # [N, A] child class of each action on the representative (−1: none)

    @classmethod
    def build(cls, env: FragmentEnv, max_states: int = 200_000) -> "SpaceDP":
        """Enumerate the (tiny) environment and index its transitions."""
        return cls(enumerate_states(env, max_states), env)

    @property
    def n_actions(self) -> int:
        return self.env.n_actions

    def __post_init__(self) -> None:
        child = torch.full((self.space.n_states, self.n_actions), -1, dtype=torch.long)
        for k, kids in enumerate(self.space.children):
            for c, actions in kids:
                child[k, list(actions)] = c
        self.child = child

    @property
    def states(self) -> list[FragState]:
        return self.space.states

    def index_of(self, states: Sequence[FragState]) -> torch.Tensor:
        """Class index of each (labelled) state."""
        try:
            return torch.tensor([self.space.index[canonical_key(s)] for s in states], dtype=torch.long)
        except KeyError:
            raise SculptError("a state outside the enumerated space") from None

    def table(self, policy: Any, batch: int = 4096) -> torch.Tensor:
        """A stateless policy's normalised log-policy on every class representative ``[N, A]``."""
        rows = []
        for lo in range(0, self.space.n_states, batch):
            part = self.states[lo:lo + batch]
            logits = policy.log_probs(part, None).double().cpu()
            rows.append(torch.log_softmax(logits, -1))
        return torch.cat(rows)

    def log_reaching(self, log_pf: torch.Tensor) -> torch.Tensor:
        return self.space.log_reaching(log_pf)

    def log_terminal(self, log_pf: torch.Tensor) -> torch.Tensor:
        return self.space.log_terminal(log_pf)

    def backward_expectation(self, log_pf: torch.Tensor, log_value: torch.Tensor) -> torch.Tensor:
        """log E[v(x) | the trajectory passes through class k] (eq. 13): V(k) = p_F(⊤|k) v(k) +
        Σ_a p_F(a|k) V(child(k, a)). ``log_value`` ``[N, ...]`` (−inf where Stop is impossible is not required)."""
        log_pf = log_pf.double()
        extra = log_value.shape[1:]
        v = log_value.double().reshape(self.space.n_states, -1)
        stop = self.space.stop_action
        out = torch.full_like(v, float("-inf"))
        can_stop = self.space.can_stop
        for level in reversed(self.space.levels):
            idx = torch.tensor(level, dtype=torch.long)
            stop_term = torch.where(can_stop[idx, None], log_pf[idx, stop, None] + v[idx], torch.full_like(v[idx], float("-inf")))
            ch = self.child[idx]  # [L, A]
            has = ch >= 0
            vals = out[ch.clamp(min=0)] + log_pf[idx].unsqueeze(-1)  # [L, A, r]
            vals = vals.masked_fill(~has.unsqueeze(-1), float("-inf"))
            out[idx] = torch.logaddexp(stop_term, torch.logsumexp(vals, 1))
        return out.reshape((self.space.n_states,) + tuple(extra))


EXACT_KINDS = ("chain", "a1", "a1_d6")


@dataclass
class ExactClassifier:
    """Exact label posteriors on an enumerated space, in the MolClassifier interface (tests, ground truth).

    Terminal (every kind): p~(y = i | x) = p_i(x) / Σ_j p_j(x). Non-terminal joint by ``kind``:

    - ``"chain"``: Thm 5.3 made exact on a DAG. The mixture policy is the Markov chain with weights
      P(i | s) = u_i(s) / Σ_j u_j(s) (Prop 5.1, served by :meth:`log_mixture_weights`), and the joint is
      p~(y_1..y_n | s) = E_chain[Π_k p~(y_k | x) | s] by backward DP (eq. 13) over that chain. Its own
      y1-marginal is NOT P(i | s) on a DAG, hence the separate mixture weights.
    - ``"a1"``: the fixed point of Algorithm A.1 with the final graph kept as a non-terminal state (grid
      rule): P(i | s) · E_i[Π_{k≥2} p~(y_k | x) | s], the continuation under model i. Its y1-marginal is
      P(i | s), but on a DAG (several paths into a state) it is not harmonic for the mixture chain, so even a
      perfect A.1 classifier is slightly off the target; exact on trees.
    - ``"a1_d6"``: the A.1 fixed point with the molecule rule (the final graph never a non-terminal
      training state): a state's posterior is learned only from trajectories that continue past it.
    """

    dp: SpaceDP
    log_pf: torch.Tensor  # [m, N, A] base policies on the representatives
    n_labels: int = 2
    alpha_cond: bool = False
    kind: str = "chain"
    env: FragmentEnv | None = None
    cfg: Any = field(init=False)
    _cache: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EXACT_KINDS:
            raise SculptError(f"unknown exact classifier kind {self.kind!r}; one of {', '.join(EXACT_KINDS)}")
        m = self.log_pf.shape[0]
        self.log_pf = self.log_pf.double()
        self.cfg = type("Cfg", (), {"n_models": m, "n_labels": self.n_labels, "alpha_cond": self.alpha_cond,
                                    "action_head": True})()
        stop, can_stop = self.dp.space.stop_action, self.dp.space.can_stop
        self._log_u = torch.stack([self.dp.log_reaching(t) for t in self.log_pf])  # [m, N]
        log_p = (self._log_u + self.log_pf[:, :, stop]).masked_fill(~can_stop.unsqueeze(0), float("-inf"))
        self._weights = (self._log_u - torch.logsumexp(self._log_u, 0, keepdim=True)).T  # [N, m] = P(i | s)
        self._mix = torch.logsumexp(self.log_pf + self._weights.T.unsqueeze(-1), 0)  # [N, A]
        single = (log_p - torch.logsumexp(log_p, 0, keepdim=True)).T  # [N, m]
        self._single = single.masked_fill(torch.isnan(single), -math.log(m))

    def _joint_table(self, logit_alpha: float | None) -> torch.Tensor:
        key = None if (logit_alpha is None or not self.alpha_cond) else round(float(logit_alpha), 12)
        if key in self._cache:
            return self._cache[key]
        alpha = None if key is None else 1.0 / (1.0 + math.exp(-key))
        term = terminal_joint(self._single, self.n_labels, alpha)  # [N, m, ..., m]
        N, m = self._single.shape
        if self.kind == "chain":
            out = self.dp.backward_expectation(self._mix, term)
        else:
            rest = term.reshape(N, m, -1)[:, 0] - self._single[:, :1]  # log Π_{k≥2} p~(y_k|x)  [N, r]
            per = torch.stack([self.dp.backward_expectation(self.log_pf[i], rest) for i in range(m)])  # [m, N, r]
            log_w = self._log_u.clone()
            if self.kind == "a1_d6":  # condition on continuing past s
                stop = self.dp.space.stop_action
                keep = torch.log1p(-self.log_pf[:, :, stop].exp().clamp(max=1 - 1e-15))  # [m, N]
                ch = self.dp.child.clamp(min=0)
                moves = self.log_pf.clone()
                moves[:, :, stop] = float("-inf")
                moves = moves.masked_fill((self.dp.child < 0).unsqueeze(0), float("-inf"))
                per = torch.logsumexp(moves.unsqueeze(-1) + per[:, ch], 2) - keep.unsqueeze(-1)
                log_w = log_w + keep
            log_w = log_w - torch.logsumexp(log_w, 0, keepdim=True)
            out = (log_w.unsqueeze(-1) + per).permute(1, 0, 2).reshape(term.shape)
        out = out.masked_fill(torch.isnan(out), float("-inf"))
        self._cache[key] = out
        return out

    def log_mixture_weights(self, states: Sequence[FragState]) -> torch.Tensor | None:
        """The exact mixture weights P(i | s) ``[B, m]`` for ``"chain"`` (None: use the y1-marginal)."""
        return self._weights[self.dp.index_of(states)] if self.kind == "chain" else None

    def log_q_nonterminal(self, states: Sequence[FragState], logit_alpha: float | None = None) -> torch.Tensor:
        return self._joint_table(logit_alpha)[self.dp.index_of(states)]

    def log_q_terminal_single(self, states: Sequence[FragState]) -> torch.Tensor:
        return self._single[self.dp.index_of(states)]

    # fast-path protocol: the "embedding" is the states; action values by looking up the successor class
    def embed_states(self, states: Sequence[FragState], logit_alpha: float | None, terminal: bool) -> tuple:
        return (list(states), logit_alpha)

    def joint_from_embedding(self, emb: tuple) -> torch.Tensor:
        return self.log_q_nonterminal(emb[0], emb[1])

    def action_values(self, emb: tuple, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Exact values of every successor of each (labelled) state, in that state's own action layout."""
        states, la = emb
        env = self.dp.env
        succ, rows, acts = _successors(env, states, env.forward_mask(states))
        out = torch.full((len(states), env.n_actions), float("-inf"), dtype=torch.float64)
        if succ:
            out[rows, acts] = reduce(self._joint_table(la)[self.dp.index_of(succ)]).double()
        return out


def oracle_table(dp: SpaceDP, log_pf: torch.Tensor, composition: Composition, log_z: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Exact guidance on an enumerated space for ANY composition: the mixture Σ c_i p_i (weights c_i u_i(s)),
    h-transformed by L(x) = target(x)/mixture(x) with V = E[L | s] by backward DP ``[N, A]``."""
    log_u = torch.stack([dp.log_reaching(t) for t in log_pf])
    log_p = (log_u + log_pf[:, :, dp.space.stop_action].double()).masked_fill(~dp.space.can_stop.unsqueeze(0), float("-inf"))
    log_c = composition.prior_log_weights(log_z)
    log_w = log_c[:, None] + log_u
    log_w = log_w - torch.logsumexp(log_w, 0, keepdim=True)
    log_lik = composition.log_combine(log_p, log_z) - torch.logsumexp(log_c[:, None] + log_p, 0)
    log_lik = log_lik.masked_fill(torch.isnan(log_lik), float("-inf"))
    mix = torch.logsumexp(log_pf.double() + log_w.unsqueeze(-1), 0)
    log_v = dp.backward_expectation(mix, log_lik)
    children = log_v[dp.child.clamp(min=0)].masked_fill(dp.child < 0, float("-inf"))
    children[:, dp.space.stop_action] = log_lik
    return guided_log_policy(log_pf.double(), log_w.T, log_v, children)


def exact_reaching_table(dp: SpaceDP, log_pf: torch.Tensor, composition: Composition,
                         log_z: torch.Tensor | None = None, ensemble: bool = False) -> torch.Tensor:
    """Reaching mixing with EXACT u_i (class-level DP) on every representative ``[N, A]``."""
    log_u = torch.stack([dp.log_reaching(t) for t in log_pf])
    if ensemble:
        log_u = torch.zeros_like(log_u)
    return reaching_log_policy(composition, log_pf, log_u, log_z)[0]


def space_log_target(dp: SpaceDP, log_pf: torch.Tensor, composition: Composition,
                     log_z: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised log target over classes from the bases' exact terminal distributions ``[N]``."""
    log_p = torch.stack([dp.log_terminal(t) for t in log_pf])
    return composition.log_target(log_p, log_z)


__all__ = ["ExactClassifier", "GuidedPolicy", "METHODS", "MolBases", "MolTrajectoryProductPolicy", "ReachingPolicy",
           "DEFAULT_U_SOURCE", "EXACT_KINDS", "SCORINGS", "SpaceDP", "U_SOURCES", "check_classifier", "composed_policy",
           "exact_reaching_table", "oracle_table", "prepare_mol_bases", "space_log_target", "trajectory_policy"]
