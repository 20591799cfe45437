"""Each base model's own probability of a molecule, p_i(x), by backward importance sampling.

A GFlowNet gives p_i(x) only as a sum over the trajectories that build x. Sampling yields molecules, i.e.
isomorphism classes of fragment trees, so the sum runs over class-level paths s0 → … → x, and with any backward
proposal Q over those paths

    p_i(x) = E_{τ ~ Q(· | x)} [ P_iF(τ) / Q(τ | x) ],      P_iF(τ) includes the Stop at x.

Here Q steps back by the environment's uniform backward action (the one the bases were trained with). At class
level one step back from s' to the parent class [s] has probability Q = m / n_parents(s') (m: backward actions of
s' whose parent is isomorphic to s) and forward probability P_iF = Σ p_iF(a'|s) over every action a' of s whose
result is isomorphic to s' (the same sum as the exact DP of ``envs.fragments.FragStateSpace``). Symmetric trees
have m > 1 or several such a'; ignoring that would count some paths twice.

``k`` backward paths per molecule give an unbiased estimate of p_i(x) (its log is biased low by Jensen, less so as
``k`` grows). This is the reference against which the reaching probabilities u_i of a composition (learned flow
or p_F/p_B product, :mod:`sculpt_core.domains.molecules.compose`) can be checked on real molecules, where no exact DP
is possible. All models are evaluated on the same backward paths (one policy pass per step for the batch).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from sculpt_core.domains.molecules.fragments import MAX_STEMS
from sculpt_core.domains.molecules.env import ADD_NODE, SET_EDGE_ATTR, FragmentEnv, FragState, canonical_key
from sculpt_core.errors import SculptError


class _Keys:
    """Memoised canonical keys (many backward paths share their states)."""

    def __init__(self) -> None:
        self.cache: dict[FragState, tuple] = {}

    def __call__(self, state: FragState) -> tuple:
        key = self.cache.get(state)
        if key is None:
            key = self.cache[state] = canonical_key(state)
        return key


def _same_class_actions(env: FragmentEnv, parent: FragState, action: int, valid: torch.Tensor, keys: _Keys
                        ) -> list[int]:
    """Every valid action of ``parent`` whose result is isomorphic to ``step(parent, action)`` (itself included).
    Only actions that add the same fragment, or set the same stem on an end of the same fragment, can qualify."""
    layout = env.layout
    kind, row, col = layout.decode(action)
    if kind == ADD_NODE:
        candidates = [layout.encode(ADD_NODE, r, col) for r in range(len(parent.frags))]
    else:
        stem, frag = col % MAX_STEMS, parent.frags[parent.edges[row][col // MAX_STEMS]]
        candidates = [layout.encode(SET_EDGE_ATTR, e, side * MAX_STEMS + stem)
                      for e, edge in enumerate(parent.edges) for side in (0, 1) if parent.frags[edge[side]] == frag]
    candidates = [a for a in candidates if a != action and bool(valid[a])]
    if not candidates:
        return [action]
    target = keys(env.step([parent], [action])[0])
    children = env.step([parent] * len(candidates), candidates)
    return [action] + [a for a, child in zip(candidates, children) if keys(child) == target]


@torch.no_grad()
def backward_log_weights(bases, molecules: Sequence[FragState], k: int = 16,
                         generator: torch.Generator | None = None, stop: bool = True) -> torch.Tensor:
    """log [P_iF(τ) / Q(τ | x)] for ``k`` class-level backward paths τ from every molecule x: ``[m, N, k]``
    float64 (see the module docstring).

    ``bases``: :class:`~sculpt_core.domains.molecules.compose.MolBases` (every model at one β, same environment).
    ``stop=False``: the paths end at the state without its Stop, so the weights estimate the reaching
    probability u_i(s) of any state (partial graphs and s0 included; log u(s0) = 0)."""
    if not (isinstance(k, int) and k >= 1):
        raise SculptError(f"the number of backward paths must be a positive integer, got {k!r}")
    if len(molecules) == 0:
        raise SculptError("no molecules given")
    env = bases.env
    if stop and any(len(x.frags) == 0 for x in molecules):
        raise SculptError("the empty graph is not a molecule")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    keys = _Keys()
    chains = [x for x in molecules for _ in range(k)]
    if stop:
        log_w = bases.log_pf(chains)[:, :, env.stop_action].clone()  # [m, C]: the Stop at x
        if not torch.isfinite(log_w).all():
            raise SculptError("some molecule cannot stop here (not a complete state of this environment)")
    else:
        log_w = torch.zeros(bases.m, len(chains), dtype=torch.float64)
    current = list(chains)
    active = torch.tensor([c for c, x in enumerate(chains) if len(x.frags) > 0], dtype=torch.long)
    while active.numel():
        states = [current[c] for c in active.tolist()]
        options = [env.parents(s) for s in states]
        picks = (torch.rand(len(states), generator=gen, dtype=torch.float64)
                 * torch.tensor([len(o) for o in options], dtype=torch.float64)).long()
        parents, actions = zip(*(o[int(p)] for o, p in zip(options, picks)))
        log_pf = bases.log_pf(list(parents))  # [m, B, A]
        valid = torch.isfinite(log_pf).any(0)
        for b, (opts, parent, action) in enumerate(zip(options, parents, actions)):
            twins = sum(keys(p) == keys(parent) for p, _ in opts)  # backward actions to the same parent class
            same = torch.tensor(_same_class_actions(env, parent, action, valid[b], keys))
            log_q = math.log(twins / len(opts))
            log_w[:, int(active[b])] += torch.logsumexp(log_pf[:, b, same], 1) - log_q
        for c, parent in zip(active.tolist(), parents):
            current[c] = parent
        keep = torch.tensor([len(p.frags) > 0 for p in parents], dtype=torch.bool)
        active = active[keep]
    return log_w.reshape(log_w.shape[0], len(molecules), k)


def log_marginals(bases, molecules: Sequence[FragState], k: int = 16,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Estimated log p_i(x) of every base model for every molecule ``[m, N]`` (log-mean-exp over ``k`` paths)."""
    return torch.logsumexp(backward_log_weights(bases, molecules, k, generator), 2) - math.log(k)


def log_reaching(bases, states: Sequence[FragState], k: int = 16,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Estimated log u_i(s), the probability that model i's trajectory passes through (the class of) s, for every
    base model and state ``[m, N]``: log-mean-exp over ``k`` backward paths without the Stop. States go through in
    chunks of about 4096 paths (each policy pass holds [m, paths, actions] float64 log-probs)."""
    if not (isinstance(k, int) and k >= 1):
        raise SculptError(f"the number of backward paths must be a positive integer, got {k!r}")
    if len(states) == 0:
        raise SculptError("no states given")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    per = max(1, 4096 // k)
    parts = [backward_log_weights(bases, states[lo:lo + per], k, gen, stop=False) for lo in range(0, len(states), per)]
    return torch.logsumexp(torch.cat(parts, 1), 2) - math.log(k)


def flow_offsets(bases, molecules: Sequence[FragState], k: int = 16,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-model shift c_i ``[m]`` (float64) of the flows' log p_i(x) (``bases.log_flow_marginals``) that best
    matches backward importance sampling on ``molecules``: the mean of log p̂_i(x) − log p_i^flow(x), centred over
    the models (a posterior only sees the differences). A flow head fitted elsewhere can be off by a few nats,
    differently per model, on the molecules a composition makes; a shared error leaves the posterior unchanged,
    a relative one moves every label posterior the same way, and this removes its mean."""
    if len(molecules) == 0:
        raise SculptError("no molecules given")
    diff = log_marginals(bases, molecules, k, generator) - bases.log_flow_marginals(molecules).double()
    shift = diff.mean(1)
    return shift - shift.mean()


__all__ = ["backward_log_weights", "flow_offsets", "log_marginals", "log_reaching"]
