"""Training the guidance classifier by Algorithm A.1 of the sculpting paper, on the grid.

Per step, for every base model i: B on-policy trajectories (no exploration). Then
- terminal loss   L_T = −mean log Q_T(y = i | x) over the terminal cells x (label = generating model);
- non-terminal    L_N = Σ_states −Σ_{y2..yn} Π_k w_{y_k}(x) log Q_N(y1 = i, y2..yn | s)  /  (m·B),
  every visited cell s (the terminal cell included, as a non-terminal state) weighted by the EMA *target*
  network's terminal probabilities w(x) (label y2 with the trajectory's α when α-conditioned);
- L = L_T + min(1, step/warmup)·L_N; Adam; target ← 0.995·target + 0.005·online.
Fast by design like the base trainer: the classifier is evaluated once on every state (per α value) and the
visited states are gathered from those tables.

Two estimators of the same objective (``mode``):
- ``"sampled"``: the paper's Monte-Carlo version, B trajectories per model and step;
- ``"expected"`` (default on enumerable environments): the exact expectation over trajectories of the same
  losses — terminal cells weighted by p_i(x), every state s by its reaching probability u_i(s), and the
  target-network weights by their exact conditional expectation E_i[w(x) | s] (a backward DP). Same fixed
  point, no sampling variance, so it converges in far fewer steps.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.domains.grid.compose import GridBases, classifier_policy, prepare_bases
from sculpt_core.errors import SculptError
from sculpt_core.domains.grid.exact import log_terminal
from sculpt_core.core.metrics import l1_distance
from sculpt_core.domains.grid.sampling import rollout_from_tables
from sculpt_core.domains.grid.classifier import GridClassifier, GridClassifierConfig
from sculpt_core.core.guidance import mixture_log_policy
from sculpt_core.core.labels import outer_log, rest_label_log_weights, terminal_joint
from sculpt_core.domains.grid.model import GridBaseModel


#: Classifier objectives: the paper's Algorithm A.1, and the chain posterior (:func:`_chain_expected_losses`).
OBJECTIVES = ("a1", "chain")
#: The grid default: at the same 1500 steps on random unbalanced 9×9 bases the chain objective guides 2.4-6× closer
#: than A.1 on every operator measured (bench/classifier_objectives.py; README, "Classifier objectives").
DEFAULT_OBJECTIVE = "chain"


@dataclass(frozen=True)
class ClassifierTrainConfig:
    steps: int = 1500  # the paper: 15k steps, warm-up 3000, EMA 0.995, lr 1e-3; exact expectations allow a
    trajectories_per_model: int = 128  # 10x shorter schedule with a faster-moving target network
    lr: float = 2e-3
    warmup: int = 200
    ema: float = 0.99
    logit_alpha_range: float = 3.5
    alphas_per_step: int = 8
    n_labels: int = 2
    alpha_cond: bool = False
    hidden: int = 256
    seed: int = 100
    eval_every: int = 250
    lr_final_fraction: float = 0.05
    mode: str = "expected"  # "expected" (exact expectations over trajectories) or "sampled" (Monte Carlo, as in the paper)
    objective: str = DEFAULT_OBJECTIVE  # "a1" (the paper's Algorithm A.1) or "chain" (the posterior Theorem 5.3 needs)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise SculptError(f"unknown classifier objective {self.objective!r}; one of {', '.join(OBJECTIVES)}")
        for name in ("steps", "trajectories_per_model", "warmup", "alphas_per_step", "n_labels", "eval_every"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise SculptError(f"{name} must be a positive integer")
        if self.mode not in ("expected", "sampled"):
            raise SculptError(f"mode must be 'expected' or 'sampled', got {self.mode!r}")


EvalFn = Callable[[GridClassifier], dict]


def train_grid_classifier(
    models: list[GridBaseModel],
    cfg: ClassifierTrainConfig = ClassifierTrainConfig(),
    progress: Callable[[int, dict], None] | None = None,
    evaluate: EvalFn | None = None,
    beta: float | None = None,
) -> tuple[GridClassifier, dict]:
    """Train a classifier for the given base models (evaluated at reward exponent ``beta``)."""
    bases = prepare_bases(models, beta)
    env, m = bases.env, bases.m
    if m < 2:
        raise SculptError("a classifier needs at least two base models")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    chain = cfg.objective == "chain"
    ccfg = GridClassifierConfig(env.height, env.ndim, m, cfg.n_labels, cfg.alpha_cond, cfg.hidden, mixture_head=chain)
    net = GridClassifier(ccfg)
    target_net = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    states = env.all_states()
    base_pf = bases.log_pf.reshape(m * env.n_states, -1)
    n_tr = cfg.trajectories_per_model
    model_of = torch.arange(m).repeat_interleave(n_tr)  # label y1 of each trajectory
    k = cfg.alphas_per_step if cfg.alpha_cond else 1
    history, start, last = [], time.perf_counter(), {}
    for step in range(1, cfg.steps + 1):
        if cfg.alpha_cond:
            logit_alpha = (torch.rand(k, generator=gen) * 2 - 1) * cfg.logit_alpha_range
            logit_alpha[0] = 0.0
        else:
            logit_alpha = torch.zeros(1)
        log_qt = net.log_q_terminal_single(states)  # [N, m]
        log_qn = torch.stack([net.log_q_nonterminal(states, logit_alpha[j] if cfg.alpha_cond else None).flatten(1)
                              for j in range(k)])  # [K, N, m^n]
        with torch.no_grad():
            w_single = target_net.log_q_terminal_single(states).double()  # [N, m] terminal weights of the target net
        if chain:
            log_mw = net.log_mixture_weights(states)  # [N, m]
            with torch.no_grad():
                target_mw = target_net.log_mixture_weights(states).double()
            losses = _chain_expected_losses if cfg.mode == "expected" else _chain_sampled_losses
            loss_t, loss_n, loss_w = losses(bases, cfg, log_qt, log_qn, log_mw, w_single, target_mw, logit_alpha, gen)
        elif cfg.mode == "expected":
            loss_t, loss_n = _expected_losses(bases, cfg, log_qt, log_qn, w_single, logit_alpha)
            loss_w = torch.zeros(())
        else:
            loss_t, loss_n = _sampled_losses(bases, cfg, log_qt, log_qn, w_single, logit_alpha, base_pf, model_of, gen)
            loss_w = torch.zeros(())
        lam = min(1.0, step / cfg.warmup)
        loss = loss_t + loss_w.float() + lam * loss_n.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_t, p in zip(target_net.parameters(), net.parameters()):
                p_t.mul_(cfg.ema).add_(p, alpha=1 - cfg.ema)
        if not math.isfinite(float(loss.detach())):
            raise SculptError(f"classifier training diverged at step {step}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            last = {"loss_terminal": float(loss_t.detach()), "loss_nonterminal": float(loss_n.detach()),
                    "loss_mixture": float(loss_w.detach()),
                    "elapsed_s": time.perf_counter() - start}
            if evaluate is not None:
                net.eval()
                last.update(evaluate(net))
                net.train()
            history.append({"step": step, **last})
            if progress:
                progress(step, last)
    net.eval()
    return net, {"seconds": time.perf_counter() - start, "steps": cfg.steps, "history": history,
                 "objective": cfg.objective, **last}


def _label_log_weights(cfg: ClassifierTrainConfig, w_single: torch.Tensor, logit_alpha: torch.Tensor) -> torch.Tensor:
    """log Π_{k≥2} w_{y_k}(x) for every (y2..yn): ``[B, K, m^(n-1)]`` (K α values; label y2 uses α when conditioned)."""
    return torch.stack([rest_label_log_weights(w_single, cfg.n_labels, torch.sigmoid(a.double()) if cfg.alpha_cond else None)
                        for a in logit_alpha], 1)


def _expected_losses(bases: GridBases, cfg, log_qt, log_qn, w_single, logit_alpha):
    """Exact expectations over each model's trajectories of the terminal and non-terminal losses."""
    from sculpt_core.domains.grid.exact import backward_expectation

    env, m = bases.env, bases.m
    k = log_qn.shape[0]
    p = _dense_float(bases.log_p)  # [m, N]
    loss_t = -(p * log_qt.T).sum(1).mean()
    with torch.no_grad():
        log_w = _label_log_weights(cfg, w_single, logit_alpha)  # [N, K, m^(n-1)]
        cond_w = torch.stack([backward_expectation(env, bases.log_pf[i], log_w) for i in range(m)])  # [m, N, K, r]
        weights = _dense_float(bases.log_u[:, :, None, None] + cond_w)  # u_i(s) E_i[w | s]
    qn = log_qn.reshape(k, env.n_states, m, -1).permute(2, 1, 0, 3)  # [m, N, K, r]: y1 = i of model i
    per_model = -(weights * qn).sum((1, 3)).mean(1)  # [m] (mean over α values)
    loss_n = per_model.mean()
    return loss_t, loss_n


def _dense_float(log_x: torch.Tensor) -> torch.Tensor:
    """exp(log_x) in float32 with values below 1e-30 set to 0. Sharp bases (e.g. shubert at T = 0.5) have
    probabilities that underflow to float32 *subnormals*, and subnormal arithmetic is ~3x slower on CPUs;
    terms this small change no loss value."""
    x = log_x.exp()
    return torch.where(x < 1e-30, torch.zeros_like(x), x).float()


def _sampled_losses(bases: GridBases, cfg, log_qt, log_qn, w_single, logit_alpha, base_pf, model_of, gen):
    """Monte-Carlo losses on fresh on-policy trajectories (the paper's estimator)."""
    env, m = bases.env, bases.m
    k = log_qn.shape[0]
    traj, actions, valid = rollout_from_tables(env, base_pf, model_of * env.n_states, 0.0, gen)
    n_visited = valid.sum(1)  # states s_0..x (x counted once, as a non-terminal state)
    term_idx = traj.gather(1, (n_visited - 1).unsqueeze(1)).squeeze(1)
    alpha_idx = torch.arange(len(model_of)) % k
    loss_t = -log_qt[term_idx, model_of].mean()
    with torch.no_grad():
        log_w = _label_log_weights(cfg, w_single[term_idx], logit_alpha)[torch.arange(len(model_of)), alpha_idx]  # [B, r]
        y1 = torch.nn.functional.one_hot(model_of, m).double().clamp_min(1e-300).log()
        log_v = outer_log([y1, log_w])  # [B, m^n]
    rows = log_qn[alpha_idx.unsqueeze(1), traj[:, :-1]].masked_fill(~valid.unsqueeze(-1), 0.0)  # [B, T, m^n]
    loss_n = -(rows.sum(1).double() * log_v.exp()).sum() / len(model_of)
    return loss_t, loss_n.float()


def _stop_joints(cfg: ClassifierTrainConfig, w_single: torch.Tensor, logit_alpha: torch.Tensor) -> torch.Tensor:
    """log Π_k w_{y_k}(x) for EVERY label (y1 included) ``[N, K, m^n]`` (K α values; y2 α-weighted)."""
    return torch.stack([terminal_joint(w_single, cfg.n_labels, torch.sigmoid(a.double()) if cfg.alpha_cond else None)
                        .flatten(1) for a in logit_alpha], 1)


def _chain_expected_losses(bases: GridBases, cfg, log_qt, log_qn, log_mw, w_single, target_mw, logit_alpha, gen):
    """(L_T, L_N, L_W) of the chain objective as exact expectations over trajectories.

    L_T as in A.1; L_W = mean over models of Σ_s u_i(s) (−log P(i | s)) (fixed point P(i | s) ∝ u_i(s));
    L_N = Σ_s ū(s) · (−Σ_y T(y | s) log Q_N(y | s)), ū the mixture's visit probability and T the target
    network's chain posterior by backward DP: T(y | s) = E_{p_M}[Π_k Q_T(y_k | x) | s] with p_M the bases mixed
    by the target's P(i | s). Its fixed point is the posterior that makes guidance exact on the grid's DAG."""
    m = bases.m
    k = log_qn.shape[0]
    p = _dense_float(bases.log_p)  # [m, N]
    loss_t = -(p * log_qt.T).sum(1).mean()
    u = _dense_float(bases.log_u)  # [m, N]
    loss_w = -(u * log_mw.T).sum(1).mean()
    with torch.no_grad():
        chain_t = chain_expected_targets(bases, cfg, w_single, target_mw, logit_alpha)  # [K, N, m^n]
        weights = _dense_float(torch.logsumexp(bases.log_u, 0) - math.log(m))[None, :, None] * chain_t.exp().float()
    loss_n = -(weights * log_qn).sum((1, 2)).mean()  # mean over α values
    return loss_t, loss_n, loss_w


def chain_expected_targets(bases: GridBases, cfg: ClassifierTrainConfig, w_single: torch.Tensor,
                           log_mix_weights: torch.Tensor, logit_alpha: torch.Tensor) -> torch.Tensor:
    """log T(y | s) = log E_{p_M}[Π_k w_{y_k}(x) | s] for every state ``[K, N, m^n]`` (K α values): the chain
    posterior of terminal weights ``w_single`` ``[N, m]`` under the bases mixed by ``log_mix_weights`` ``[N, m]``."""
    from sculpt_core.domains.grid.exact import backward_expectation

    mix = mixture_log_policy(bases.log_pf, log_mix_weights)  # [N, A]
    return backward_expectation(bases.env, mix, _stop_joints(cfg, w_single, logit_alpha)).permute(1, 0, 2)


def _chain_sampled_losses(bases: GridBases, cfg, log_qt, log_qn, log_mw, w_single, target_mw, logit_alpha, gen):
    """The chain objective's Monte-Carlo estimator: the bases' own trajectories for L_T and L_W, trajectories of
    the mixture chain (the target network's P(i | s)) for L_N, every label from the target's terminal head."""
    env, m = bases.env, bases.m
    k = log_qn.shape[0]
    n_tr = cfg.trajectories_per_model
    model_of = torch.arange(m).repeat_interleave(n_tr)
    base_pf = bases.log_pf.reshape(m * env.n_states, -1)
    traj, _, valid = rollout_from_tables(env, base_pf, model_of * env.n_states, 0.0, gen)
    term_idx = traj.gather(1, (valid.sum(1) - 1).unsqueeze(1)).squeeze(1)
    loss_t = -log_qt[term_idx, model_of].mean()
    rows_w = log_mw[traj[:, :-1], model_of.unsqueeze(1)].masked_fill(~valid, 0.0)
    loss_w = -rows_w.sum() / len(model_of)
    with torch.no_grad():
        mix = mixture_log_policy(bases.log_pf, target_mw)
    n_mix = m * n_tr
    mtraj, _, mvalid = rollout_from_tables(env, mix, torch.zeros(n_mix, dtype=torch.long), 0.0, gen)
    m_term = mtraj.gather(1, (mvalid.sum(1) - 1).unsqueeze(1)).squeeze(1)
    alpha_idx = torch.arange(n_mix) % k
    with torch.no_grad():
        tgt = _stop_joints(cfg, w_single[m_term], logit_alpha)[torch.arange(n_mix), alpha_idx].exp()  # [B, m^n]
    rows = log_qn[alpha_idx.unsqueeze(1), mtraj[:, :-1]].masked_fill(~mvalid.unsqueeze(-1), 0.0)  # [B, T, m^n]
    loss_n = -(rows.sum(1).double() * tgt).sum() / n_mix
    return loss_t, loss_n.float(), loss_w


def guided_l1(bases: GridBases, classifier: GridClassifier, composition: Composition) -> float:
    """Exact L1 between the classifier-guided distribution and the target from the same bases."""
    log_pf = classifier_policy(bases, composition, classifier)
    p = log_terminal(bases.env, log_pf).exp()
    return l1_distance(p, composition.log_target(bases.log_p, bases.log_z).exp())
