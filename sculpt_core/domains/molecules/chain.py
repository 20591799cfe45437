"""What the chain objective samples and backs up: the mixture chain, guided branches, flow calibration, tree targets.

The chain posterior Q(y | s) = Σ_a p_M(a | s) Q(y | s'_a) (terminal: Π_k P(y_k | x)) is defined through the mixture
chain p_M(a | s) = Σ_i P(i | s) p_iF(a | s); the classifier objective of
:mod:`~sculpt_core.domains.molecules.train_classifier` learns it from trajectories of that chain and of guided
branches (:class:`BranchPolicy`), with leaf targets from the bases' flows (:func:`calibrate_flows` aligns them) and
non-terminal targets from a trajectory's end or the tree backup (:func:`make_tree_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from sculpt_core.core.guidance import mixture_log_policy
from sculpt_core.core.labels import terminal_joint
from sculpt_core.domains.molecules.sampling import sample_trajectories
from sculpt_core.errors import SculptError

if TYPE_CHECKING:
    from sculpt_core.domains.molecules.classifier import MolClassifier


@dataclass
class MixtureChainPolicy:
    """The mixture chain p_M(a | s) = Σ_i P(i | s) p_iF(a | s) with P(i | s) from a classifier's mixture head:
    the policy whose continuations define the chain posterior (sampled by the chain objective). Stateless."""

    bases: Any
    classifier: MolClassifier

    @property
    def env(self) -> Any:
        return self.bases.env

    def start(self, n: int) -> None:
        return None

    @torch.no_grad()
    def log_probs(self, states: Sequence, carry: Any = None) -> torch.Tensor:
        log_w = self.classifier.log_mixture_weights(states).double().cpu()
        return mixture_log_policy(self.bases.log_pf(states), log_w)

    def advance(self, carry: Any, states: Sequence, actions: torch.Tensor, next_states: Sequence) -> None:
        return None


@dataclass
class BranchPolicy:
    """Guided until a random depth, then the mixture chain: covers the states guidance visits.

    Each trajectory follows ``guided`` (classifier guidance with the target network, for a random label tuple)
    for its first ``switch[b]`` moves, drawn uniformly in [0, max length), and ``chain`` after. A state reached
    at or after the switch is continued by the mixture chain, so its label target (the terminal posterior of the
    trajectory's end) is an unbiased sample of its chain posterior, however it was reached; with Monte-Carlo
    targets the states before the switch are not used (the tree backup, whose targets do not depend on the policy
    that made the moves, trains on all of them). The mixture chain alone rarely visits where guidance for a rare
    composition goes (the states whose posterior matters most for that composition), hence the branch."""

    guided: Any
    chain: Any
    gen: torch.Generator
    switch: torch.Tensor | None = None

    @property
    def env(self) -> Any:
        return self.chain.env

    def start(self, n: int) -> torch.Tensor:
        self.switch = torch.randint(self.env.max_trajectory_length, (n,), generator=self.gen)
        return torch.stack([torch.zeros(n, dtype=torch.long), self.switch], 1)  # (moves made, switch depth)

    @torch.no_grad()
    def log_probs(self, states: Sequence, carry: Any = None) -> torch.Tensor:
        guided = carry[:, 0] < carry[:, 1]
        out = torch.empty(len(states), self.env.n_actions, dtype=torch.float64)
        for rows, policy in ((guided, self.guided), (~guided, self.chain)):
            idx = torch.nonzero(rows).squeeze(1).tolist()
            if idx:
                out[rows] = policy.log_probs([states[r] for r in idx]).double().cpu()
        return out

    def advance(self, carry: Any, states: Sequence, actions: torch.Tensor, next_states: Sequence) -> torch.Tensor:
        return torch.stack([carry[:, 0] + 1, carry[:, 1]], 1)


def branch_policy(bases: Any, target: MolClassifier, cfg: Any, gen: torch.Generator
                  ) -> BranchPolicy:
    """A :class:`BranchPolicy` guided (fast head of ``target``) for a label tuple drawn uniformly (and, for an
    α-conditioned classifier, α uniform in logit space) for this batch."""
    from sculpt_core.core.algebra import conditioning
    from sculpt_core.domains.molecules.compose import GuidedPolicy

    m, n = bases.m, cfg.n_labels
    labels = tuple(int(y) + 1 for y in torch.randint(m, (n,), generator=gen))
    alpha = None
    if cfg.alpha_cond:
        alpha = float(torch.sigmoid((torch.rand((), generator=gen, dtype=torch.float64) * 2 - 1)
                                    * cfg.logit_alpha_range))
    guided = GuidedPolicy(bases, conditioning(labels, m, alpha), target, "fast")
    return BranchPolicy(guided, MixtureChainPolicy(bases, target), gen)


def calibrate_flows(bases: Any, target: MolClassifier, cfg: Any, gen: torch.Generator
                    ) -> torch.Tensor:
    """Per-model offsets of the flow posterior (:func:`~sculpt_core.domains.molecules.marginals.flow_offsets`,
    16 backward paths each) on ``cfg.flow_calibration`` molecules where its targets are used: the mixture chain's,
    and with guided branches half of them from branches (four batches, four label tuples)."""
    from sculpt_core.domains.molecules.marginals import flow_offsets

    n = cfg.flow_calibration
    n_branch = (n // 2) if cfg.branch_fraction > 0 else 0
    molecules = list(sample_trajectories(bases.env, MixtureChainPolicy(bases, target), n - n_branch, gen,
                                         with_smiles=False).terminal)
    for part in range(4):
        size = n_branch // 4 + (part < n_branch % 4)
        if size:
            molecules += sample_trajectories(bases.env, branch_policy(bases, target, cfg, gen), size, gen,
                                             with_smiles=False).terminal
    return flow_offsets(bases, molecules, 16, gen)


def make_tree_targets(bases: Any, target: Any, n_labels: int, lam: float, flow_leaves: bool = False,
                      offsets: torch.Tensor | None = None) -> Callable[[Any], torch.Tensor]:
    """``mix ↦ [S, K]`` tree-backup targets of every stored state of ``mix`` (the "tree" backup; ``mix`` is one
    training step's assembled rows: ``nonterminal``, ``nt_traj``, ``logit_alpha``, ``nt_action``, ``nt_next``).

    V(s, a) comes from ``target``'s action values (a :class:`MolClassifier`, or the exact classifier), the Stop
    column from the terminal joint at s (``flow_leaves``: the bases' flow posterior with per-model ``offsets``,
    from the same pass that gives p_F; else the target's terminal head), p_M from the target's own mixture
    weights over ``bases``."""
    from sculpt_core.core.guidance import tree_backup_targets

    env = bases.env

    def targets(mix: Any) -> torch.Tensor:
        states = list(mix.nonterminal)
        alpha_cond = bool(getattr(target.cfg, "alpha_cond", False))
        la = mix.logit_alpha[mix.nt_traj] if alpha_cond else None
        with torch.no_grad():
            emb = target.embed_states(states, la, False)
            table = target.action_values(emb, lambda joint: joint.flatten(1)).double().cpu()  # [S, A, K]
            log_w = target.mixture_from_embedding(emb)
            if log_w is None:
                raise SculptError("the tree backup needs the target's mixture weights (a chain classifier)")
            if flow_leaves:
                log_pf, log_u = bases.log_pf_and_u(states)
            else:
                log_pf, log_u = bases.log_pf(states), None
            log_pm = mixture_log_policy(log_pf, log_w.double().cpu())
            stop = env.stop_action
            can_stop = torch.isfinite(log_pm[:, stop])
            if can_stop.any():
                idx = torch.nonzero(can_stop).squeeze(1)
                if log_u is not None:
                    log_px = bases.log_stop_marginals(log_pf[:, idx], log_u[:, idx])
                    log_post = bases.posterior_from_marginals(log_px, offsets)
                else:
                    log_post = target.log_q_terminal_single([states[r] for r in idx.tolist()]).double().cpu()
                alpha = None if la is None else torch.sigmoid(la[idx].double())
                table[idx, stop] = terminal_joint(log_post, n_labels, alpha).flatten(1)
            return tree_backup_targets(log_pm, table, mix.nt_action, mix.nt_next, lam)

    return targets


__all__ = ["BranchPolicy", "MixtureChainPolicy", "branch_policy", "calibrate_flows", "make_tree_targets"]
