"""Refit a trained base model's state-flow head to the model's own reaching probabilities, policy frozen.

Reaching with learned flows ("Model F") mixes the bases by u_i(s) = F_i(s) / F_i(s0), the probability that model
i's trajectory passes through (the class of) s. A flow head trained by detailed balance next to an imbalanced
policy can be far from that (the shipped bases' heads were 19-34 nats off on real molecules). Here the head is
regressed on estimates of log u itself:

    u(s) = E_{τ ~ Q(· | s)} [ P_F(τ) / Q(τ | s) ]      (class-level backward paths from s to s0, no Stop),

by :func:`~sculpt_core.domains.molecules.marginals.log_reaching` with ``k`` paths per state (unbiased in u; its
log is biased low by Jensen, less as ``k`` grows). On an enumerable library the same quantity is the exact DP's
``log_reaching`` (the tests compare the two). Only the head moves: it reads the trunk detached, so the forward
policy, and everything trained on it (classifiers, tied by :meth:`MolBaseModel.policy_fingerprint`), is unchanged.

How:

1. roll out ``n_traj`` trajectories of every behaviour (the model, the other given models, and their uniform
   ensemble) at each fit β, so the pool covers the states compositions of these models visit; deduplicate by
   class, count visits, keep at most ``max_states`` classes;
2. estimate log u of every pool state at each β (backward importance sampling, ``k`` paths);
3. rebuild the head (wider, deeper, and reading the state's depth, which the mean-pooled embedding lacks: on the
   shipped SA base, 3000 states, the held-out error was 3.1 nats with the old head shape and 1.5 with this one);
   one frozen forward pass per (state, β) stores its input; fit it by Adam (L2 weight decay) on the squared error weighted by visit
   counts (s0 is in the pool with log u = 0, the anchor of F(s0)).

A held-out tenth of the pool states (never in the loss) measures the fit against their own estimates, before and
after (mean absolute and mean signed error); ``bench/mol_reaching_u.py`` checks it against 32-path estimates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from sculpt_core.core.algebra import mixture
from sculpt_core.core.nets import mlp
from sculpt_core.domains.molecules.compose import ReachingPolicy, prepare_mol_bases
from sculpt_core.domains.molecules.env import FragState, canonical_key
from sculpt_core.domains.molecules.marginals import log_reaching
from sculpt_core.domains.molecules.model import MolBaseModel
from sculpt_core.domains.molecules.sampling import sample_trajectories
from sculpt_core.errors import SculptError


#: The β values ``mol fit-flow`` fits at by default (those inside the model's trained range): a head fitted at one
#: β alone was right there and 35 nats off in log p_QED/p_sEH at β = 48 on the shipped bases.
DEFAULT_FIT_BETAS = (8.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0)


def default_fit_betas(model: MolBaseModel) -> tuple[float, ...]:
    """:data:`DEFAULT_FIT_BETAS` inside the model's trained β range (its midpoint when none is)."""
    low, high = model.beta_range
    inside = tuple(b for b in DEFAULT_FIT_BETAS if low <= b <= high)
    return inside or ((low + high) / 2.0,)


@dataclass(frozen=True)
class FlowFitConfig:
    """``betas``: the β values the head is fitted at (and the behaviours rolled out at); ``n_traj``: roll-outs per
    behaviour and β; ``epsilon``: uniform exploration of the roll-outs (widens the pool); ``max_states``: a uniform
    random subset of the visited classes when there are more (s0 always kept; backward sampling costs ~6 ms per
    state and path on one core); ``k``: backward paths per state for its log u estimate; ``steps`` Adam steps of
    ``batch_size`` (state, β) pairs. The head is rebuilt, freshly initialised, with ``head_hidden`` units (0 = the
    trunk's width) × ``head_layers`` and, with ``depth_features``, the depth one-hot in its input
    (:class:`~sculpt_core.domains.molecules.policy.MolPolicyConfig`)."""

    betas: tuple[float, ...] = (32.0,)
    n_traj: int = 256
    epsilon: float = 0.05
    k: int = 6
    max_states: int = 6000
    steps: int = 4000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    head_hidden: int = 256
    head_layers: int = 3
    depth_features: bool = True
    holdout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.betas or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in self.betas):
            raise SculptError(f"fit β values must be finite numbers, got {self.betas!r}")
        for name in ("n_traj", "k", "max_states", "steps", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise SculptError(f"{name} must be a positive integer, got {value!r}")
        if not (0.0 <= self.epsilon < 1.0 and 0.0 <= self.holdout < 1.0 and self.lr > 0 and self.weight_decay >= 0):
            raise SculptError("epsilon and holdout must lie in [0, 1), lr must be positive, weight_decay ≥ 0")
        if not (isinstance(self.head_hidden, int) and self.head_hidden >= 0 and isinstance(self.head_layers, int)
                and self.head_layers >= 1):
            raise SculptError(f"head_hidden must be ≥ 0 and head_layers ≥ 1, got {self.head_hidden!r}, "
                              f"{self.head_layers!r}")


def new_flow_head(model: MolBaseModel, cfg: FlowFitConfig, seed: int) -> tuple[Any, torch.nn.Module]:
    """(the network config with the configured head shape, a freshly initialised head of that shape), seeded
    without touching torch's global generator; nothing is installed (see :func:`install_flow_head`)."""
    net_cfg = replace(model.net.cfg, flow_hidden=cfg.head_hidden, flow_layers=cfg.head_layers,
                      flow_depth=cfg.depth_features)
    depth_dim = net_cfg.max_depth + 1 if net_cfg.flow_depth else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = mlp(2 * net_cfg.hidden + depth_dim, net_cfg.flow_hidden or net_cfg.hidden, net_cfg.flow_layers, 1)
    return net_cfg, head.to(model.device)


def install_flow_head(model: MolBaseModel, net_cfg: Any, head: torch.nn.Module) -> None:
    """Put ``head`` (and the config that describes it, so the checkpoint reloads with it) into the model."""
    model.net.cfg = net_cfg
    model.net.flow_head = head


@torch.no_grad()
def collect_states(models: Sequence[MolBaseModel], cfg: FlowFitConfig, gen: torch.Generator
                   ) -> tuple[list[FragState], torch.Tensor]:
    """One representative per state class visited by ``n_traj`` roll-outs of each model and of their uniform
    ensemble at every fit β (s0 and the final graphs included), with visit counts ``[N]`` float64."""
    env = models[0].env
    index: dict[tuple, int] = {}
    states: list[FragState] = []
    visits: list[float] = []
    for beta in cfg.betas:
        behaviours = [m.policy(float(beta)) for m in models]
        if len(models) > 1:
            behaviours.append(ReachingPolicy(prepare_mol_bases(models, float(beta)), mixture(n_models=len(models)),
                                             ensemble=True))
        for policy in behaviours:
            traj = sample_trajectories(env, policy, cfg.n_traj, gen, cfg.epsilon, with_smiles=False)
            for path in traj.states:
                for state in path[:-1]:  # the last entry repeats the final graph (the Stop)
                    key = canonical_key(state)
                    k = index.get(key)
                    if k is None:
                        k = index[key] = len(states)
                        states.append(state)
                        visits.append(0.0)
                    visits[k] += 1.0
    return states, torch.tensor(visits, dtype=torch.float64)


@torch.no_grad()
def head_inputs(model: MolBaseModel, states: Sequence[FragState], beta: float, batch: int = 512) -> torch.Tensor:
    """The flow head's input (the detached graph embedding) for every state at β ``[N, D]`` float32."""
    captured: list[torch.Tensor] = []
    hook = model.net.flow_head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].detach().cpu()))
    try:
        for lo in range(0, len(states), batch):
            model.log_flow(states[lo:lo + batch], beta)
    finally:
        hook.remove()
    return torch.cat(captured)


def fit_flow_head(model: MolBaseModel, behaviours: Sequence[MolBaseModel], cfg: FlowFitConfig,
                  log: Callable[[str], None] | None = None) -> dict:
    """Refit ``model``'s flow head (see the module docstring); ``behaviours`` are the other models whose roll-outs
    (alone and in the ensemble with ``model``) widen the pool. The new head replaces the old one only once its fit
    is done (an interrupted fit leaves the model as it was). Returns the fit's figures; the held-out errors are
    against the held-out states' own ``k``-path estimates (noisy, biased low for deep states): an independent
    check is ``bench/mol_reaching_u.py`` (32 paths per molecule)."""
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    models, seen = [model], {model.policy_fingerprint()}
    for m in behaviours:  # each distinct policy once (the model itself, named again, is not rolled out twice)
        if m.policy_fingerprint() not in seen:
            seen.add(m.policy_fingerprint())
            models.append(m)
    for m in models:
        for beta in cfg.betas:
            m.betas(float(beta), 1)  # SculptError outside a model's trained range
        if m.env.library.smiles != model.env.library.smiles or m.env.max_frags != model.env.max_frags:
            raise SculptError(f"{m.name!r} uses another fragment library than {model.name!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    states, visits = collect_states(models, cfg, gen)
    visited = len(states)
    if visited > cfg.max_states:
        keep = torch.randperm(visited - 1, generator=gen)[:cfg.max_states - 1] + 1  # index 0 is s0 (first visited)
        keep = torch.cat([torch.zeros(1, dtype=torch.long), keep.sort().values])
        states, visits = [states[i] for i in keep.tolist()], visits[keep]
    say(f"pool: {len(states)} of {visited} visited state classes ({time.perf_counter() - t0:.0f} s)")
    targets, old_log_u = [], []
    for beta in cfg.betas:
        bases = prepare_mol_bases([model], float(beta))
        targets.append(log_reaching(bases, states, cfg.k, gen)[0])
        old_log_u.append(torch.cat([bases.log_pf_and_u(states[lo:lo + 512])[1][0]
                                    for lo in range(0, len(states), 512)]))
        say(f"β = {beta:g}: log u estimated ({cfg.k} backward paths per state), {time.perf_counter() - t0:.0f} s")
    target = torch.stack(targets)  # [nβ, N]
    is_s0 = torch.tensor([s.n_nodes == 0 for s in states])
    held = (torch.rand(len(states), generator=gen) < cfg.holdout) & ~is_s0
    train_idx, held_idx = torch.nonzero(~held).squeeze(1), torch.nonzero(held).squeeze(1)

    def errors(log_u: torch.Tensor) -> tuple[float, float] | tuple[None, None]:
        """(mean |error|, mean error) of log u on the held-out states over the fit β values (None: none held out)."""
        if held_idx.numel() == 0:
            return None, None
        err = log_u[:, held_idx] - target[:, held_idx]
        return round(float(err.abs().mean()), 4), round(float(err.mean()), 4)

    before = errors(torch.stack(old_log_u))
    old_cfg, old_head = model.net.cfg, model.net.flow_head
    net_cfg, head = new_flow_head(model, cfg, cfg.seed)
    install_flow_head(model, net_cfg, head)  # the hook below captures the NEW head's input (its width differs)
    try:
        emb = torch.stack([head_inputs(model, states, float(beta)) for beta in cfg.betas])  # [nβ, N, D]
    finally:
        install_flow_head(model, old_cfg, old_head)  # the model keeps its old head until the fit is done

    def head_log_u() -> torch.Tensor:
        """log u = head(s) − head(s0) at every pool state and fit β ``[nβ, N]``."""
        with torch.no_grad():
            out = head(emb.to(model.device)).squeeze(-1).double().cpu()
        return out - out[:, is_s0].mean(1, keepdim=True)

    n_beta, n_train = len(cfg.betas), train_idx.numel()
    flat_nodes, flat_beta = train_idx.repeat(n_beta), torch.arange(n_beta).repeat_interleave(n_train)
    goal = target[flat_beta, flat_nodes].float()
    weights = visits[flat_nodes].float()
    weights = weights / weights.mean()
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    head.train()
    for step in range(cfg.steps):
        sel = torch.randint(flat_nodes.numel(), (cfg.batch_size,), generator=gen)
        pred = head(emb[flat_beta[sel], flat_nodes[sel]].to(model.device)).squeeze(-1).cpu()
        loss = (weights[sel] * (pred - goal[sel]).pow(2)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % max(cfg.steps // 4, 1) == 0 and held_idx.numel():
            say(f"step {step + 1}/{cfg.steps}: held-out |log u error| {errors(head_log_u())[0]:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
    head.eval()
    after = errors(head_log_u())
    install_flow_head(model, net_cfg, head)
    return {"betas": [float(b) for b in cfg.betas], "visited_states": visited, "pool_states": len(states),
            "held_out": int(held_idx.numel()), "held_out_mae_log_u_before": before[0],
            "held_out_mae_log_u_after": after[0], "held_out_mean_error_before": before[1],
            "held_out_mean_error_after": after[1], "behaviours": [m.name for m in models], "n_traj": cfg.n_traj,
            "k": cfg.k, "steps": cfg.steps,
            "head": {"hidden": net_cfg.flow_hidden or net_cfg.hidden, "layers": net_cfg.flow_layers,
                     "depth_features": net_cfg.flow_depth},
            "seconds": round(time.perf_counter() - t0, 1)}


__all__ = ["DEFAULT_FIT_BETAS", "FlowFitConfig", "collect_states", "default_fit_betas", "fit_flow_head",
           "head_inputs", "install_flow_head", "new_flow_head"]
