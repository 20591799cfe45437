"""Vectorised sampling of fragment molecules from any policy (base model, guided, reaching, ensemble).

A *molecule policy* follows the same protocol as :mod:`sculpt_core.core.sampling`, with batches given
as ``list[FragState]`` instead of tensors:

* ``start(n)`` → per-trajectory carry (None, or a tensor whose first axis is the trajectory);
* ``log_probs(states, carry)`` → masked log-probs ``[B, n_actions]`` (normalisation is not required: draws
  use the Gumbel-max trick, so unnormalised guided logits work too; ``-inf`` = impossible);
* ``advance(carry, states, actions, next_states)`` → the carry after the step.

All active trajectories advance together (one policy call per step); finished ones drop out of the batch.
Draws are made on the CPU with a seeded generator, so results do not depend on where the policy runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch

from sculpt_core.domains.molecules.env import FragmentEnv, FragState
from sculpt_core.errors import SculptError
from sculpt_core.core.sampling import sample_categorical


class MolPolicy(Protocol):
    def start(self, n: int) -> Any: ...

    def log_probs(self, states: Sequence[FragState], carry: Any) -> torch.Tensor: ...

    def advance(self, carry: Any, states: Sequence[FragState], actions: torch.Tensor,
                next_states: Sequence[FragState]) -> Any: ...


@dataclass
class MolTrajectories:
    """A batch of finished trajectories.

    ``states[b]`` = ``[s_0, …, s_L]`` with ``L = lengths[b]`` actions (Stop included), so ``s_L`` (the
    terminal object) equals ``s_{L−1}``; ``actions[B, T]`` long, ``-1`` after Stop. ``smiles``/``valid``
    are filled by :func:`sample_trajectories` when ``with_smiles`` is set (None = not computed)."""

    states: list[list[FragState]]
    actions: torch.Tensor
    lengths: torch.Tensor
    smiles: list[str | None] | None = None
    valid: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.states)

    @property
    def terminal(self) -> list[FragState]:
        """The state in which Stop was taken, per trajectory."""
        return [traj[-1] for traj in self.states]

    def transitions(self) -> tuple[list[FragState], torch.Tensor, list[FragState], torch.Tensor]:
        """Every step flattened, trajectory by trajectory: (states, actions ``[S]``, next states, trajectory
        index ``[S]``). The last step of each trajectory is its Stop."""
        states: list[FragState] = []
        nxt: list[FragState] = []
        for traj in self.states:
            states.extend(traj[:-1])
            nxt.extend(traj[1:])
        acts = self.actions[self.actions >= 0]
        index = torch.repeat_interleave(torch.arange(len(self.states)), self.lengths)
        return states, acts, nxt, index


@torch.no_grad()
def sample_trajectories(
    env: FragmentEnv,
    policy: MolPolicy,
    n: int,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
    with_smiles: bool = True,
) -> MolTrajectories:
    """Roll out ``n`` trajectories together; with ``epsilon`` > 0 each action is drawn from
    (1−ε)·policy + ε·uniform(valid actions) (training exploration only; evaluation uses ε = 0)."""
    if not (isinstance(n, int) and n >= 1):
        raise SculptError(f"number of trajectories must be a positive integer, got {n!r}")
    if not 0.0 <= epsilon < 1.0:
        raise SculptError(f"epsilon must be in [0, 1), got {epsilon}")
    max_len = env.max_trajectory_length
    states = env.initial_states(n)
    paths: list[list[FragState]] = [[s] for s in states]
    actions = torch.full((n, max_len), -1, dtype=torch.long)
    lengths = torch.zeros(n, dtype=torch.long)
    carry = policy.start(n)
    active = torch.arange(n)
    log_keep = math.log1p(-epsilon)
    log_eps = math.log(epsilon) if epsilon > 0 else None
    for t in range(max_len):
        if active.numel() == 0:
            break
        cur = [states[i] for i in active.tolist()]
        sub = None if carry is None else carry[active.to(carry.device)]
        logp = policy.log_probs(cur, sub).detach().double().cpu()
        if log_eps is not None:
            mask = env.forward_mask(cur).cpu()
            uniform = torch.log(mask.double() / mask.sum(-1, keepdim=True))
            logp = torch.logaddexp(logp + log_keep, uniform + log_eps)
        if not torch.isfinite(logp).any(-1).all():
            raise SculptError("the policy gave no valid action to some state (all log-probs -inf or NaN)")
        a = sample_categorical(logp, generator)
        nxt = env.step(cur, a)
        if carry is not None:
            new = policy.advance(sub, cur, a, nxt)
            carry = carry.clone()
            carry[active.to(carry.device)] = new
        actions[active, t] = a
        lengths[active] = t + 1
        keep = []
        for k, i in enumerate(active.tolist()):
            states[i] = nxt[k]
            paths[i].append(nxt[k])
            if int(a[k]) != env.stop_action:
                keep.append(k)
        active = active[torch.tensor(keep, dtype=torch.long)]
    if active.numel():
        raise SculptError(f"{active.numel()} trajectories did not stop within {max_len} steps")
    traj = MolTrajectories(paths, actions, lengths)
    if with_smiles:
        traj.smiles = [env.to_smiles(s) for s in traj.terminal]
        traj.valid = torch.tensor([s is not None for s in traj.smiles], dtype=torch.bool)
    return traj


@dataclass
class MolSampleSet:
    """``n`` valid molecules (canonical SMILES and their states) and what it took to get them."""

    smiles: list[str]
    states: list[FragState]
    n_trajectories: int
    n_invalid: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def molecules_per_s(self) -> float:
        return len(self.smiles) / max(self.seconds, 1e-9)


def sample_molecules(
    policy: MolPolicy,
    n: int,
    seed: int = 0,
    batch_size: int = 256,
    env: FragmentEnv | None = None,
    epsilon: float = 0.0,
    max_trajectories: int | None = None,
) -> MolSampleSet:
    """Collect ``n`` VALID molecules (trajectories whose molecule fails RDKit sanitisation are dropped and
    counted). ``env`` defaults to ``policy.env``. Gives up with SculptError after ``max_trajectories``
    (default ``10·n + 1000``) roll-outs."""
    if not (isinstance(n, int) and n >= 1):
        raise SculptError(f"number of molecules must be a positive integer, got {n!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise SculptError(f"batch size must be a positive integer, got {batch_size!r}")
    env = env if env is not None else getattr(policy, "env", None)
    if env is None:
        raise SculptError("sample_molecules needs the environment (policy.env or env=...)")
    limit = max_trajectories if max_trajectories is not None else 10 * n + 1000
    gen = torch.Generator().manual_seed(int(seed))
    smiles: list[str] = []
    states: list[FragState] = []
    total = invalid = 0
    t0 = time.perf_counter()
    while len(smiles) < n:
        if total >= limit:
            raise SculptError(f"only {len(smiles)} valid molecules out of {total} trajectories; giving up")
        size = min(batch_size, n - len(smiles))
        traj = sample_trajectories(env, policy, size, gen, epsilon)
        total += size
        for s, smi in zip(traj.terminal, traj.smiles or []):
            if smi is None:
                invalid += 1
            elif len(smiles) < n:
                smiles.append(smi)
                states.append(s)
    return MolSampleSet(smiles, states, total, invalid, time.perf_counter() - t0)


__all__ = ["MolPolicy", "MolSampleSet", "MolTrajectories", "sample_molecules", "sample_trajectories"]
