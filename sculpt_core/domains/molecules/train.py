"""Training β-conditioned molecule base GFlowNets with trajectory balance (the paper's recipe, CPU-sized).

One step:

1. draw β ~ Uniform[low, high] per trajectory and roll out ``batch_size`` trajectories on-policy with
   ε-uniform exploration over valid actions (ε = 0.1, as the paper's molecule training; classifier training
   and evaluation sample strictly on-policy);
2. assemble the molecules and score them: log R = β·log(max(R, 1e-30)), invalid molecules −75, clipped
   below at −75 (as the paper's code does);
3. keep the roll-out's own forward passes differentiable (one per roll-out step: the loss needs no second
   pass over the visited states; :func:`batched_step_terms` is that second pass, kept as the reference the
   tests compare with), and take the trajectory-balance loss
   (log Z(β) + Σ log p_F − Σ log p_B − log R)² with the uniform backward policy (−log n_parents);
4. train the state log-flow head jointly by detailed balance on the DETACHED policy (the head reads the
   detached trunk, so the policy receives TB gradients only): (log F(s) + log p_F(s'|s) − log F(s') −
   log p_B(s|s'))², with log F(x after Stop) = log R(x). This makes ``MolBaseModel.log_flow`` usable for
   "Model F" reaching (log u(s) = log F(s) − log Z);
5. Adam (β1 0.9, β2 0.999, weight decay 1e-8) with a separate log Z group, gradient clipping to norm 10 for
   EACH parameter tensor separately (not one global norm), learning rates lr·2^(−step/half_life) (the
   paper's schedule form, with half-lives 20 000 steps for the network and 50 000 for log Z).

CPU defaults (see MolTrainConfig): the paper's 20 000 steps × 64 trajectories at lr 5e-4 would take 4–7 h
per model on one core (0.75–1.25 s per step, network 64 wide × 4 layers, 1 thread), so the defaults use
lr 1e-3 halving every 2000 steps and a fast log Z learning rate (3e-2, halving every 5000 steps; log Z(β)
spans tens of nats over β ∈ [0, 96]). Measured on the shared 2-core machine (1 thread, batch 64): the
fraction of on-policy samples in the Table 1 high bin at β = 32 passes 90% after ~100 steps for QED and SA
and ~300–550 steps for sEH (98.6% at 900 steps), with uniqueness 1.0 throughout; the TB loss keeps falling
long after that (sEH 330 → 29 over 900 steps), so shipped models should train for a few thousand steps.
Use one torch thread per training process on this machine: with 2 threads and other jobs running, the
thread pool oversubscribes the cores and a step gets ~10× slower.

Rewards are pluggable: a callable ``list[Chem.Mol] -> [N] tensor`` (NaN = could not be scored → treated as
invalid). :func:`reward_fn` gives the paper's three from ``rewards.molecules``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from sculpt_core.device import resolve_device
from sculpt_core.domains.molecules.env import FragmentEnv
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.sampling import MolTrajectories, sample_trajectories
from sculpt_core.domains.molecules.model import MolBaseModel, PerTrajectoryBetaPolicy

RewardFn = Callable[[Sequence], torch.Tensor]
ProgressFn = Callable[[int, dict], None]

#: Table 1 thresholds ("high" iff r ≥ t, "low" iff r < t).
REWARD_THRESHOLDS: dict[str, float] = {"seh": 0.5, "sa": 0.6, "qed": 0.25}
INVALID_LOG_REWARD = -75.0
LOG_REWARD_MIN = -75.0
R_MIN = 1e-30


# ----- rewards ---------------------------------------------------------------------------------------------
def reward_fn(name: str) -> RewardFn:
    """The paper's flat reward ``name`` ∈ {seh, sa, qed} as ``mols -> [N] float32`` (NaN = unscorable).

    Values equal the matching column of :func:`~sculpt_core.domains.molecules.rewards.score_mols` (same functions),
    but only the requested reward is computed: SA and QED work without the sEH proxy weights, and sEH
    training does not pay for SA/QED."""
    from sculpt_core.domains.molecules import rewards as rm

    key = name.lower()
    if key == "seh":
        from sculpt_core.domains.molecules.seh_proxy import seh_unavailable_reason

        reason = seh_unavailable_reason()
        if reason is not None:
            raise SculptError(f"the sEH reward is unavailable: {reason}")

        def seh(mols: Sequence) -> torch.Tensor:
            # score_mols' sEH column without its SA/QED columns (they would double the cost of a step)
            from sculpt_core.domains.molecules.seh_proxy import seh_proxy_raw

            if not mols:
                return torch.zeros(0)
            raw = seh_proxy_raw(mols)
            ok = np.array([m is not None and m.GetNumAtoms() > 0 for m in mols], dtype=bool) & ~np.isnan(raw)
            out = np.full(len(mols), np.nan, dtype=np.float32)
            if ok.any():
                out[ok] = rm.seh_reward(raw[ok])
            return torch.from_numpy(out)

        return seh
    if key == "sa":
        def sa(mols: Sequence) -> torch.Tensor:
            scores = np.array([rm.sa_score(m) if m is not None else np.nan for m in mols], dtype=np.float64)
            out = np.full(len(mols), np.nan, dtype=np.float32)
            ok = ~np.isnan(scores)
            if ok.any():
                out[ok] = rm.sa_reward(scores[ok])
            return torch.from_numpy(out)

        return sa
    if key == "qed":
        def qed(mols: Sequence) -> torch.Tensor:
            return torch.tensor([rm.qed(m) if m is not None else float("nan") for m in mols], dtype=torch.float32)

        return qed
    raise SculptError(f"unknown molecule reward {name!r}; choose one of seh, sa, qed")


def score_unique(fn: RewardFn, mols: Sequence) -> torch.Tensor:
    """``fn`` on the molecules as float32 ``[N]``, NaN for None, calling ``fn`` once per distinct Mol object
    (:meth:`FragmentEnv.to_mols` gives equal states one shared Mol; a trajectory batch at low β repeats some),
    so a reward that is a function of the molecule gets the same values as scoring every entry."""
    where: dict[int, int] = {}
    distinct: list = []
    for m in mols:
        if m is not None and id(m) not in where:
            where[id(m)] = len(distinct)
            distinct.append(m)
    rewards = torch.full((len(mols),), float("nan"))
    if distinct:
        scores = fn(distinct).float().cpu().reshape(-1)
        if scores.numel() != len(distinct):
            raise SculptError(f"the reward returned {scores.numel()} values for {len(distinct)} molecules")
        ok = [i for i, m in enumerate(mols) if m is not None]
        rewards[ok] = scores[[where[id(mols[i])] for i in ok]]
    return rewards


def log_rewards(rewards: torch.Tensor, betas: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """β·log(max(R, 1e-30)) for valid molecules, −75 for invalid ones, clipped below at −75 (float64)."""
    r = rewards.double().nan_to_num(0.0).clamp(min=R_MIN)
    out = betas.double() * r.log()
    out = torch.where(valid & torch.isfinite(rewards), out, torch.full_like(out, INVALID_LOG_REWARD))
    return out.clamp(min=LOG_REWARD_MIN)


# ----- configuration ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MolTrainConfig:
    """Hyper-parameters of molecule base-model training (CPU-friendly defaults).

    The paper: 20 000 steps × 64 trajectories; lr 5e-4 for sEH and SA, 1e-4 for QED; log Z lr 5e-4 (sEH, SA)
    or 1e-3 (QED); Adam weight decay 1e-8; per-tensor clipping at norm 10; ε = 0.1; β ~ Uniform[0, 96].
    """

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_log_z: float = 3e-2
    lr_half_life: float = 2000.0       # net lr · 2^(−step/half_life)   (paper: 5e-4 / 20 000)
    lr_log_z_half_life: float = 5000.0  # log Z lr · 2^(−step/half_life) (paper: 5e-4 or 1e-3 / 50 000)
    weight_decay: float = 1e-8
    clip_grad: float = 10.0            # per parameter tensor
    epsilon: float = 0.1
    beta_range: tuple[float, float] = (0.0, 96.0)
    hidden: int = 64
    n_layers: int = 4
    max_frags: int = 9
    flow_weight: float = 1.0
    seed: int = 100
    eval_every: int = 100
    eval_n: int = 128
    eval_beta: float = 32.0
    time_limit_s: float | None = None  # stop after this many seconds (the last step finishes)
    save_every: int = 0                # > 0: write the checkpoint every this many steps (long background runs)
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "hidden", "n_layers", "eval_every", "eval_n", "max_frags"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SculptError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "lr_log_z", "lr_half_life", "lr_log_z_half_life", "clip_grad"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SculptError(f"{name} must be a positive number, got {value!r}")
        if not 0.0 <= self.epsilon < 1.0:
            raise SculptError(f"epsilon must be in [0, 1), got {self.epsilon}")
        low, high = self.beta_range
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
            raise SculptError(f"beta range must satisfy 0 ≤ low ≤ high, got {self.beta_range}")
        if not low <= self.eval_beta <= high:
            raise SculptError(f"evaluation β = {self.eval_beta} lies outside the training range {self.beta_range}")


# ----- training ----------------------------------------------------------------------------------------------
def train_mol_model(
    reward: str | RewardFn,
    cfg: MolTrainConfig = MolTrainConfig(),
    env: FragmentEnv | None = None,
    reward_name: str | None = None,
    threshold: float | None = None,
    progress: ProgressFn | None = None,
    model: MolBaseModel | None = None,
    checkpoint: str | None = None,
) -> tuple[MolBaseModel, dict]:
    """Train a β-conditioned base model on ``reward`` (a name from :data:`REWARD_THRESHOLDS` or a callable).

    ``threshold`` defines the "high" bin reported during evaluation (default: the Table 1 threshold of a
    named reward, else 0.5). ``model`` continues training an existing model (steps and history accumulate).
    ``checkpoint``: path written (atomically: a run killed between saves keeps the last complete file) every
    ``cfg.save_every`` steps and at the end. ``progress(step, metrics)`` is
    called every step (metrics: loss, tb_loss, flow_loss, mean_reward, invalid, log_z, elapsed_s) and, at
    evaluation steps, also gets high_frac / uniqueness / eval_mean_reward of on-policy samples at
    ``cfg.eval_beta``. Returns the model (meta holds the training figures) and an info dict."""
    if isinstance(reward, str):
        name = reward_name or reward.lower()
        thr = threshold if threshold is not None else REWARD_THRESHOLDS.get(reward.lower(), 0.5)
        fn = reward_fn(reward)
    elif callable(reward):
        name, thr, fn = reward_name or "custom", (0.5 if threshold is None else threshold), reward
    else:
        raise SculptError("reward must be a reward name or a callable mols -> rewards")
    device = resolve_device(cfg.device)  # None: the default; an absent or unknown device: SculptError
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if model is None:
        env = env if env is not None else FragmentEnv(max_frags=cfg.max_frags)
        model = MolBaseModel.create(env, cfg.hidden, cfg.n_layers, name=name, beta_high=max(96.0, cfg.beta_range[1]))
    env = model.env
    prev_steps = int(model.meta.get("steps", 0))
    prev_seconds = float(model.meta.get("train_seconds", 0.0))
    history: list[dict] = list(model.meta.get("history", []))
    model.net.to(device).train()
    model.meta.pop("flow_fit", None)  # training moves the flow head and the policy: a recorded refit no longer holds
    model.meta.update({"reward": name, "beta_range": [float(cfg.beta_range[0]), float(cfg.beta_range[1])],
                       "threshold": float(thr), "has_flow": True, "loss": "tb+db_flow",
                       "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}})
    net = model.net
    opt, sched = make_optimizer(model, cfg, prev_steps)
    start = time.perf_counter()
    step, metrics = 0, {}
    for step in range(1, cfg.steps + 1):
        metrics = train_step(model, fn, cfg, opt, gen)
        sched.step()
        if not math.isfinite(metrics["loss"]):
            raise SculptError(f"training diverged at step {step} (loss {metrics['loss']}); lower the learning rate")
        metrics["elapsed_s"] = time.perf_counter() - start
        timed_out = cfg.time_limit_s is not None and metrics["elapsed_s"] >= cfg.time_limit_s
        if step % cfg.eval_every == 0 or step == cfg.steps or timed_out:
            ev = evaluate_high_fraction(model, fn, thr, cfg.eval_beta, cfg.eval_n, seed=cfg.seed + step)
            metrics.update(ev)
            history.append({"step": prev_steps + step, "seconds": round(prev_seconds + metrics["elapsed_s"], 1),
                            **{k: round(float(v), 4) for k, v in metrics.items() if k != "elapsed_s"}})
        if progress:
            progress(step, dict(metrics))
        if checkpoint and cfg.save_every and step % cfg.save_every == 0:
            _record(model, prev_steps + step, cfg, prev_seconds + time.perf_counter() - start, device, history)
            model.save(checkpoint)
            net.train()
        if timed_out:
            break
    elapsed = time.perf_counter() - start
    _record(model, prev_steps + step, cfg, prev_seconds + elapsed, device, history)
    if checkpoint:
        model.save(checkpoint)
    last = history[-1] if history else {}
    return model, {**last, "steps": step, "seconds": elapsed, "history": history}


def make_optimizer(model: MolBaseModel, cfg: MolTrainConfig, prev_steps: int = 0
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with a separate log Z group and the halving schedules of ``cfg``; the decay continues from
    ``prev_steps`` when a model is resumed (Adam moments restart)."""
    net = model.net
    z_params = list(net.log_z_net.parameters())
    z_ids = {id(p) for p in z_params}
    other = [p for p in net.parameters() if id(p) not in z_ids]
    opt = torch.optim.Adam([{"params": other, "lr": cfg.lr}, {"params": z_params, "lr": cfg.lr_log_z}],
                           betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda s: 2.0 ** (-(prev_steps + s) / cfg.lr_half_life),
                                                    lambda s: 2.0 ** (-(prev_steps + s) / cfg.lr_log_z_half_life)])
    return opt, sched


def _record(model: MolBaseModel, steps: int, cfg: MolTrainConfig, seconds: float, device: torch.device,
            history: list[dict]) -> None:
    """Put the training figures into the model metadata and switch it to evaluation mode."""
    model.net.eval()
    last = history[-1] if history else {}
    model.meta.update({"steps": steps, "seed": cfg.seed,
                       "train_seconds": round(seconds, 1),
                       "device": str(device), "torch_threads": torch.get_num_threads(),
                       "final": {k: last.get(k) for k in ("high_frac", "uniqueness", "eval_mean_reward", "loss")},
                       "eval_beta": cfg.eval_beta, "history": history})


class _PhaseClock:
    """Adds the seconds since the previous lap to ``timings[name]`` (does nothing when timings is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def _per_tensor_clip(params, max_norm: float) -> None:
    for p in params:
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_(p, max_norm)


class _RecordingPolicy:
    """The model with one β per trajectory whose forward passes keep their autograd graph.

    The roll-out runs under ``no_grad``; :meth:`log_probs` re-enables gradients for the policy's own forward
    pass, returns the log-probs detached (so the draws are those of :class:`PerTrajectoryBetaPolicy`), and
    :meth:`advance` keeps, per step, the log-prob of the action taken and the state's log-flow WITH their
    graphs. The loss then needs no second forward pass over every visited state (it used to cost about as
    much as the roll-out). The carry is the trajectory index."""

    def __init__(self, model: MolBaseModel, betas: torch.Tensor) -> None:
        self.model = model
        self.cond = model.cond(betas, betas.numel())  # validates β like PerTrajectoryBetaPolicy
        self.steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (trajectory, log p_F(a), log F)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def env(self) -> FragmentEnv:
        return self.model.env

    def start(self, n: int) -> torch.Tensor:
        if n != self.cond.shape[0]:
            raise SculptError(f"policy holds {self.cond.shape[0]} β values, asked for {n} trajectories")
        return torch.arange(n)

    def log_probs(self, states: Sequence, carry: torch.Tensor) -> torch.Tensor:
        net, env, device = self.model.net, self.model.env, self.model.device
        with torch.enable_grad():
            batch = env.batch_graphs(states).to(device)
            out = net(batch, self.cond[carry.to(device)])
            logp = net.masked_log_probs(batch, out, env.forward_mask(states).to(device))
        self._last = (logp, out.log_flow)
        return logp.detach()

    def advance(self, carry: torch.Tensor, states: Sequence, actions: torch.Tensor,
                next_states: Sequence) -> torch.Tensor:
        logp, flow = self._last
        with torch.enable_grad():  # the roll-out calls this under no_grad too
            taken = logp.gather(1, actions.to(logp.device).unsqueeze(1)).squeeze(1)
        self.steps.append((carry, taken, flow))
        return carry

    def trajectory_major(self, traj) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_F of every action taken, log F of every visited non-terminal state), float64, in the order
        of ``traj.transitions()`` (trajectory by trajectory, step by step)."""
        T = len(self.steps)
        key = torch.cat([c * T + t for t, (c, _, _) in enumerate(self.steps)])
        order = torch.argsort(key)
        lpf = torch.cat([lp for _, lp, _ in self.steps])[order.to(self.model.device)]
        flow = torch.cat([f for _, _, f in self.steps])[order.to(self.model.device)]
        if lpf.shape[0] != int(traj.lengths.sum()):
            raise SculptError("recorded steps do not match the trajectories")  # pragma: no cover - invariant
        return lpf.double(), flow.double()


def batched_step_terms(model: MolBaseModel, traj, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for the terms :class:`_RecordingPolicy` records: ONE batched forward pass over every visited
    state (what ``train_step`` did before it reused the roll-out's passes). Returns (log p_F of each action
    taken, log F of each state) float64 with gradients, in ``traj.transitions()`` order. Tests compare the two."""
    env, net, device = model.env, model.net, model.device
    states, actions, _, idx = traj.transitions()
    batch = env.batch_graphs(states).to(device)
    out = net(batch, net.encode_beta(betas.to(device))[idx.to(device)])
    logp = net.masked_log_probs(batch, out, env.forward_mask(states).to(device))
    return logp.gather(1, actions.to(device).unsqueeze(1)).squeeze(1).double(), out.log_flow.double()


def tb_residuals(model: MolBaseModel, traj, betas: torch.Tensor, log_r: torch.Tensor, step_lpf: torch.Tensor
                 ) -> torch.Tensor:
    """Per-trajectory trajectory-balance residual log Z(β) + Σ log p_F − Σ log p_B − log R, float64 ``[B]``
    (uniform backward policy: log p_B = −log n_parents of each state reached, 0 for Stop); ``step_lpf`` in
    ``traj.transitions()`` order. The TB loss is its mean square."""
    env, net, device = model.env, model.net, model.device
    B = len(traj)
    _, actions, nxt, idx = traj.transitions()
    idx_d = idx.to(device)
    step_lpb = torch.where(actions.to(device) == env.stop_action, 0.0, -env.log_n_parents(nxt).to(device))
    sum_lpf = torch.zeros(B, dtype=torch.float64, device=device).index_add(0, idx_d, step_lpf)
    sum_lpb = torch.zeros(B, dtype=torch.float64, device=device).index_add(0, idx_d, step_lpb)
    log_z = net.log_z(net.encode_beta(betas.to(device))).double()
    return log_z + sum_lpf - sum_lpb - log_r


def tb_db_losses(model: MolBaseModel, traj, betas: torch.Tensor, log_r: torch.Tensor, step_lpf: torch.Tensor,
                 flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(trajectory-balance loss, detailed-balance flow loss) of a batch (float64; see the module docstring)
    from the per-step log p_F of the actions taken and log F of the states, in ``traj.transitions()`` order."""
    env, device = model.env, model.device
    _, actions, nxt, idx = traj.transitions()
    idx_d, actions_d = idx.to(device), actions.to(device)
    is_stop = actions_d == env.stop_action
    step_lpb = torch.where(is_stop, 0.0, -env.log_n_parents(nxt).to(device))
    tb = tb_residuals(model, traj, betas, log_r, step_lpf).pow(2).mean()
    flow_next = torch.cat([flow[1:], flow[:1]])  # row k+1 is the next state within a trajectory
    flow_next = torch.where(is_stop, log_r[idx_d], flow_next)
    db = (flow + step_lpf.detach() - flow_next - step_lpb).pow(2).mean()
    return tb, db


def sample_training_batch(model: MolBaseModel, cfg: MolTrainConfig, gen: torch.Generator
                          ) -> tuple[torch.Tensor, MolTrajectories, torch.Tensor, torch.Tensor]:
    """β per trajectory and an ε-exploring roll-out (the draws of :class:`PerTrajectoryBetaPolicy`), with the
    log p_F of every action taken and log F of every state kept differentiable: (betas, traj, lpf, flow)."""
    B = cfg.batch_size
    low, high = cfg.beta_range
    betas = (low + (high - low) * torch.rand(B, generator=gen, dtype=torch.float64)).float()
    policy = _RecordingPolicy(model, betas.to(model.device))
    traj = sample_trajectories(model.env, policy, B, gen, cfg.epsilon, with_smiles=False)
    lpf, flow = policy.trajectory_major(traj)
    return betas, traj, lpf, flow


def train_step(model: MolBaseModel, fn: RewardFn, cfg: MolTrainConfig, opt: torch.optim.Optimizer,
               gen: torch.Generator, timings: dict[str, float] | None = None) -> dict:
    """One TB (+ DB flow) update; returns float metrics of the batch.

    ``timings``: if given, the seconds spent in each phase are added to it under ``rollout`` (with the
    policy's differentiable forward passes), ``assemble`` (states → RDKit molecules), ``reward``,
    ``forward_loss`` and ``backward`` (backward, clipping and the optimiser step), for
    ``bench/mol_train_speed.py``."""
    env, net, device = model.env, model.net, model.device
    clock = _PhaseClock(timings)
    low, high = cfg.beta_range
    betas, traj, step_lpf, flow = sample_training_batch(model, cfg, gen)
    clock.lap("rollout")
    mols = env.to_mols(traj.terminal)
    clock.lap("assemble")
    rewards = score_unique(fn, mols)
    valid = torch.isfinite(rewards)
    log_r = log_rewards(rewards, betas, valid).to(device)
    clock.lap("reward")

    tb, db = tb_db_losses(model, traj, betas, log_r, step_lpf, flow)
    loss = tb + cfg.flow_weight * db
    clock.lap("forward_loss")

    opt.zero_grad(set_to_none=True)
    loss.backward()
    _per_tensor_clip(net.parameters(), cfg.clip_grad)
    opt.step()
    clock.lap("backward")
    r_ok = rewards[valid]
    with torch.no_grad():
        log_z32 = float(net.log_z(net.encode_beta(torch.tensor([32.0], device=device)))[0]) if low <= 32.0 <= high \
            else float("nan")
    return {"loss": float(loss.detach()), "tb_loss": float(tb.detach()), "flow_loss": float(db.detach()),
            "mean_reward": float(r_ok.mean()) if r_ok.numel() else float("nan"),
            "invalid": float((~valid).double().mean()), "mean_len": float(traj.lengths.double().mean()),
            "log_z32": log_z32}


@dataclass(frozen=True)
class TBEvalChunk:
    """A fixed batch of trajectories with their β and log-rewards: the same trajectories score every checkpoint
    of a run, so differences between checkpoints are paired (the on-policy batch loss is far noisier)."""

    traj: MolTrajectories
    betas: torch.Tensor  # [B] float32
    log_r: torch.Tensor  # [B] float64


@torch.no_grad()
def make_tb_eval_set(models: Sequence[MolBaseModel], fn: RewardFn, n_per_model: int,
                     cfg: MolTrainConfig = MolTrainConfig(), seed: int = 0, chunk: int = 64) -> list[TBEvalChunk]:
    """``n_per_model`` trajectories from EACH model, drawn as training draws them (β ~ U[cfg.beta_range], ε =
    cfg.epsilon exploration), scored by ``fn``. Drawing from several checkpoints (e.g. the first and last of a
    run) keeps the set from favouring the policy that produced it."""
    if n_per_model < 1 or chunk < 1:
        raise SculptError("the evaluation set needs at least one trajectory per model and chunk ≥ 1")
    gen = torch.Generator().manual_seed(seed)
    low, high = cfg.beta_range
    out: list[TBEvalChunk] = []
    for model in models:
        was_training = model.net.training
        model.net.eval()
        for start in range(0, n_per_model, chunk):
            b = min(chunk, n_per_model - start)
            betas = (low + (high - low) * torch.rand(b, generator=gen, dtype=torch.float64)).float()
            policy = PerTrajectoryBetaPolicy(model, betas.to(model.device))
            traj = sample_trajectories(model.env, policy, b, gen, cfg.epsilon, with_smiles=False)
            rewards = score_unique(fn, model.env.to_mols(traj.terminal))
            out.append(TBEvalChunk(traj, betas, log_rewards(rewards, betas, torch.isfinite(rewards))))
        model.net.train(was_training)
    return out


@torch.no_grad()
def evaluate_tb_loss(model: MolBaseModel, chunks: Sequence[TBEvalChunk]) -> torch.Tensor:
    """Squared TB residual of every trajectory of a fixed evaluation set under ``model`` (float64 ``[N]``, in
    chunk order); the mean is the TB loss of that set. All chunks must come from ``model``'s library."""
    was_training = model.net.training
    model.net.eval()
    parts = []
    for c in chunks:
        lpf, _ = batched_step_terms(model, c.traj, c.betas)
        parts.append(tb_residuals(model, c.traj, c.betas, c.log_r.to(model.device), lpf).pow(2).cpu())
    model.net.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def evaluate_high_fraction(model: MolBaseModel, fn: RewardFn, threshold: float, beta: float = 32.0,
                           n: int = 128, seed: int = 0) -> dict:
    """On-policy samples at ``beta`` (no exploration): fraction with reward ≥ threshold (invalid = not
    high), uniqueness (InChI, over valid molecules), mean reward of the valid ones, invalid fraction."""
    from sculpt_core.domains.molecules.metrics import uniqueness

    was_training = model.net.training
    model.net.eval()
    gen = torch.Generator().manual_seed(seed)
    traj = sample_trajectories(model.env, model.policy(beta), n, gen, 0.0, with_smiles=False)
    mols = model.env.to_mols(traj.terminal)
    ok = [i for i, m in enumerate(mols) if m is not None]
    rewards = score_unique(fn, mols)
    valid = torch.isfinite(rewards)
    model.net.train(was_training)
    from rdkit import Chem

    smiles = [Chem.MolToSmiles(mols[i]) for i in ok]
    return {"high_frac": float((valid & (rewards.nan_to_num(-1.0) >= threshold)).double().mean()),
            "uniqueness": float(uniqueness(smiles)) if smiles else 0.0,
            "eval_mean_reward": float(rewards[valid].mean()) if valid.any() else float("nan"),
            "eval_invalid": float((~valid).double().mean())}


__all__ = ["INVALID_LOG_REWARD", "LOG_REWARD_MIN", "MolTrainConfig", "REWARD_THRESHOLDS", "RewardFn", "TBEvalChunk",
           "batched_step_terms", "evaluate_high_fraction", "evaluate_tb_loss", "log_rewards", "make_optimizer",
           "make_tb_eval_set", "reward_fn", "sample_training_batch", "score_unique", "tb_db_losses", "tb_residuals",
           "train_mol_model", "train_step"]
