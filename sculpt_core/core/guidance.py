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


def safe_log_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """log-softmax over ``valid`` entries; a row with no finite valid logit (a state the composition can never
    reach) falls back to uniform over valid actions so tables stay proper distributions."""
    logits = logits.masked_fill(torch.isnan(logits) | (logits == float("inf")), float("-inf")).masked_fill(~valid, float("-inf"))
    dead = ~torch.isfinite(logits).any(-1, keepdim=True)
    logits = torch.where(dead & valid, torch.zeros_like(logits), logits)
    return torch.log_softmax(logits, dim=-1)
