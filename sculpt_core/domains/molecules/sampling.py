"""Vectorised sampling of fragment molecules from any policy (base model, guided, reaching, ensemble).

A molecule policy is a :class:`~sculpt_core.core.protocols.Policy` whose batches are ``list[FragState]``;
:func:`sample_trajectories` runs the core roll-out loop (:func:`sculpt_core.core.sampling.rollout`) with the
states kept in a list. All active trajectories advance together (one policy call per step); finished ones drop
out of the batch. Draws are made on the CPU with a seeded generator, so results do not depend on where the
policy runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from sculpt_core.core.protocols import Policy
from sculpt_core.core.limits import MAX_BATCH, MAX_MOLECULES, check_int
from sculpt_core.core.sampling import ListStore, check_rollout_args, rollout, seeded_generator
from sculpt_core.domains.molecules.env import FragmentEnv, FragState
from sculpt_core.errors import SculptError

#: The sampling protocol on fragment graphs (the core :class:`~sculpt_core.core.protocols.Policy`).
MolPolicy = Policy


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
    check_rollout_args(n, epsilon)
    store = ListStore(env.initial_states(n))
    actions, lengths = rollout(env, policy, n, store, generator, epsilon)
    traj = MolTrajectories(store.paths, actions, lengths)
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
    progress: Callable[[int, int], None] | None = None,
) -> MolSampleSet:
    """Collect ``n`` VALID molecules (trajectories whose molecule fails RDKit sanitisation are dropped and
    counted). ``env`` defaults to ``policy.env``. Gives up with SculptError after ``max_trajectories``
    (default ``10·n + 1000``) roll-outs. ``progress(valid so far, n)`` is called after each batch."""
    if not (isinstance(n, int) and n >= 1):
        raise SculptError(f"number of molecules must be a positive integer, got {n!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise SculptError(f"batch size must be a positive integer, got {batch_size!r}")
    check_int(n, "number of molecules", 1, MAX_MOLECULES, "molecules per sample")
    check_int(batch_size, "batch size", 1, MAX_BATCH, "batch sizes")
    env = env if env is not None else getattr(policy, "env", None)
    if env is None:
        raise SculptError("sample_molecules needs the environment (policy.env or env=...)")
    limit = max_trajectories if max_trajectories is not None else 10 * n + 1000
    gen = seeded_generator(seed)
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
        if progress is not None:
            progress(len(smiles), n)
    return MolSampleSet(smiles, states, total, invalid, time.perf_counter() - t0)


__all__ = ["MolPolicy", "MolSampleSet", "MolTrajectories", "sample_molecules", "sample_trajectories"]
