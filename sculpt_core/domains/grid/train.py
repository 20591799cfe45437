"""Training grid base GFlowNets (trajectory balance or detailed balance), fast by design.

Why it is fast: the grid has only H^ndim states, so each step evaluates the network once on *all*
states (one batched forward/backward, independent of the batch size) and rolls out a large batch of
trajectories by table look-up. Large batches give low-variance gradients; a cosine learning-rate
decay settles the policy; exact L1 (dynamic programming) is cheap enough to check every few steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from sculpt_core.domains.grid.env import GridEnv
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.exact import log_terminal
from sculpt_core.core.metrics import l1_distance
from sculpt_core.domains.grid.sampling import rollout_from_tables
from sculpt_core.domains.grid.model import GridBaseModel
from sculpt_core.domains.grid.policy import GridPolicyConfig, GridPolicyNet
from sculpt_core.core.nets import thermometer
from sculpt_core.core.losses import detailed_balance_loss, trajectory_balance_loss


@dataclass(frozen=True)
class GridTrainConfig:
    """Hyper-parameters of base-model training (defaults reach L1 ≤ 0.05 on smooth rewards in minutes on 2 cores)."""

    loss: str = "tb"  # "tb" (trajectory balance) or "db" (detailed balance with learned log F)
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    lr_log_z: float = 0.1
    lr_final_fraction: float = 0.02  # cosine decay to this fraction of lr
    epsilon: float = 0.05  # exploration: (1-ε)·π + ε·uniform(valid actions)
    hidden: int = 256
    n_hidden: int = 2
    learned_pb: bool = False
    aux_flow: bool = True  # TB only: also fit the log F head (DB on the detached policy) so u = F/Z is available
    flow_hidden: int = 0  # > 0: the flow is its own MLP of this width, so its loss never moves the policy
    seed: int = 100
    eval_every: int = 100
    target_l1: float | None = None  # stop early once exact L1 to the target is ≤ this
    beta_range: tuple[float, float] | None = None  # train a β-conditioned model over this exponent range
    beta_bins: int = 32
    betas_per_step: int = 8
    device: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("tb", "db"):
            raise SculptError(f"loss must be 'tb' or 'db', got {self.loss!r}")
        for name in ("steps", "batch_size", "eval_every", "hidden", "n_hidden", "betas_per_step"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SculptError(f"{name} must be a positive integer, got {value!r}")
        if not (0.0 <= self.epsilon < 1.0):
            raise SculptError(f"epsilon must be in [0, 1), got {self.epsilon}")
        if self.beta_range is not None and not (0 < self.beta_range[0] < self.beta_range[1]):
            raise SculptError(f"beta_range must satisfy 0 < low < high, got {self.beta_range}")


ProgressFn = Callable[[int, dict], None]

#: The largest |β · log R(x)| (β = 1/T, or the top of the β range) training accepts: the network and log Z are
#: float32, so beyond this the loss loses every digit (cells at −inf, forbidden cells, are exempt).
MAX_ABS_SCALED_LOG_REWARD = 1e4


def check_train_inputs(log_reward: torch.Tensor, temperature: float, cfg: GridTrainConfig) -> None:
    """Everything :func:`train_grid_model` checks before it starts (callers with a progress bar call it before
    opening the bar): a positive finite temperature, a square log-reward without NaN or +inf, its scale."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise SculptError(f"temperature must be a positive finite number, got {temperature!r}")
    if log_reward.dim() < 1 or len(set(log_reward.shape)) != 1:
        raise SculptError(f"log-reward must be a square grid array, got shape {tuple(log_reward.shape)}")
    if torch.isnan(log_reward).any() or torch.isposinf(log_reward).any():
        raise SculptError("log-reward contains NaN or +inf")
    check_training_scale(log_reward, temperature, cfg.beta_range)


def check_training_scale(log_reward: torch.Tensor, temperature: float,
                         beta_range: tuple[float, float] | None = None) -> None:
    """SculptError, before training, when β · log R leaves [−1e4, 1e4] in some cell (a tiny temperature, or a
    huge constant in the log-rewards), saying how to fix it, where training would diverge or learn nothing."""
    finite = log_reward[torch.isfinite(log_reward)].double()
    if not finite.numel():
        return
    beta = max(1.0 / temperature, beta_range[1] if beta_range else 0.0)
    peak = float(finite.abs().max()) * beta
    if not math.isfinite(peak) or peak > MAX_ABS_SCALED_LOG_REWARD:
        raise SculptError(f"the scaled log-reward β·log R reaches {peak:.3g} (β = {beta:.3g}, max |log R| = "
                          f"{float(finite.abs().max()):.3g}); training needs |β·log R| ≤ {MAX_ABS_SCALED_LOG_REWARD:g}: "
                          "raise the temperature, or subtract a constant from the log-rewards (it does not change "
                          "the distribution)")


def train_grid_model(
    log_reward: torch.Tensor,
    temperature: float = 1.0,
    cfg: GridTrainConfig = GridTrainConfig(),
    reward_name: str = "custom",
    progress: ProgressFn | None = None,
) -> tuple[GridBaseModel, dict]:
    """Train a base model towards p(x) ∝ R(x)^(1/T) (or ∝ R^β for every β in ``cfg.beta_range``).

    ``log_reward`` is log R per cell, shape ``(H,)*ndim``. Returns the model and a metrics dict
    (final exact L1, loss, steps run, wall time, L1 history).
    """
    check_train_inputs(log_reward, temperature, cfg)
    device = torch.device(cfg.device) if cfg.device else torch.device("cpu")
    height, ndim = int(log_reward.shape[0]), int(log_reward.dim())
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    conditional = cfg.beta_range is not None
    net_cfg = GridPolicyConfig(height, ndim, cfg.hidden, cfg.n_hidden, cfg.beta_bins if conditional else 0, cfg.learned_pb,
                               cfg.flow_hidden)
    net = GridPolicyNet(net_cfg).to(device)
    env = GridEnv(height, ndim, device)
    net.env = env
    states = env.all_states()
    flat_log_r = log_reward.to(device).double().flatten().clamp(min=-1e4)  # -inf cells become "practically forbidden"

    head_params = [p for n, p in net.named_parameters() if not n.startswith("log_z")]
    z_params = [p for n, p in net.named_parameters() if n.startswith("log_z")]
    opt = torch.optim.Adam([{"params": head_params, "lr": cfg.lr}, {"params": z_params, "lr": cfg.lr_log_z}])
    flow_params = [p for n, p in net.named_parameters() if n.startswith("flow_net.")]
    clip_groups = [[p for n, p in net.named_parameters() if not n.startswith("flow_net.")]] + ([flow_params] if flow_params else [])
    schedule = lambda step: cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [schedule, schedule])

    meta = {"reward": reward_name, "temperature": float(temperature), "height": height, "ndim": ndim, "loss": cfg.loss,
            "has_flow": cfg.loss == "db" or cfg.aux_flow,
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
    if conditional:
        meta["beta_cond"] = {"low": 0.0, "high": float(cfg.beta_range[1]), "bins": cfg.beta_bins,
                             "train_low": float(cfg.beta_range[0])}
        meta["beta_default"] = 1.0 / float(temperature)
    model = GridBaseModel(net, meta, log_reward.detach().cpu().double(), reward_name)

    history: list[tuple[int, float]] = []
    start = time.perf_counter()
    loss_value = float("nan")
    step = 0
    for step in range(1, cfg.steps + 1):
        betas = _draw_betas(cfg, temperature, gen, device)  # [K]
        loss = _loss_on_batch(net, env, states, flat_log_r, betas, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in clip_groups:  # a separate flow MLP is clipped on its own, so it cannot rescale policy steps
            torch.nn.utils.clip_grad_norm_(group, 10.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise SculptError(f"training diverged at step {step} (loss {loss_value}); lower the learning rate")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            l1 = exact_l1(model)
            history.append((step, l1))
            if progress:
                progress(step, {"loss": loss_value, "l1": l1, "elapsed_s": time.perf_counter() - start})
            if cfg.target_l1 is not None and l1 <= cfg.target_l1:
                break
    elapsed = time.perf_counter() - start
    net.eval()
    final_l1 = history[-1][1] if history else exact_l1(model)
    meta.update({"steps": step, "seed": cfg.seed, "final_loss": loss_value, "l1": final_l1, "train_seconds": round(elapsed, 2)})
    return model, {"l1": final_l1, "loss": loss_value, "steps": step, "seconds": elapsed, "history": history}


def exact_l1(model: GridBaseModel, beta: float | None = None) -> float:
    """Exact L1 between the model's terminal distribution and its true target ∝ R^β (β = 1/T by default)."""
    target = model.target_log_p(beta)
    if target is None:
        raise SculptError("model has no stored reward, so its L1 to the target is unknown")
    log_p = log_terminal(model.env, model.tables(beta).log_pf)
    return l1_distance(log_p.exp(), target.exp())


def _draw_betas(cfg: GridTrainConfig, temperature: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    if cfg.beta_range is None:
        return torch.tensor([1.0 / temperature], dtype=torch.float64, device=device)
    low, high = cfg.beta_range
    betas = low + (high - low) * torch.rand(cfg.betas_per_step, generator=gen, device=device, dtype=torch.float64)
    betas[0] = 1.0 / temperature  # always train the default exponent too
    return betas


def _loss_on_batch(
    net: GridPolicyNet,
    env: GridEnv,
    states: torch.Tensor,
    flat_log_r: torch.Tensor,
    betas: torch.Tensor,
    cfg: GridTrainConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """One step's loss: network on every state (per β), roll-outs by look-up, TB or DB on the visited transitions."""
    n_states, k = env.n_states, len(betas)
    if net.cfg.cond_dim:
        cond = thermometer(betas, net.cfg.cond_dim, 0.0, float(cfg.beta_range[1]))  # [K, bins]
        x = torch.cat([env.encode(states).repeat(k, 1), cond.repeat_interleave(n_states, 0)], dim=1)
        out = net.body(x)
        log_z = net.log_z(cond)  # [K]
    else:
        out = net.raw(states)
        log_z = net.log_z().reshape(1)
    all_states = states.repeat(k, 1)
    log_pf, log_pb, log_flow = net.split(out, all_states)  # rows: k * n_states + flat index
    per_cond = max(1, cfg.batch_size // k)
    cond_idx = torch.arange(k, device=states.device).repeat_interleave(per_cond)
    traj_idx, actions, valid = rollout_from_tables(env, log_pf.detach(), cond_idx * env.n_states, cfg.epsilon, gen)
    rows = cond_idx[:, None] * n_states + traj_idx  # [B, T+1]
    target = betas[cond_idx] * flat_log_r[traj_idx.gather(1, _last_index(valid))[:, 0]]  # β·log R(x)
    a = actions.clamp(min=0)
    step_log_pf = log_pf[rows[:, :-1], a].masked_fill(~valid, 0.0)  # [B, T]
    is_move = valid & (actions != env.stop_action)
    child_rows = rows[:, 1:]
    step_log_pb = log_pb[child_rows, a.clamp(max=env.ndim - 1)].masked_fill(~is_move, 0.0)
    flow_s = log_flow[rows[:, :-1]]
    is_stop = valid & (actions == env.stop_action)
    flow_next = torch.where(is_stop, target[:, None].expand_as(flow_s), log_flow[child_rows])
    if cfg.loss == "db":
        return detailed_balance_loss(flow_s[valid], step_log_pf[valid], flow_next[valid], step_log_pb[valid])
    loss = trajectory_balance_loss(log_z[cond_idx], step_log_pf.sum(1), step_log_pb.sum(1), target)
    if cfg.aux_flow:  # the flow head learns the policy's flows; the policy itself gets TB gradients only
        loss = loss + detailed_balance_loss(flow_s[valid], step_log_pf.detach()[valid], flow_next[valid], step_log_pb.detach()[valid])
    return loss


def _last_index(valid: torch.Tensor) -> torch.Tensor:
    """Index (into the state sequence) of the state where stop was taken, ``[B, 1]``."""
    return (valid.sum(1, keepdim=True) - 1).clamp(min=0)
