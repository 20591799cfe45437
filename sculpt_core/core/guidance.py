"""Classifier guidance (Garipov et al., Thm 5.3), as one domain-agnostic function.

For a state s with successors s'_a (a = each action; the stop action's successor is the terminal object):

    log p(a | s, y) = logsumexp_i [log p_iF(a|s) + log Q(y1=i | s)]      (mixture of the bases, Prop. 5.1)
                      + log Q(y | s'_a) − log Q(y | s)                    (guidance, eq. 15)

then renormalised over valid actions (a learned Q does not satisfy eq. 13 exactly). ``Q`` is a learned
classifier, or the exact posterior for the oracle; the same function serves both.

The guided policy is a proper distribution without renormalisation exactly when Q(y | s) is harmonic for the
mixture chain: Q(y | s) = Σ_a p_M(a | s) Q(y | s'_a), with p_M(a | s) = Σ_i P(i | s) p_iF(a | s) and
Q(y | x) = Π_k Q(y_k | x) at the terminal object. That "chain" posterior is the one
Theorem 5.3 needs; on a DAG it differs from the fixed point of the paper's Algorithm A.1, which continues each
state with the generating model's own policy. ``P(i | s)`` is the posterior of the generating model given that
its trajectory passes through s (∝ u_i(s) for equal priors), a separate output of the classifier.
"""

from __future__ import annotations

import torch


def guided_log_policy(
    log_pf_models: torch.Tensor,
    log_mix_weights: torch.Tensor,
    log_v_state: torch.Tensor,
    log_v_children: torch.Tensor,
) -> torch.Tensor:
    """Normalised guided log-policy ``[B, A]``.

    Args:
        log_pf_models: ``[m, B, A]`` masked, normalised base forward log-probs (invalid actions -inf).
        log_mix_weights: ``[B, m]`` log Q(y1 = i | s), the mixture weights at the current state.
        log_v_state: ``[B]`` log Q(y_obs | s).
        log_v_children: ``[B, A]`` log Q(y_obs | s'_a) (stop column: the terminal classifier at s).
    """
    mix = mixture_log_policy(log_pf_models, log_mix_weights)
    logits = mix + log_v_children.double() - log_v_state.double().unsqueeze(-1)
    return safe_log_softmax(logits, valid=torch.isfinite(log_pf_models).any(0))


def mixture_log_policy(log_pf_models: torch.Tensor, log_mix_weights: torch.Tensor) -> torch.Tensor:
    """log p_M(a | s) = logsumexp_i [log p_iF(a | s) + log P(i | s)] ``[B, A]`` (Prop. 5.1; float64).

    ``log_pf_models`` ``[m, B, A]``, ``log_mix_weights`` ``[B, m]``."""
    return torch.logsumexp(log_pf_models.double() + log_mix_weights.double().T.unsqueeze(-1), dim=0)


def tree_backup_targets(log_pm: torch.Tensor, log_children: torch.Tensor, taken: torch.Tensor, next_row: torch.Tensor,
                        lam: float) -> torch.Tensor:
    """Tree-backup targets of the chain posterior along stored trajectories ``[S, K]`` (probabilities, float64).

    Row t is a state s_t of a trajectory, ``taken[t]`` the action made there, ``next_row[t]`` the row of s_{t+1}
    (−1 when the action ends the trajectory: Stop). With V(s, a) = Q(y | s'_a) from a target network
    (``log_children`` ``[S, A, K]``; the Stop column is the terminal joint at s) and p_M(a | s) the mixture
    chain (``log_pm`` ``[S, A]``, −inf where invalid):

        G_t = Σ_a p_M(a | s_t) V(s_t, a) + λ p_M(a_t | s_t) (G_{t+1} − V(s_t, a_t)),   G_{t+1} := V at Stop.

    λ = 0 is the expected one-step backup, larger λ puts the observed continuation in place of the target
    network's value of the move taken. Whatever policy chose the actions, a Q that satisfies the chain equations
    Q(y | s) = Σ_a p_M(a | s) Q(y | s'_a) is reproduced exactly (E[G_{t+1} | s_{t+1}] = Q(y | s_{t+1}) by
    induction from the end), so guided trajectories are training data too; no importance weights are needed."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ must be in [0, 1], got {lam}")
    valid_rows, valid_acts = torch.nonzero(torch.isfinite(log_pm), as_tuple=True)  # only valid moves: sparse
    p = log_pm.double().exp()
    terms = p[valid_rows, valid_acts].unsqueeze(1) * log_children[valid_rows, valid_acts].double().exp()
    expected = torch.zeros(len(p), log_children.shape[-1], dtype=torch.float64, device=p.device)
    expected.index_add_(0, valid_rows, terms)
    rows = torch.arange(len(p), device=p.device)
    p_taken = p[rows, taken].unsqueeze(1)
    v_taken = log_children[rows, taken].double().exp()
    has_next = (next_row >= 0).unsqueeze(1)
    nxt = next_row.clamp(min=0)
    out = expected
    for _ in range(len(p) + 1):  # acyclic: exact once the longest stored chain has been swept
        follow = torch.where(has_next, out[nxt], v_taken)
        new = expected + lam * p_taken * (follow - v_taken)
        if torch.equal(new, out):
            break
        out = new
    return out.clamp_min(0.0)


def safe_log_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """log-softmax over ``valid`` entries; a row with no finite valid logit (a state the composition can never
    reach) falls back to uniform over valid actions so tables stay proper distributions."""
    logits = logits.masked_fill(torch.isnan(logits) | (logits == float("inf")), float("-inf")).masked_fill(~valid, float("-inf"))
    dead = ~torch.isfinite(logits).any(-1, keepdim=True)
    logits = torch.where(dead & valid, torch.zeros_like(logits), logits)
    return torch.log_softmax(logits, dim=-1)
