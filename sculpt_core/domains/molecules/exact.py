"""Exact computations on tiny fragment libraries, where every state class can be enumerated.

:func:`enumerate_states` lists every isomorphism class of states; :class:`SpaceDP` is that space as a core
:class:`~sculpt_core.core.exact.ExactSpace` (reaching probabilities, terminal distributions, backward
expectations) that also maps labelled states to their classes; :class:`ExactClassifier` gives exact label
posteriors in the classifier interface; :func:`oracle_table`, :func:`exact_reaching_table` and
:func:`space_log_target` give exact composed policies and targets (the core formulas on this space). This
is the ground truth of the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.core.exact import (POSTERIOR_KINDS, ExactSpace, exact_label_posterior, exact_log_target,
                                    exact_reaching_log_policy, oracle_log_policy)
from sculpt_core.domains.molecules.compose import _successors
from sculpt_core.domains.molecules.env import FragmentEnv, FragState, canonical_key
from sculpt_core.errors import SculptError


# ----- exact enumeration for tiny libraries ------------------------------------------------------------------
@dataclass
class FragStateSpace:
    """All isomorphism classes of states of a (tiny) environment, for exact dynamic programming.

    ``states[k]`` is a representative (labelled) state of class k (class 0 = s0), ``keys[k]`` its canonical
    key, ``levels[L]`` the classes built by L non-stop actions (a topological order: every action adds one
    node or one stem). ``children[k]`` lists (child class, actions on ``states[k]`` that reach it); with a
    permutation-equivariant policy the class-level transition probability is the sum over those actions.
    ``can_stop[k]``: Stop is valid in class k. ``exact``: the same space as a core
    :class:`~sculpt_core.core.exact.ExactSpace` (child table over the representatives' action layout)."""

    states: list[FragState]
    keys: list[tuple]
    index: dict[tuple, int]
    levels: list[list[int]]
    children: list[list[tuple[int, tuple[int, ...]]]]
    can_stop: torch.Tensor
    stop_action: int
    exact: ExactSpace = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        child = torch.full((len(self.states), self.stop_action + 1), -1, dtype=torch.long)  # Stop is the last action
        for k, kids in enumerate(self.children):
            for c, actions in kids:
                child[k, list(actions)] = c
        levels = [torch.tensor(level, dtype=torch.long) for level in self.levels]
        self.exact = ExactSpace(child, levels, self.can_stop, self.stop_action)

    @property
    def n_states(self) -> int:
        return len(self.states)

    def log_reaching(self, log_pf: torch.Tensor) -> torch.Tensor:
        """log u(k) for every class under the per-representative policy table ``log_pf[n_states, A]``
        (normalised, masked): u(s0) = 1, u(c) = Σ_parents u(p) Σ_{a realising p→c} p_F(a|p)."""
        return self.exact.log_reaching(log_pf)

    def log_terminal(self, log_pf: torch.Tensor) -> torch.Tensor:
        """log p(class) = log u + log p_F(stop) (−inf where Stop is invalid); sums to 1 for a proper policy."""
        return self.exact.log_terminal(log_pf)


def enumerate_states(env: FragmentEnv, max_states: int = 200_000) -> FragStateSpace:
    """Breadth-first enumeration of every state class (up to isomorphism) of a tiny environment."""
    s0 = FragState()
    states, keys, index = [s0], [canonical_key(s0)], {canonical_key(s0): 0}
    children: list[list[tuple[int, tuple[int, ...]]]] = []
    levels, frontier = [], [0]
    while frontier:
        levels.append(frontier)
        nxt: list[int] = []
        masks = env.forward_mask([states[k] for k in frontier])
        for k, row in zip(frontier, masks):
            acts = [a for a in torch.nonzero(row).squeeze(1).tolist() if a != env.stop_action]
            grouped: dict[int, list[int]] = {}
            for a, child in zip(acts, env.step([states[k]] * len(acts), acts)):
                key = canonical_key(child)
                c = index.get(key)
                if c is None:
                    c = index[key] = len(states)
                    states.append(child)
                    keys.append(key)
                    nxt.append(c)
                    if len(states) > max_states:
                        raise SculptError(f"more than {max_states} state classes; use a smaller library or max_frags")
                grouped.setdefault(c, []).append(a)
            # classes are processed in index order (each frontier is the contiguous block found by the last)
            children.append([(c, tuple(a)) for c, a in grouped.items()])
        frontier = nxt
    can_stop = torch.tensor([s.complete for s in states])
    return FragStateSpace(states, keys, index, levels, children, can_stop, env.stop_action)



# ----- exact dynamic programming on tiny libraries --------------------------------------------------------------------
class SpaceDP(ExactSpace):
    """An enumerated fragment space as a core :class:`~sculpt_core.core.exact.ExactSpace` (class level; valid for
    node-numbering-invariant policies, see :class:`FragStateSpace`), plus the map from labelled states to classes
    and policy tables over the class representatives."""

    def __init__(self, space: FragStateSpace, env: FragmentEnv) -> None:
        ex = space.exact
        if ex.n_actions != env.n_actions:
            raise SculptError(f"the enumerated space has {ex.n_actions} actions, the environment {env.n_actions}")
        super().__init__(ex.child, ex.levels, ex.can_stop, ex.stop_action)
        self.space = space
        self.env = env

    @classmethod
    def build(cls, env: FragmentEnv, max_states: int = 200_000) -> "SpaceDP":
        """Enumerate the (tiny) environment and index its transitions."""
        return cls(enumerate_states(env, max_states), env)

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
        for lo in range(0, self.n_states, batch):
            part = self.states[lo:lo + batch]
            logits = policy.log_probs(part, None).double().cpu()
            rows.append(torch.log_softmax(logits, -1))
        return torch.cat(rows)


EXACT_KINDS = POSTERIOR_KINDS


@dataclass
class ExactClassifier:
    """Exact label posteriors on an enumerated space, in the MolClassifier interface (tests, ground truth).

    Terminal (every kind): p~(y = i | x) = p_i(x) / Σ_j p_j(x). Non-terminal joint by ``kind``
    (:func:`~sculpt_core.core.exact.exact_label_posterior`): ``"chain"`` (the posterior Theorem 5.3 needs, with
    its mixture weights P(i | s) = u_i(s) / Σ_j u_j(s) served by :meth:`log_mixture_weights`), ``"a1"`` (the
    fixed point of Algorithm A.1, final graph kept as a non-terminal state; slightly off on a DAG, exact on
    trees) and ``"a1_d6"`` (the A.1 fixed point with the molecule rule, final graph never non-terminal).
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
        self._log_u = torch.stack([self.dp.log_reaching(t) for t in self.log_pf])  # [m, N]
        _, self._weights, self._single = self._posterior(None)

    def _posterior(self, alpha: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return exact_label_posterior(self.dp, self.log_pf, self.n_labels, alpha, self.kind, self._log_u)

    def _joint_table(self, logit_alpha: float | None) -> torch.Tensor:
        key = None if (logit_alpha is None or not self.alpha_cond) else round(float(logit_alpha), 12)
        if key not in self._cache:
            alpha = None if key is None else 1.0 / (1.0 + math.exp(-key))
            self._cache[key] = self._posterior(alpha)[0]
        return self._cache[key]

    def log_mixture_weights(self, states: Sequence[FragState], logit_alpha: float | None = None) -> torch.Tensor | None:
        """The exact mixture weights P(i | s) ``[B, m]`` for ``"chain"`` (None: use the y1-marginal)."""
        return self._weights[self.dp.index_of(states)] if self.kind == "chain" else None

    def mixture_from_embedding(self, emb: tuple) -> torch.Tensor | None:
        return self.log_mixture_weights(emb[0])

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
        if not succ:
            probe = reduce(self._joint_table(la)[:1])  # the reducer's output shape: one value, or the whole joint
            return torch.full((len(states), env.n_actions) + tuple(probe.shape[1:]), float("-inf"),
                              dtype=torch.float64)
        vals = reduce(self._joint_table(la)[self.dp.index_of(succ)]).double()
        out = torch.full((len(states), env.n_actions) + tuple(vals.shape[1:]), float("-inf"), dtype=torch.float64)
        out[rows, acts] = vals
        return out


def oracle_table(dp: SpaceDP, log_pf: torch.Tensor, composition: Composition, log_z: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Exact guidance on an enumerated space for ANY composition ``[N, A]``
    (:func:`~sculpt_core.core.exact.oracle_log_policy`)."""
    return oracle_log_policy(dp, log_pf, composition, log_z)


def exact_reaching_table(dp: SpaceDP, log_pf: torch.Tensor, composition: Composition,
                         log_z: torch.Tensor | None = None, ensemble: bool = False) -> torch.Tensor:
    """Reaching mixing with EXACT u_i (class-level DP) on every representative ``[N, A]``."""
    return exact_reaching_log_policy(dp, log_pf, composition, log_z, ensemble)[0]


def space_log_target(dp: SpaceDP, log_pf: torch.Tensor, composition: Composition,
                     log_z: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised log target over classes from the bases' exact terminal distributions ``[N]``."""
    return exact_log_target(dp, log_pf, composition, log_z)


__all__ = ["EXACT_KINDS", "ExactClassifier", "FragStateSpace", "SpaceDP", "enumerate_states", "exact_reaching_table",
           "oracle_table", "space_log_target"]
