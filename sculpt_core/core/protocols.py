"""The interfaces every domain implements, so the composition engine in ``core`` never names a domain.

A *batch of states* is whatever the domain's environment takes: a tensor ``[B, ...]`` (grid cells) or a list
of objects (fragment graphs). The core only indexes batches through :mod:`sculpt_core.core.sampling`'s
stores and passes them back to the domain's env, policies, models and classifiers.

These are :class:`typing.Protocol` s (structural): a domain class satisfies one by having the members, no
inheritance needed. ``runtime_checkable`` lets tests assert that with ``isinstance`` (member presence only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

#: A batch of states: a tensor ``[B, ...]`` or a sequence of state objects, as the domain's env defines it.
States = Any


@runtime_checkable
class Env(Protocol):
    """A DAG-structured generative environment with a discrete action layout shared by every state.

    ``forward_mask`` marks the valid actions ``[B, n_actions]`` (bool); ``step`` applies one action per state
    (the stop action leaves the state unchanged: the stopped state is the generated object); every
    trajectory stops within ``max_trajectory_length`` actions (stop included). Optionally an env offers
    ``log_n_parents(states)`` ``[B]`` (log of the number of parents), the uniform backward policy's ingredient
    (:class:`HasParentCounts`)."""

    @property
    def n_actions(self) -> int: ...

    @property
    def stop_action(self) -> int: ...

    @property
    def max_trajectory_length(self) -> int: ...

    def initial_states(self, n: int) -> States: ...

    def forward_mask(self, states: States) -> torch.Tensor: ...

    def step(self, states: States, actions: torch.Tensor) -> States: ...


@runtime_checkable
class HasParentCounts(Protocol):
    """The optional part of :class:`Env`: the number of parents of each state (for uniform backward policies)."""

    def log_n_parents(self, states: States) -> torch.Tensor: ...


@runtime_checkable
class Policy(Protocol):
    """A sampling policy, possibly with a per-trajectory carry.

    - ``start(n)`` → the carry of ``n`` fresh trajectories: None (stateless) or a tensor whose first axis is the
      trajectory (e.g. the running log u_i of trajectory-product reaching, or one β per trajectory);
    - ``log_probs(states, carry)`` → the step distribution of each state of the batch (``carry`` is the active
      trajectories' rows). For a discrete action layout it is ``[B, n_actions]`` masked log-probs (−inf =
      invalid; normalisation is not required, draws use Gumbel-max);
    - ``advance(carry, states, actions, next_states)`` → the carry rows after the step.

    A continuous domain (score-based diffusion) fits the same loop with a different step distribution: a
    policy step returns a :class:`GaussianStep` (mean and log-std of x_{t+1} given x_t) instead of a
    categorical over actions, the "action" is the drawn next state and the stop rule is the fixed number of
    denoising steps. Composition formulas that mix per-model step probabilities (reaching mixing, guidance)
    then act on transition densities instead of action probabilities. The sampler in this package
    implements the categorical case only."""

    def start(self, n: int) -> Any: ...

    def log_probs(self, states: States, carry: Any) -> torch.Tensor: ...

    def advance(self, carry: Any, states: States, actions: torch.Tensor, next_states: States) -> Any: ...


@dataclass(frozen=True)
class GaussianStep:
    """A Gaussian transition x' ~ N(mean, exp(log_std)²) per state (``[B, d]`` each): the continuous
    counterpart of a categorical ``[B, A]`` step distribution (see :class:`Policy`)."""

    mean: torch.Tensor
    log_std: torch.Tensor


@runtime_checkable
class BaseModel(Protocol):
    """What every trained base model has: a ``name``, its training ``meta`` data (reward, β range, figures;
    ``meta["has_flow"]`` says whether its state-flow head was trained) and the ``env`` it lives on. How its
    policy is queried depends on the domain: :class:`TabulatedBaseModel` (every state at once) or
    :class:`BatchedBaseModel` (batches of states)."""

    name: str
    meta: dict

    @property
    def env(self) -> Any: ...


@runtime_checkable
class PolicyTables(Protocol):
    """A model evaluated on every state of an enumerable env (flat state order, float64): masked log p_F
    ``[N, A]``, backward log-probs over parents ``log_pb``, learned state log-flow ``log_flow`` ``[N]`` and the
    learned ``log_z`` (a float)."""

    log_pf: torch.Tensor
    log_pb: torch.Tensor
    log_flow: torch.Tensor
    log_z: float


@runtime_checkable
class TabulatedBaseModel(BaseModel, Protocol):
    """A base model on an enumerable env (the grid): ``tables(beta)`` gives its :class:`PolicyTables` at reward
    exponent β (None: the model's own; β-conditioned models take any β in their range), and
    ``beta_or_default(beta)`` the exponent it then samples at."""

    def tables(self, beta: float | None = None) -> PolicyTables: ...

    def beta_or_default(self, beta: float | None) -> float: ...


@runtime_checkable
class BatchedBaseModel(BaseModel, Protocol):
    """A base model queried on batches of states (fragment molecules), β-conditioned (``beta``: a float or one
    per state):

    - ``log_pf(states, beta)`` masked, normalised log p_F ``[B, A]``;
    - ``log_flow(states, beta)`` learned state log-flow log F(s) ``[B]`` (reaching: log u = log F(s) − log F(s0));
    - ``log_z(beta)`` learned log Z(β);
    - ``log_pb(states, actions, next_states)`` log p_B of each transition ``[B]`` (its training backward
      policy; 0 for stop);
    - ``fingerprint()`` a short hash of the weights (ties a classifier to the exact bases it was trained on)."""

    def log_pf(self, states: States, beta: float | torch.Tensor) -> torch.Tensor: ...

    def log_flow(self, states: States, beta: float | torch.Tensor) -> torch.Tensor: ...

    def log_z(self, beta: float | torch.Tensor) -> torch.Tensor: ...

    def log_pb(self, states: States, actions: torch.Tensor, next_states: States) -> torch.Tensor: ...

    def fingerprint(self) -> str: ...


@runtime_checkable
class ClassifierConfig(Protocol):
    """The shape of a label classifier: how many base models (label values) and labels y_1..y_n it knows, and
    whether it takes the α of the α-parameterised operators (as logit α) as an input. A classifier with an action head also has
    ``action_head = True``."""

    n_models: int
    n_labels: int
    alpha_cond: bool


@runtime_checkable
class Classifier(Protocol):
    """A label classifier of the augmented model (y_k ∈ 1..m names the base model that generated x):

    - ``log_q_nonterminal(states, logit_alpha)`` the joint log Q(y_1..y_n | s) ``[B, m, …, m]`` (n label axes);
    - ``log_q_terminal_single(states)`` log Q(y = i | x) ``[B, m]`` of complete objects (the terminal joint
      factorises, :func:`sculpt_core.core.labels.terminal_joint`).

    Optional parts: an *action head* (``embed_states(states, logit_alpha, terminal)``,
    ``joint_from_embedding(emb)``, ``action_values(emb, reduce)`` → ``[B, A]`` values of every action's
    successor from the state's own embedding, :class:`ActionHeadClassifier`) and its own mixture weights
    ``log_mixture_weights(states, logit_alpha)`` ``[B, m]`` = log P(i | s) (a mixture head trained by the chain
    objective, or the exact weights; None: use the y1-marginal of the non-terminal joint)."""

    @property
    def cfg(self) -> ClassifierConfig: ...

    def log_q_nonterminal(self, states: States, logit_alpha: Any = None) -> torch.Tensor: ...

    def log_q_terminal_single(self, states: States) -> torch.Tensor: ...


@runtime_checkable
class ActionHeadClassifier(Classifier, Protocol):
    """A :class:`Classifier` whose action head scores every successor without building it."""

    def embed_states(self, states: States, logit_alpha: Any, terminal: bool) -> Any: ...

    def joint_from_embedding(self, emb: Any) -> torch.Tensor: ...

    def action_values(self, emb: Any, reduce: Any) -> torch.Tensor: ...


__all__ = ["ActionHeadClassifier", "BaseModel", "BatchedBaseModel", "Classifier", "ClassifierConfig", "Env",
           "GaussianStep", "HasParentCounts", "Policy", "PolicyTables", "States", "TabulatedBaseModel"]
