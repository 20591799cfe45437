"""Training the molecule guidance classifier by Algorithm A.1, with the paper code's molecule settings.

Per step, for every base model i: ``trajectories_per_model`` on-policy trajectories at the fixed β (no
exploration; trajectories whose molecule fails sanitisation are dropped). Terminal set = the last graph x of
each trajectory; non-terminal set = the other graphs s_0..s_{L−2} and, by default, x itself as well
(``final_as_nonterminal=True``, the grid rule). The paper's molecule rule (``final_as_nonterminal=False``: the
final graph is never reused as a non-terminal state) learns a complete state's posterior only from trajectories
that continued past it, so its y1-marginal (the mixture weights) is biased towards models that do not stop
there; on the tiny exact library its A.1 fixed point guides 1.5–18× further from the target than the grid
rule's (see compose.molecules.ExactClassifier). Then

- L_T = mean over models of the per-model mean of −log Q_T(y = i | x);
- L_N = mean over models of Σ_{s} ℓ(s) / #trajectories of the model, with
  ℓ(s) = −Σ_{y2..yn} Π_{k≥2} w_{y_k}(x) · log Q_N(y1 = i, y2..yn | s) and w from the EMA TARGET network's
  terminal head at the trajectory's x (label y2 with the trajectory's own α); weights from the online network,
  or a mean over states instead of this sum, would change the fixed point;
- L_A: the same loss for the action head on the observed transitions (s_t, a_t) → s_{t+1}, whose successor is
  a non-terminal training state: log Q(y | s_t, a_t) gets the targets of s_{t+1} (the head learns to predict the
  successor's posterior from the parent's embedding, so guidance can skip building successor graphs);
- optionally L_D: the action head distilled from the state head on successors of sampled moves
  (:func:`make_distiller`, ``distill_actions`` > 0);
- L = L_T + min(1, step / warmup) · (L_N + action_weight · L_A + distill_weight · L_D); Adam (cosine-decayed
  learning rate); target ← ema·target + (1 − ema)·online.

The chain objective (``objective="chain"``, :func:`chain_losses`) keeps L_T, adds the mixture head's L_W and takes
L_N / L_A from trajectories of the mixture chain and of guided branches (:mod:`~sculpt_core.domains.molecules.chain`),
with targets from each trajectory's end (``backup="mc"``) or the tree backup over every move (``backup="tree"``).

α-conditioned classifiers (two models, two labels) draw logit α ~ Uniform[−5.5, 5.5] per trajectory.
Trajectories are sampled in batches of ``sample_batch`` per model (same on-policy data as sampling 8 at a time,
much faster on a CPU) and consumed ``trajectories_per_model`` per step; ``reuse`` > 1 cycles each batch that many
times (fresh α each time) to save sampling time.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from sculpt_core.device import resolve_device
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.sampling import sample_trajectories
from sculpt_core.core.labels import rest_label_log_weights, terminal_joint
from sculpt_core.domains.molecules.classifier import MolClassifier, MolClassifierConfig
from sculpt_core.domains.molecules.model import MolBaseModel
from sculpt_core.domains.molecules.chain import (BranchPolicy, MixtureChainPolicy, branch_policy, calibrate_flows,
                                                 make_tree_targets)


#: Classifier objectives: the paper's Algorithm A.1, and the chain posterior (see :func:`chain_losses`).
OBJECTIVES = ("a1", "chain")
#: The molecule default: on the tiny exact library the chain objective's fixed point guides exactly where A.1's
#: misses the harmonic mean by L1 0.16 (README, "Classifier objectives").
DEFAULT_OBJECTIVE = "chain"
#: Where the chain objective's leaf targets come from: "head" (the EMA target network's terminal head) or "flow"
#: (the bases' own terminal posterior p_i(x) / Σ_j p_j(x) from their learned state flows,
#: :meth:`~sculpt_core.domains.molecules.compose.MolBases.log_terminal_posterior`).
TERMINAL_TARGETS = ("head", "flow")
#: Share of the chain objective's trajectories that start guided (:class:`BranchPolicy`); the CLI's default.
DEFAULT_BRANCH_FRACTION = 0.5
#: Non-terminal targets of the chain objective: "mc" (the terminal posterior of the trajectory's own end) or "tree"
#: (tree backup through the mixture chain over every move, :func:`~sculpt_core.core.guidance.tree_backup_targets`).
BACKUPS = ("mc", "tree")
#: The CLI's backup for the chain objective, and its target-network average (README, "Classifier objectives"):
#: on row (d) the tree backup from guided branches moved the shipped classifier where more Monte-Carlo steps did not.
#: The dataclass keeps "mc" and 0.995 (the paper's average), which the tree backup would propagate too slowly.
DEFAULT_BACKUP = "tree"
TREE_EMA = 0.9


@dataclass(frozen=True)
class MolClassifierTrainConfig:
    """Hyper-parameters (the paper's: 15k steps, 8 trajectories per model, lr 1e-3, wd 1e-6, EMA 0.995,
    warm-up 4000; the CPU defaults shorten the schedule)."""

    steps: int = 3000
    trajectories_per_model: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-6
    ema: float = 0.995
    warmup: int = 800
    logit_alpha_range: float = 5.5
    n_labels: int = 2
    alpha_cond: bool = False
    hidden: int = 64
    n_layers: int = 3
    action_head: bool = True
    action_rank: int = 16
    action_weight: float = 1.0
    distill_actions: int = 2  # k moves per sampled non-terminal state distilled from the state head (0: off)
    distill_states: int = 128
    distill_weight: float = 1.0
    distill_uniform: float = 0.2
    final_as_nonterminal: bool = True
    objective: str = DEFAULT_OBJECTIVE  # "a1" (the paper's Algorithm A.1) or "chain" (the posterior Theorem 5.3 needs)
    branch_fraction: float = 0.0  # chain: share of the chain trajectories that start guided (BranchPolicy)
    terminal_target: str = "head"  # chain: leaf targets from the terminal head or the bases' flows (TERMINAL_TARGETS)
    flow_calibration: int = 128  # "flow": molecules of the chain / branches that calibrate the flows' offsets (0: off)
    backup: str = "mc"  # chain: non-terminal targets, "mc" or "tree" (BACKUPS)
    tree_lambda: float = 1.0  # "tree": weight of the observed continuation against the target network's value
    lr_final_fraction: float = 0.1
    sample_batch: int = 128
    reuse: int = 1
    seed: int = 100
    eval_every: int = 250
    time_limit_s: float | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "trajectories_per_model", "warmup", "n_labels", "hidden", "n_layers", "sample_batch",
                     "reuse", "eval_every", "action_rank"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SculptError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "logit_alpha_range"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SculptError(f"{name} must be a positive number, got {value!r}")
        if not 0.0 <= self.ema < 1.0:
            raise SculptError(f"ema must be in [0, 1), got {self.ema}")
        if self.action_weight < 0 or self.distill_weight < 0:
            raise SculptError("action_weight and distill_weight must be ≥ 0")
        if self.distill_actions < 0 or self.distill_states < 1 or not 0.0 <= self.distill_uniform <= 1.0:
            raise SculptError("distill_actions ≥ 0, distill_states ≥ 1 and distill_uniform in [0, 1] are required")
        if self.objective not in OBJECTIVES:
            raise SculptError(f"unknown classifier objective {self.objective!r}; one of {', '.join(OBJECTIVES)}")
        if self.objective == "chain" and not self.action_head:
            raise SculptError("the chain objective backs values up through the action head: keep the action head")
        if not (isinstance(self.branch_fraction, (int, float)) and 0.0 <= self.branch_fraction <= 1.0):
            raise SculptError(f"branch_fraction must be in [0, 1], got {self.branch_fraction!r}")
        if self.branch_fraction > 0 and self.objective != "chain":
            raise SculptError("guided branches are part of the chain objective (A.1 learns from the bases' own runs)")
        if self.terminal_target not in TERMINAL_TARGETS:
            raise SculptError(f"unknown terminal target {self.terminal_target!r}; one of {', '.join(TERMINAL_TARGETS)}")
        if not (isinstance(self.flow_calibration, int) and self.flow_calibration >= 0):
            raise SculptError(f"flow_calibration must be a count ≥ 0, got {self.flow_calibration!r}")
        if self.terminal_target != "head" and self.objective != "chain":
            raise SculptError("flow terminal targets are part of the chain objective (A.1 labels by the generating model)")
        if self.backup not in BACKUPS:
            raise SculptError(f"unknown backup {self.backup!r}; one of {', '.join(BACKUPS)}")
        if self.backup != "mc" and self.objective != "chain":
            raise SculptError("the tree backup is part of the chain objective (A.1 labels by the generating model)")
        if not (isinstance(self.tree_lambda, (int, float)) and 0.0 <= self.tree_lambda <= 1.0):
            raise SculptError(f"tree_lambda must be in [0, 1], got {self.tree_lambda!r}")
        if self.objective == "chain" and not self.final_as_nonterminal:
            raise SculptError("the chain objective learns P(i | s) from every visited state, the final graph included")


# ----- on-policy trajectory supply ------------------------------------------------------------------------------
class _Stream:
    """Valid on-policy trajectories of one policy, sampled in batches: (states s_0..s_L, actions a_0..a_{L−1}).
    ``policy_fn()`` gives the policy for the next batch (a base model at β, or the current mixture chain)."""

    def __init__(self, name: str, env: Any, policy_fn: Callable[[], Any], batch: int, reuse: int,
                 gen: torch.Generator, beta: float) -> None:
        self.name, self.env, self.policy_fn, self.batch, self.reuse, self.gen = name, env, policy_fn, batch, reuse, gen
        self.beta = beta
        self.buffer: list[tuple[list, list[int], int]] = []
        self.sampled = self.invalid = 0

    @classmethod
    def of_model(cls, model: MolBaseModel, beta: float, batch: int, reuse: int, gen: torch.Generator) -> "_Stream":
        return cls(repr(model.name), model.env, lambda: model.policy(beta), batch, reuse, gen, beta)

    def _refill(self) -> None:
        policy = self.policy_fn()
        traj = sample_trajectories(self.env, policy, self.batch, self.gen)
        first = getattr(policy, "switch", None)  # a branch policy: the states before its switch are not training data
        fresh = []
        for b in range(len(traj)):
            if not bool(traj.valid[b]):
                self.invalid += 1
                continue
            fresh.append((traj.states[b], traj.actions[b, : int(traj.lengths[b])].tolist(),
                          0 if first is None else int(first[b])))
        self.sampled += len(traj)
        pool = fresh * self.reuse
        order = torch.randperm(len(pool), generator=self.gen).tolist()
        self.buffer.extend(pool[k] for k in order)

    def take(self, k: int) -> list[tuple[list, list[int], int]]:
        """``k`` trajectories (states, actions, first training state)."""
        tries = 0
        while len(self.buffer) < k:
            self._refill()
            tries += 1
            if tries > 20 and len(self.buffer) < k:
                raise SculptError(f"{self.name} produced almost no valid molecules at β = {self.beta:g}")
        out, self.buffer = self.buffer[:k], self.buffer[k:]
        return out


# ----- one step's data --------------------------------------------------------------------------------------------
@dataclass
class _StepData:
    nonterminal: list          # states
    nt_traj: torch.Tensor      # [S] trajectory of each non-terminal state
    terminal: list             # [T] last graph of each trajectory
    label: torch.Tensor        # [T] generating model
    logit_alpha: torch.Tensor  # [T]
    pair_row: torch.Tensor     # [P] non-terminal row of s_t
    pair_action: torch.Tensor  # [P] a_t
    pair_traj: torch.Tensor    # [P]
    nt_train: torch.Tensor     # [S] bool: a training state (False: only the parent of a training move)
    nt_action: torch.Tensor    # [S] the action made at that state
    nt_next: torch.Tensor      # [S] the row of the state it led to (−1: none, the action ended the stored rows)


def _assemble(trajs: list[tuple[int, list, list[int], int]], final_as_nonterminal: bool, logit_alpha: torch.Tensor
              ) -> _StepData:
    """One step's tensors from (label, states, actions, first) per trajectory: the non-terminal training states
    are s_first..; a move (s_t, a_t) is a training pair when its successor s_{t+1} is a training state (its
    target is the successor's posterior, however s_t was reached)."""
    nonterminal, nt_traj, terminal, label = [], [], [], []
    pair_row, pair_action, pair_traj, parent_only = [], [], [], []
    nt_action, nt_next = [], []
    for j, (i, states, actions, start) in enumerate(trajs):
        L = len(actions)  # states has L + 1 entries, states[L] = states[L-1] = x
        n_nt = L if final_as_nonterminal else L - 1
        start = min(start, n_nt)
        row0 = len(nonterminal) - start  # row of s_t = row0 + t for t ≥ start
        first_row = len(nonterminal)
        if start > 0 and start < n_nt:  # the move into the first training state: parent s_{start-1} is added
            nonterminal.append(states[start - 1])
            nt_traj.append(j)
            parent_only.append(len(nonterminal) - 1)
            row0 += 1
            pair_row.append(row0 + start - 1)
            pair_action.append(actions[start - 1])
            pair_traj.append(j)
        nonterminal.extend(states[start:n_nt])
        nt_traj += [j] * (n_nt - start)
        t0 = start - (len(nonterminal) - first_row - (n_nt - start))  # the state of this trajectory's first row
        nt_action += [actions[t] for t in range(t0, n_nt)]
        nt_next += [row0 + t + 1 if t + 1 < n_nt else -1 for t in range(t0, n_nt)]
        for t in range(start, n_nt - 1):  # (s_t, a_t) → s_{t+1}, a non-terminal training state
            pair_row.append(row0 + t)
            pair_action.append(actions[t])
            pair_traj.append(j)
        terminal.append(states[-1])
        label.append(i)
    lt = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    nt_train = torch.ones(len(nonterminal), dtype=torch.bool)
    nt_train[lt(parent_only)] = False
    return _StepData(nonterminal, lt(nt_traj), terminal, lt(label), logit_alpha, lt(pair_row), lt(pair_action),
                     lt(pair_traj), nt_train, lt(nt_action), lt(nt_next))


def label_targets(w_single: torch.Tensor, n_labels: int, logit_alpha: torch.Tensor | None) -> torch.Tensor:
    """Π_{k≥2} w_{y_k}(x) for every (y2..yn) ``[T, m^(n−1)]`` (label y2 α-weighted with each trajectory's α)."""
    alpha = None if logit_alpha is None else torch.sigmoid(logit_alpha.double())
    return rest_label_log_weights(w_single.double(), n_labels, alpha).exp()


def _per_model_mean(values: torch.Tensor, traj: torch.Tensor, label: torch.Tensor, m: int) -> torch.Tensor:
    """mean over models of (Σ values of the model's trajectories) / #trajectories of the model."""
    n_traj = torch.bincount(label, minlength=m).clamp(min=1).double()
    per_traj = torch.zeros(len(label), dtype=values.dtype, device=values.device).index_add(0, traj, values)
    per_model = torch.zeros(m, dtype=values.dtype, device=values.device).index_add(0, label.to(values.device), per_traj)
    present = torch.bincount(label, minlength=m) > 0
    return (per_model / n_traj.to(values.device))[present.to(values.device)].mean()


def classifier_losses(net: MolClassifier, target: MolClassifier, data: _StepData, m: int, distill: Callable | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_T, L_N, L_A, L_D) of Algorithm A.1 on one step's trajectories (L_A = 0 without an action head; L_D = the
    distillation loss ``distill(net, emb, data)`` when given, else 0)."""
    env, dev = net.env, net.device
    S, T = len(data.nonterminal), len(data.terminal)
    batch = env.batch_graphs(list(data.nonterminal) + list(data.terminal)).to(dev)
    la = torch.cat([data.logit_alpha[data.nt_traj], torch.zeros(T)]).to(dev)
    term = torch.cat([torch.zeros(S, dtype=torch.bool), torch.ones(T, dtype=torch.bool)]).to(dev)
    emb = net.embed(batch, la if net.cfg.alpha_cond else torch.zeros_like(la), term)
    label = data.label.to(dev)
    log_qt = net.terminal_from_embedding(emb)[S:]
    loss_t = _per_model_mean(-log_qt[torch.arange(T, device=dev), label], torch.arange(T, device=dev), label, m)
    with torch.no_grad():
        w_single = target.log_q_terminal_single(data.terminal)
        tgt = label_targets(w_single, net.cfg.n_labels, data.logit_alpha.to(dev) if net.cfg.alpha_cond else None).float()
    log_qn = net.joint_from_embedding(emb)[:S].reshape(S, m, -1)
    nt_traj = data.nt_traj.to(dev)
    rows = log_qn[torch.arange(S, device=dev), label[nt_traj]]  # [S, m^(n-1)]: y1 = generating model
    loss_n = _per_model_mean(-(tgt[nt_traj] * rows).sum(1), nt_traj, label, m)
    loss_a = torch.zeros((), device=dev)
    if net.cfg.action_head and len(data.pair_row):
        pr, pt = data.pair_row.to(dev), data.pair_traj.to(dev)
        log_qa = net.action_joint(emb, data.pair_action.to(dev), pr).reshape(len(pr), m, -1)
        rows_a = log_qa[torch.arange(len(pr), device=dev), label[pt]]
        loss_a = _per_model_mean(-(tgt[pt] * rows_a).sum(1), pt, label, m)
    loss_d = distill(net, emb, data) if (distill is not None and net.cfg.action_head) else torch.zeros((), device=dev)
    return loss_t, loss_n, loss_a, loss_d


def chain_losses(net: MolClassifier, target: MolClassifier, data: _StepData, mix: _StepData, m: int,
                 distill: Callable | None = None, terminal_posterior: Callable | None = None,
                 row_targets: Callable[[_StepData], torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_T, L_N, L_A, L_D, L_W) of the chain objective: ``data`` the bases' own trajectories, ``mix``
    trajectories of the mixture chain (:class:`MixtureChainPolicy` with the target network's P(i | s)).

    - L_T: as in A.1 (terminal label = the generating model, on the bases' trajectories);
    - L_W: the mixture head, −log P(y1 = i | s) at every visited state of model i's trajectories (the final
      graph included): fixed point P(i | s) ∝ u_i(s), what A.1's y1-marginal learns, as its own output;
    - L_N: at every state s of a mixture-chain trajectory ending in x, −Σ_y w(y | x) log Q_N(y | s) with EVERY
      label from the target network's terminal head, w(y | x) = Π_k Q_T(y_k | x) (y2 α-weighted): fixed point
      E_chain[Π_k Q(y_k | x) | s], the chain posterior (A.1 continues s with the generating model instead,
      which differs on a DAG);
    - L_A: the action head on the chain's observed moves (s_t, a_t) → s_{t+1} with the same targets; L_D: the
      distillation of :func:`make_distiller` on the chain's states.

    ``terminal_posterior(molecules)`` (``[T, m]`` log P(i | x), e.g. the bases' flow posterior) replaces the
    target network's terminal head in w(y | x), and L_T gains KL(P(· | x) ‖ Q_T(· | x)) on the chain's molecules:
    the head's hard labels come from the bases' own samples only, so where the chain (and guidance) goes it
    extrapolates, while p_i(x) / Σ_j p_j(x) is defined for any molecule.

    ``row_targets(mix)`` (``[S_mix, K]``, :func:`make_tree_targets`) replaces w(y | x) of the trajectory's end as
    the target of each stored state (and of the move into it): the tree backup, lower variance than one
    continuation's end, with the same fixed point.

    Sums over a trajectory's states, means over trajectories (per model for L_T and L_W)."""
    env, dev = net.env, net.device
    n = net.cfg.n_labels
    Sm, Sb, Tb = len(mix.nonterminal), len(data.nonterminal), len(data.terminal)
    extra = list(mix.terminal) if terminal_posterior is not None else []  # the chain's molecules, as terminals
    la_m = mix.logit_alpha[mix.nt_traj] if net.cfg.alpha_cond else torch.zeros(Sm)
    batch = env.batch_graphs(list(mix.nonterminal) + list(data.nonterminal) + list(data.terminal) + extra).to(dev)
    la = torch.cat([la_m, torch.zeros(Sb + Tb + len(extra))]).to(dev)
    term = torch.cat([torch.zeros(Sm + Sb, dtype=torch.bool), torch.ones(Tb + len(extra), dtype=torch.bool)]).to(dev)
    emb = net.embed(batch, la, term)
    label, b_traj = data.label.to(dev), data.nt_traj.to(dev)
    log_qt_all = net.terminal_from_embedding(emb)
    log_qt = log_qt_all[Sm + Sb:Sm + Sb + Tb]
    loss_t = _per_model_mean(-log_qt[torch.arange(Tb, device=dev), label], torch.arange(Tb, device=dev), label, m)
    log_w = net.mixture_from_embedding(emb)[Sm:Sm + Sb]
    loss_w = _per_model_mean(-log_w[torch.arange(Sb, device=dev), label[b_traj]], b_traj, label, m)
    n_mix = max(1, len(mix.terminal))
    m_traj = mix.nt_traj.to(dev)
    with torch.no_grad():
        alpha = torch.sigmoid(mix.logit_alpha.double()) if net.cfg.alpha_cond else None
        if terminal_posterior is not None:
            log_post = terminal_posterior(mix.terminal).double().to(dev)  # [T_mix, m]
        else:
            log_post = target.log_q_terminal_single(mix.terminal).double()
        tgt = terminal_joint(log_post, n, alpha.to(dev) if alpha is not None
                             else None).flatten(1).exp().float()  # [T_mix, K]
    if extra:
        post = log_post.float()
        loss_t = loss_t + (post.exp() * (post - log_qt_all[Sm + Sb + Tb:])).sum(1).mean()
    row_tgt = row_targets(mix).float().to(dev) if row_targets is not None else tgt[m_traj]  # [S_mix, K]
    log_qn = net.joint_from_embedding(emb)[:Sm].flatten(1)
    keep = mix.nt_train.to(dev)
    loss_n = -(row_tgt[keep] * log_qn[keep]).sum() / n_mix
    loss_a = torch.zeros((), device=dev)
    if len(mix.pair_row):
        pr = mix.pair_row.to(dev)
        log_qa = net.action_joint(emb, mix.pair_action.to(dev), pr).flatten(1)
        loss_a = -(row_tgt[pr + 1] * log_qa).sum() / n_mix  # the move's target: its successor's (the next row)
    loss_d = distill(net, emb, mix) if distill is not None else torch.zeros((), device=dev)
    return loss_t, loss_n, loss_a, loss_d, loss_w


def make_distiller(bases: Any, cfg: MolClassifierTrainConfig, gen: torch.Generator) -> Callable:
    """Distillation of the action head from the state head (optional, ``distill_actions`` > 0).

    For up to ``distill_states`` non-terminal states of the step, ``distill_actions`` moves each are drawn from a
    uniformly chosen base model's policy (with ``distill_uniform`` of uniform mass over valid moves, so rarely
    taken actions are covered too); the successor graphs are scored by the online state head (no gradient) and
    the action head is trained by KL(Q_N(y | s') ‖ Q(y | s, a)): the fast path learns to reproduce exact
    successor scoring where guidance actually moves."""
    env, k = bases.env, cfg.distill_actions

    def distill(net: MolClassifier, emb: Any, data: _StepData) -> torch.Tensor:
        dev = net.device
        mask = env.forward_mask(data.nonterminal).cpu()
        mask[:, env.stop_action] = False
        rows = torch.nonzero(mask.any(1)).squeeze(1)
        if rows.numel() == 0:
            return torch.zeros((), device=dev)
        rows = rows[torch.randperm(rows.numel(), generator=gen)[: cfg.distill_states]]
        states = [data.nonterminal[r] for r in rows.tolist()]
        with torch.no_grad():
            log_pf = bases.log_pf(states)  # [m, R, A]
            pick = torch.randint(bases.m, (len(rows),), generator=gen)
            probs = log_pf[pick, torch.arange(len(rows))].exp()
            probs[:, env.stop_action] = 0.0
            valid = mask[rows].double()
            probs = (1 - cfg.distill_uniform) * probs / probs.sum(1, keepdim=True).clamp_min(1e-300) \
                + cfg.distill_uniform * valid / valid.sum(1, keepdim=True)
            acts = torch.multinomial(probs, k, replacement=True, generator=gen).reshape(-1)
            pair_rows = rows.repeat_interleave(k)
            succ = env.step([data.nonterminal[r] for r in pair_rows.tolist()], acts)
            la = data.logit_alpha[data.nt_traj[pair_rows]]
            target = net.log_q_nonterminal(succ, la if net.cfg.alpha_cond else None).flatten(1)
        pred = net.action_joint(emb, acts.to(dev), pair_rows.to(dev)).flatten(1)
        return (target.exp() * (target - pred)).sum(1).mean()

    return distill


# ----- training -----------------------------------------------------------------------------------------------------
EvalFn = Callable[[MolClassifier], dict]


def train_mol_classifier(
    models: Sequence[MolBaseModel],
    beta: float,
    cfg: MolClassifierTrainConfig = MolClassifierTrainConfig(),
    progress: Callable[[int, dict], None] | None = None,
    evaluate: EvalFn | None = None,
    init: MolClassifier | None = None,
) -> tuple[MolClassifier, dict]:
    """Train a classifier for ``models`` (in this order: label i = model i) sampled at ``beta``; ``init``: a
    classifier of the same configuration to continue from (its weights are copied, the schedule starts anew; an
    A.1 classifier may start a chain run, which adds the mixture head)."""
    from sculpt_core.domains.molecules.compose import models_without_flow, prepare_mol_bases

    bases = prepare_mol_bases(models, beta)  # same library, β in range
    m, env = bases.m, bases.env
    if m < 2:
        raise SculptError("a classifier needs at least two base models")
    device = resolve_device(cfg.device)  # None: the default; an absent or unknown device: SculptError
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ccfg = MolClassifierConfig(env.n_frags, env.max_frags, m, cfg.n_labels, cfg.alpha_cond, cfg.hidden, cfg.n_layers,
                               cfg.action_head, cfg.action_rank, mixture_head=cfg.objective == "chain")
    net = MolClassifier(ccfg, env).to(device)
    if init is not None:
        if {**init.cfg.to_dict(), "mixture_head": ccfg.mixture_head} != ccfg.to_dict():
            raise SculptError(f"cannot continue from a classifier with another configuration ({init.cfg.to_dict()} "
                              f"vs {ccfg.to_dict()})")
        # an A.1 classifier warm-starts the chain objective: every shared weight is copied, the mixture head is new
        missing, unexpected = net.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith("mixture_head.") for k in missing):
            raise SculptError(f"cannot continue from this classifier (missing {missing}, unexpected {unexpected})")
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    frac = cfg.lr_final_fraction
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: frac + (1 - frac) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    chunk = min(cfg.sample_batch, cfg.steps * cfg.trajectories_per_model)  # short runs sample no more than they use
    streams = [_Stream.of_model(mod, float(beta), chunk, cfg.reuse, gen) for mod in bases.models]
    for mod in bases.models:
        mod.net.eval()
    chain = cfg.objective == "chain"
    mix_stream = _Stream("the mixture chain", env, lambda: MixtureChainPolicy(bases, target), chunk, cfg.reuse, gen,
                         float(beta)) if chain else None
    branch_stream = _Stream("guided branches", env, lambda: branch_policy(bases, target, cfg, gen), chunk, cfg.reuse,
                            gen, float(beta)) if chain and cfg.branch_fraction > 0 else None
    distill = make_distiller(bases, cfg, gen) if (cfg.distill_actions > 0 and cfg.action_head) else None
    posterior, offsets = None, None
    if cfg.terminal_target == "flow":
        missing = models_without_flow(bases.models)
        if missing:
            raise SculptError(f"no learned state flow in {', '.join(missing)}: use terminal_target='head'")
        if cfg.flow_calibration:
            offsets = calibrate_flows(bases, target, cfg, gen)
        posterior = lambda molecules: bases.log_terminal_posterior(molecules, offsets)  # noqa: E731
    row_targets = make_tree_targets(bases, target, cfg.n_labels, cfg.tree_lambda, posterior is not None, offsets) \
        if cfg.backup == "tree" else None
    history: list[dict] = []
    start = time.perf_counter()
    sample_s = 0.0
    step, last = 0, {}
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        trajs = [(i, *t) for i, st in enumerate(streams) for t in st.take(cfg.trajectories_per_model)]
        sample_s += time.perf_counter() - t0
        if cfg.alpha_cond:
            la = (torch.rand(len(trajs), generator=gen) * 2 - 1) * cfg.logit_alpha_range
        else:
            la = torch.zeros(len(trajs))
        data = _assemble(trajs, cfg.final_as_nonterminal, la)
        if chain:
            t0 = time.perf_counter()
            n_branch = round(cfg.branch_fraction * m * cfg.trajectories_per_model)
            mix_trajs = [(-1, *t) for t in mix_stream.take(m * cfg.trajectories_per_model - n_branch)]
            if n_branch:  # the tree backup's targets do not depend on the policy that made the moves: every state trains
                mix_trajs += [(-1, st, ac, 0 if row_targets is not None else first)
                              for st, ac, first in branch_stream.take(n_branch)]
            sample_s += time.perf_counter() - t0
            mla = (torch.rand(len(mix_trajs), generator=gen) * 2 - 1) * cfg.logit_alpha_range if cfg.alpha_cond \
                else torch.zeros(len(mix_trajs))
            mix = _assemble(mix_trajs, True, mla)
            loss_t, loss_n, loss_a, loss_d, loss_w = chain_losses(net, target, data, mix, m, distill, posterior,
                                                                  row_targets)
        else:
            loss_t, loss_n, loss_a, loss_d = classifier_losses(net, target, data, m, distill)
            loss_w = torch.zeros(())
        lam = min(1.0, step / cfg.warmup)
        loss = loss_t + loss_w + lam * (loss_n + cfg.action_weight * loss_a + cfg.distill_weight * loss_d)
        if not math.isfinite(float(loss.detach())):
            raise SculptError(f"classifier training diverged at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_t, p in zip(target.parameters(), net.parameters()):
                p_t.mul_(cfg.ema).add_(p, alpha=1 - cfg.ema)
        elapsed = time.perf_counter() - start
        timed_out = cfg.time_limit_s is not None and elapsed >= cfg.time_limit_s
        last = {"loss": float(loss.detach()), "loss_terminal": float(loss_t.detach()),
                "loss_nonterminal": float(loss_n.detach()), "loss_action": float(loss_a.detach()),
                "loss_distill": float(loss_d.detach()), "loss_mixture": float(loss_w.detach()),
                "elapsed_s": elapsed, "sample_s": sample_s}
        if step % cfg.eval_every == 0 or step == cfg.steps or timed_out:
            if evaluate is not None:
                net.eval()
                last.update(evaluate(net))
                net.train()
            history.append({"step": step, **{k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()}})
        if progress:
            progress(step, dict(last))
        if timed_out:
            break
    net.eval()
    all_streams = [s for s in (*streams, mix_stream, branch_stream) if s is not None]
    seconds = time.perf_counter() - start
    info = {"steps": step, "seconds": seconds, "sample_seconds": sample_s, "history": history,
            "trajectories_sampled": sum(s.sampled for s in all_streams),
            "invalid_dropped": sum(s.invalid for s in all_streams),
            "objective": cfg.objective, "terminal_target": cfg.terminal_target, "backup": cfg.backup,
            "tree_lambda": cfg.tree_lambda if cfg.backup == "tree" else None,
            "flow_offsets": None if offsets is None else [round(float(c), 4) for c in offsets],
            "device": str(device), "torch_threads": torch.get_num_threads(), **last}
    return net, info


__all__ = ["BACKUPS", "DEFAULT_BACKUP", "TREE_EMA", "BranchPolicy", "DEFAULT_BRANCH_FRACTION", "DEFAULT_OBJECTIVE", "MixtureChainPolicy", "branch_policy", "calibrate_flows", "MolClassifierTrainConfig", "OBJECTIVES", "TERMINAL_TARGETS", "chain_losses", "classifier_losses", "make_distiller", "label_targets", "make_tree_targets",
           "train_mol_classifier"]
