"""Composition on the grid: exact composed policies for every method, and their exact distributions.

Methods (all produce a policy table over every state, so the DP gives the exact composed distribution):
- ``oracle``: classifier guidance with the exact posterior (eq. 13 by backward DP over the mixture policy);
  the composition a perfect classifier would reach. Works for every operator (h-transform of the mixture).
- ``classifier``: guidance with a learned :class:`GridClassifier` (Thm 5.3).
- ``reaching``: Routing-by-Reaching mixing, u_i exact (DP) or from the learned flow (``u_source="flow"``).
- ``ensemble``: the same mixing with u_i = 1.
Trajectory-dependent u_i (``u_source="trajectory"``) cannot be tabulated: use :func:`sample_composed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from sculpt_core.core.algebra import Composition
from sculpt_core.core.exact import exact_reaching_log_policy, oracle_log_policy
from sculpt_core.core.guidance import guided_log_policy
from sculpt_core.core.methods import ClassifierGuidance, check_classifier_compat, check_models, dispatch
from sculpt_core.core.metrics import l1_distance, log_normalize
from sculpt_core.core.reaching import TrajectoryProductPolicy, reaching_log_policy
from sculpt_core.core.sampling import seeded_generator
from sculpt_core.domains.grid.classifier import GridClassifier
from sculpt_core.domains.grid.exact import GridSpace, log_reaching, log_terminal
from sculpt_core.domains.grid.model import GridBaseModel, GridTables
from sculpt_core.domains.grid.sampling import TablePolicy, Trajectories, sample_trajectories, terminal_histogram
from sculpt_core.errors import SculptError

METHODS = ("oracle", "classifier", "reaching", "ensemble")
U_SOURCES = ("exact", "flow", "trajectory")


@dataclass
class GridBases:
    """Base models evaluated once on every state: the inputs every method shares."""

    models: list[GridBaseModel]
    tables: list[GridTables]
    log_pf: torch.Tensor  # [m, N, A]
    log_u: torch.Tensor  # [m, N] exact reaching probabilities
    log_p: torch.Tensor  # [m, N] exact terminal distributions
    log_z: torch.Tensor  # [m] learned log Z
    betas: list[float]

    @property
    def env(self):
        return self.models[0].env

    @property
    def m(self) -> int:
        return len(self.models)

    def true_log_p(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(normalised true targets ∝ R_i^β_i ``[m, N]``, their log partition functions ``[m]``), if all rewards are known."""
        if any(mod.log_reward is None for mod in self.models):
            return None
        scaled = torch.stack([mod.log_reward.double().flatten() * b for mod, b in zip(self.models, self.betas)])
        log_p = torch.stack([log_normalize(row, f"the true target of {mod.name}") for row, mod in zip(scaled, self.models)])
        top = scaled.max(1).values
        return log_p, top + torch.logsumexp(scaled - top[:, None], 1)


def prepare_bases(models: list[GridBaseModel], beta: float | None = None) -> GridBases:
    """Evaluate the base models (at reward exponent β for β-conditioned ones) on every state."""
    if not models:
        raise SculptError("choose at least one base model")
    env = models[0].env
    for mod in models[1:]:
        if (mod.env.height, mod.env.ndim) != (env.height, env.ndim):
            raise SculptError(f"models live on different grids: {models[0].name} is {env.shape}, {mod.name} is {mod.env.shape}")
    tables = [mod.tables(beta) for mod in models]
    log_pf = torch.stack([t.log_pf for t in tables])
    log_u = torch.stack([log_reaching(env, t.log_pf) for t in tables])
    log_p = log_u + log_pf[:, :, env.stop_action]
    log_z = torch.tensor([t.log_z for t in tables], dtype=torch.float64)
    return GridBases(models, tables, log_pf, log_u, log_p, log_z, [mod.beta_or_default(beta) for mod in models])


# ----- per-method policy tables -------------------------------------------------------------------
def oracle_policy(bases: GridBases, composition: Composition) -> torch.Tensor:
    """Exact guidance for any composition (:func:`~sculpt_core.core.exact.oracle_log_policy` on the grid's
    fast DP): the composition a perfect classifier would reach."""
    check_models(bases.m, composition)
    return oracle_log_policy(GridSpace(bases.env), bases.log_pf, composition, bases.log_z, log_u=bases.log_u)


def classifier_policy(bases: GridBases, composition: Composition, classifier: GridClassifier) -> torch.Tensor:
    """Guidance with a learned classifier on every state: mixture weights from its mixture head, else its
    y1-marginal (reweighted by the prior for mixtures and linear), times Q(y | s'_a) / Q(y | s) for label compositions."""
    check_classifier_compat(classifier.cfg, bases.m, composition, fallback=("oracle", "reaching"))
    guide = ClassifierGuidance.of(composition, classifier.cfg, bases.log_z)
    env = bases.env
    states = env.all_states()
    with torch.no_grad():
        log_qn = classifier.log_q_nonterminal(states, guide.logit_alpha).double()  # [N, m, ..]
        log_qt = classifier.log_q_terminal_single(states).double()  # [N, m]
        own = classifier.log_mixture_weights(states) if hasattr(classifier, "log_mixture_weights") else None
    log_w = guide.mixture_weights(own.double() if own is not None else guide.y1_marginal(log_qn))
    if guide.guided:
        log_v, log_stop = guide.observed(log_qn), guide.stop_values(log_qt)
    else:
        log_v = log_stop = torch.zeros(env.n_states, dtype=torch.float64)
    return guided_log_policy(bases.log_pf, log_w, log_v, GridSpace(env).child_values(log_v, log_stop))


def bases_log_u(bases: GridBases, u_source: str) -> torch.Tensor:
    """log u_i(s) for every state: exact DP or the learned flow log F_i(s) − log F_i(s0)."""
    if u_source == "exact":
        return bases.log_u
    if u_source == "flow":
        missing = [mod.name for mod in bases.models if not mod.meta.get("has_flow")]
        if missing:
            raise SculptError(f"no learned state flow in {', '.join(missing)}: use u from the trajectory product or exact")
        return torch.stack([t.log_flow - t.log_flow[0] for t in bases.tables])
    raise SculptError(f"u source {u_source!r} is not a table; choose 'exact' or 'flow' (or sample with 'trajectory')")


def reaching_policy(bases: GridBases, composition: Composition, u_source: str = "exact", ensemble: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(composed log-policy table, log N_M(s)) for reaching mixing (or the ensemble baseline)."""
    check_models(bases.m, composition)
    if ensemble or u_source == "exact":
        return exact_reaching_log_policy(GridSpace(bases.env), bases.log_pf, composition, bases.log_z, ensemble,
                                         log_u=bases.log_u)
    return reaching_log_policy(composition, bases.log_pf, bases_log_u(bases, u_source), bases.log_z)


# ----- results --------------------------------------------------------------------------------------
@dataclass
class ComposeResult:
    """A composed distribution with its targets and distances (arrays indexed ``p[z0, z1]``)."""

    method: str
    composition: Composition
    log_pf: torch.Tensor | None  # policy table (None for sampled-only methods)
    p: np.ndarray  # composed distribution (exact, or a histogram when ``sampled``)
    target: np.ndarray  # target from the learned base distributions
    true_target: np.ndarray | None  # target from the true rewards, if known
    sampled: bool = False
    n_samples: int = 0
    delta: np.ndarray | None = None  # distortion δ(x) = u_M(x)/N_M(x) (reaching/ensemble)

    @property
    def l1(self) -> float:
        """L1 to the target built from the same (learned) base models."""
        return l1_distance(self.p, self.target)

    @property
    def l1_true(self) -> float | None:
        return None if self.true_target is None else l1_distance(self.p, self.true_target)

    def figures(self) -> dict:
        return {"method": self.method, "composition": self.composition.describe(), "formula": self.composition.formula(),
                "l1_to_target": self.l1, "l1_to_true_target": self.l1_true, "sum": float(self.p.sum()),
                "sampled": self.sampled, "n_samples": self.n_samples}


def compose(
    bases: GridBases,
    composition: Composition,
    method: str,
    classifier: GridClassifier | None = None,
    u_source: str = "exact",
    n_samples: int = 20000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ComposeResult:
    """Compose the bases with ``method`` and evaluate the result exactly (or by sampling for trajectory-u, see
    :func:`sampled_histogram`; ``progress(done, total)`` follows that sampling)."""
    env = bases.env

    def result(log_pf: torch.Tensor | None, p: np.ndarray | None = None, delta: np.ndarray | None = None) -> ComposeResult:
        target = composition.log_target(bases.log_p, bases.log_z).exp().reshape(env.shape).numpy()
        truth = bases.true_log_p()
        true_target = None if truth is None else composition.log_target(truth[0], truth[1]).exp().reshape(env.shape).numpy()
        if log_pf is None:  # sampled
            return ComposeResult(method, composition, None, p, target, true_target, True, n_samples)
        p = log_terminal(env, log_pf).exp().reshape(env.shape).numpy()
        return ComposeResult(method, composition, log_pf, p, target, true_target, False, 0, delta)

    def mixing(u: str, ensemble: bool) -> ComposeResult:
        if u == "trajectory" and not ensemble:
            return result(None, sampled_histogram(bases, composition, n_samples, seed, progress))
        log_pf, log_norm = reaching_policy(bases, composition, u, ensemble=ensemble)
        delta = (log_reaching(env, log_pf) - log_norm).exp().reshape(env.shape).numpy()
        return result(log_pf, delta=delta)

    builders = {
        "oracle": lambda: result(oracle_policy(bases, composition)),
        "classifier": lambda clf: result(classifier_policy(bases, composition, clf)),
        "reaching": lambda u: mixing(u, False),
        "ensemble": lambda: mixing(u_source, True),
    }
    return dispatch(method, builders, bases.m, composition, u_source=u_source, u_sources=U_SOURCES,
                    classifier=classifier, classifier_hint="train one first (or use the oracle)")


def sample_composed(bases: GridBases, composition: Composition, n: int, seed: int = 0) -> Trajectories:
    """Sample from reaching mixing with trajectory-product u_i (each model's own backward policy)."""
    env = bases.env
    fwd = [(lambda t: (lambda s: t.log_pf[env.flat_index(s)]))(t) for t in bases.tables]

    def make_bwd(t: GridTables):
        def log_pb(s: torch.Tensor, a: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
            return t.log_pb[env.flat_index(s_next), a.clamp(max=env.ndim - 1)]
        return log_pb

    policy = TrajectoryProductPolicy(composition, fwd, [make_bwd(t) for t in bases.tables], bases.log_z)
    return sample_trajectories(env, policy, n, seeded_generator(seed))


#: Trajectory-product histograms are drawn in chunks of this many trajectories (chunk k seeded ``seed + k``), so
#: a caller can follow the progress; the CLI and the page share it and give the same histogram for a seed.
SAMPLE_CHUNK = 2000


def sampled_histogram(bases: GridBases, composition: Composition, n: int, seed: int = 0,
                      progress: Callable[[int, int], None] | None = None, chunk: int = SAMPLE_CHUNK) -> np.ndarray:
    """The terminal distribution of ``n`` trajectories of :func:`sample_composed` (grid-shaped, sums to 1), drawn
    in chunks of ``chunk`` (chunk k seeded ``seed + k``: deterministic); ``progress(done, n)`` after each."""
    if n < 1:
        raise SculptError(f"the number of sampled trajectories must be at least 1, got {n}")
    env = bases.env
    counts = np.zeros(env.shape)
    done = 0
    if progress is not None:
        progress(0, n)
    for k, start in enumerate(range(0, n, chunk)):
        size = min(chunk, n - start)
        counts += terminal_histogram(env, sample_composed(bases, composition, size, seed + k)).numpy() * size
        done += size
        if progress is not None:
            progress(done, n)
    return counts / counts.sum()


def sample_points(env, log_pf: torch.Tensor, n: int, seed: int = 0) -> np.ndarray:
    """``n`` terminal cells ``[n, ndim]`` sampled from a policy table (vectorised roll-outs)."""
    traj = sample_trajectories(env, TablePolicy(env, log_pf), n, seeded_generator(seed))
    return traj.terminal_states.numpy()
