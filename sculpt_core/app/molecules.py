"""The thin layer between the Molecule Sculpting page and the library.

Pure helpers (no Streamlit): the page state a URL carries (:class:`MolPageState`, :func:`parse_query`), the
methods offered and when one does not apply, the β window of the chosen models, which classifier can guide them,
the rewards a composition targets, the KDE axes, composed sampling plus scoring into one :class:`MolSamples` record. Cached wrappers (Streamlit): zoo models
load once per process (``st.cache_resource``); sample sets are cached by (model fingerprints, β, composition,
method, u, scoring, n, seed, whether sEH is scored) in one process-wide store shared with the prefetch thread
(:class:`sculpt_core.app.mol_store.SampleStore`, outside ``st.cache_data`` so a progress bar can follow a run),
so moving a slider back is instant.

Operators, label and weight parsing and the composition itself are shared with the grid page
(:mod:`sculpt_core.core.operators`, :func:`sculpt_core.app.widgets.operator_controls`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import streamlit as st

from sculpt_core.core import algebra as A
from sculpt_core.core.operators import ALPHA_RANGE, OPERATORS
from sculpt_core.domains.molecules.compose import DEFAULT_U_SOURCE, composed_policy, flow_fit_note, prepare_mol_bases
from sculpt_core.errors import SculptError
from sculpt_core.domains.molecules.metrics import TABLE1_NAMES, TABLE1_THRESHOLDS, diversity, table1_bins, uniqueness
from sculpt_core.domains.molecules.model import MolBaseModel
from sculpt_core.app.url_state import query_getter, read_bases, read_numbers
from sculpt_core.app.caches import LRU, assets_key, manifest_stamp, zoo_names
from sculpt_core.app.mol_store import CountingPolicy, GrowingRun, Progress, Rates, SampleStore
from sculpt_core.app.torch_threads import use_one_torch_thread
from sculpt_core.app.widgets import classifier_note

MOL_METHODS: dict[str, str] = {
    "reaching": "reaching mixing (training-free)",
    "classifier": "classifier guidance",
    "ensemble": "ensemble (u = 1)",
    "compare": "compare methods (side by side)",
}
#: The methods "compare" runs on the same composition, in this order.
COMPARE_METHODS = ("reaching", "classifier", "ensemble")
# Radio labels are short and of one form, so the options line up; what each does is its caption.
MOL_U_CHOICES: dict[str, str] = {  # the first is the default (compose.molecules.DEFAULT_U_SOURCE)
    "trajectory": "trajectory product",
    "flow": "learned state flow",
}
MOL_U_CAPTIONS = ("p_F/p_B product along the trajectory (DB F)", "the model's flow head F(s)/Z (Model F)")
MOL_SCORINGS: dict[str, str] = {
    "fast": "fast",
    "topk": "top-64 exact",
}
MOL_SCORING_CAPTIONS = ("action head only", "action head, then the 64 likeliest moves scored exactly (≈ exact, "
                        "3-5x slower)")
REWARD_LABELS = {"seh": "sEH (proxy/8)", "sa": "SA ((10−SA)/9)", "qed": "QED"}
N_CHOICES = (32, 64, 128, 256, 512, 1000)
DEFAULT_BETA = 32.0


@dataclass(frozen=True)
class MolSamples:
    """One sample set: canonical SMILES, rewards ``[N, 3]`` (sEH, SA, QED; sEH NaN when unavailable), timing."""

    smiles: list[str]
    rewards: np.ndarray
    seconds: float
    score_seconds: float
    invalid_dropped: int

    @property
    def molecules_per_s(self) -> float:
        return len(self.smiles) / max(self.seconds, 1e-9)

    @property
    def has_seh(self) -> bool:
        return bool(np.isfinite(self.rewards[:, 0]).all())

    def high_fractions(self) -> dict[str, float | None]:
        """Fraction of samples in the Table 1 "high" bin of each reward (None when the reward is unavailable)."""
        out: dict[str, float | None] = {}
        for j, (name, thr) in enumerate(zip(TABLE1_NAMES, TABLE1_THRESHOLDS)):
            col = self.rewards[:, j]
            out[name] = None if np.isnan(col).any() else float((col >= thr).mean())
        return out

    def all_high(self) -> float | None:
        """Fraction of samples high in all three rewards (Table 1's last bin; None without sEH)."""
        return float(table1_bins(self.rewards)["fraction_all_high"]) if self.has_seh else None

    def table1_percent(self) -> list[int] | None:
        return list(table1_bins(self.rewards)["percent"]) if self.has_seh else None

    def uniqueness(self) -> float:
        return float(uniqueness(self.smiles))

    def diversity(self, max_n: int = 500) -> float | None:
        return float(diversity(self.smiles[:max_n])) if len(self.smiles) >= 2 else None

    def gallery_order(self, best: bool = False, rewards: Sequence[str] | None = None) -> list[int]:
        """Sample indices in sampling order, or (``best``) by their smallest reward / Table 1 threshold ratio,
        highest first. ``rewards``: the reward names ranked on (default all three); a missing reward does not
        count."""
        if not best:
            return list(range(len(self.smiles)))
        cols = [j for j, name in enumerate(TABLE1_NAMES) if rewards is None or name in rewards]
        if not cols:
            return list(range(len(self.smiles)))
        finite = np.where(np.isnan(self.rewards[:, cols]), np.inf, self.rewards[:, cols])
        margin = (finite / np.array(TABLE1_THRESHOLDS)[cols]).min(1)
        return [int(i) for i in np.argsort(-margin, kind="stable")]

    def legend(self, i: int) -> str:
        """The rewards of sample ``i`` as a gallery legend ("seh 0.61 sa 0.72 qed 0.40")."""
        return " ".join(f"{k} {self.rewards[i, j]:.2f}" for j, k in enumerate(TABLE1_NAMES)
                        if not np.isnan(self.rewards[i, j]))

    def csv(self, meta: Mapping[str, str] | None = None) -> str:
        """The same columns as ``mol sample --out`` (smiles,seh_reward,sa_reward,qed); with ``meta``
        (:func:`sculpt_core.app.exports.composition_meta`) the view's parameters come first, on every row."""
        from sculpt_core.domains.molecules.rewards import SAMPLE_COLUMNS
        from sculpt_core.domains.molecules.rewards import csv_text

        head = list(meta or {})
        values = list((meta or {}).values())
        return csv_text([*head, *SAMPLE_COLUMNS], ([*values, s, *r] for s, r in zip(self.smiles, self.rewards)))


# ----- page state in the URL ---------------------------------------------------------------------------------------
SEED_MAX = 10_000
#: The query keys of :class:`MolPageState`; the page keeps each in ``st.session_state["m_<key>"]``.
URL_KEYS = ("bases", "op", "alpha", "beta", "labels", "weights", "method", "u", "scoring", "n", "seed")
BETA_URL_RANGE = (0.0, 1000.0)


@dataclass
class MolPageState:
    """Everything a shared link restores on the molecule page (the grid page's keys, plus n, seed, scoring)."""

    bases: list[str] = field(default_factory=list)
    op: str = "hm"
    alpha: float = 0.5
    beta: float = DEFAULT_BETA
    labels: str = "1,2"
    weights: str = ""
    method: str = "reaching"
    u: str = "trajectory"
    scoring: str = "fast"
    n: int = 64
    seed: int = 0

    def to_query(self) -> dict[str, str]:
        """URL query parameters (labels/weights only for the operators that read them, u only for reaching,
        scoring only for classifier guidance; "compare" runs both, so it keeps both)."""
        q = {"bases": ",".join(self.bases), "op": self.op, "alpha": f"{self.alpha:g}", "beta": f"{self.beta:g}",
             "method": self.method}
        inputs = OPERATORS[self.op].inputs if self.op in OPERATORS else ""
        if inputs == "labels":
            q["labels"] = self.labels
        if inputs == "weights":
            q["weights"] = self.weights
        if self.method in ("reaching", "compare"):
            q["u"] = self.u
        if self.method in ("classifier", "compare"):
            q["scoring"] = self.scoring
        q["n"], q["seed"] = str(self.n), str(self.seed)
        return q


def parse_query(params: Mapping[str, Any], available: Sequence[str]) -> tuple[MolPageState, list[str]]:
    """Validate URL query parameters → (state, warnings); a bad value falls back to its default with one warning."""
    state = MolPageState(bases=default_mol_bases(available))
    warnings: list[str] = []

    get = query_getter(params)

    read_bases(get, available, state, warnings)
    for key, choices in (("op", OPERATORS), ("method", MOL_METHODS), ("u", MOL_U_CHOICES),
                         ("scoring", MOL_SCORINGS)):
        if (raw := get(key)) is None:
            continue
        if raw in choices:
            setattr(state, key, raw)
        else:
            warnings.append(f"URL parameter {key}={raw!r} ignored: one of {', '.join(choices)}.")
    read_numbers(get, (("alpha", *ALPHA_RANGE, False), ("beta", *BETA_URL_RANGE, False),
                                 ("seed", 0, SEED_MAX, True)), state, warnings, rounded=("alpha",))
    if (raw := get("n")) is not None:
        if raw.strip() in {str(c) for c in N_CHOICES}:
            state.n = int(raw.strip())
        else:
            warnings.append(f"URL parameter n={raw!r} ignored: one of {', '.join(map(str, N_CHOICES))}.")
    if (raw := get("labels")) is not None:
        state.labels = raw[:60]
    if (raw := get("weights")) is not None:
        state.weights = raw[:80]
    return state, warnings


#: What the figures show of a view, beside what is sampled: the KDE's axes and the gallery's order. In the URL
#: only when they differ from the defaults, and kept out of the view's identity (a new axis samples nothing).
DISPLAY_KEYS = ("x", "y", "order")
GALLERY_ORDERS = {"first": "first sampled",
                  "best": "best in the composition's objectives (smallest reward / threshold ratio)"}


def display_query(x: str, y: str, default_axes: tuple[str, str], order_label: str | None) -> dict[str, str]:
    """The URL keys of the figures' choices that differ from their defaults (``x``/``y`` both when either does)."""
    q = {"x": x, "y": y} if (x, y) != tuple(default_axes) else {}
    if order_label == GALLERY_ORDERS["best"]:
        q["order"] = "best"
    return q


def parse_display(params: Mapping[str, Any]) -> tuple[tuple[str | None, str | None], str | None, list[str]]:
    """((x, y) rewards or None each, the gallery order's label or None, warnings) from URL query parameters."""
    from sculpt_core.domains.molecules.metrics import TABLE1_NAMES

    get, warnings, axes = query_getter(params), [], []
    for key in ("x", "y"):
        raw = get(key)
        if raw is not None and raw not in TABLE1_NAMES:
            warnings.append(f"URL parameter {key}={raw!r} ignored: one of {', '.join(TABLE1_NAMES)}.")
            raw = None
        axes.append(raw)
    order = get("order")
    if order is not None and order not in GALLERY_ORDERS:
        warnings.append(f"URL parameter order={order!r} ignored: one of {', '.join(GALLERY_ORDERS)}.")
        order = None
    return (axes[0], axes[1]), (GALLERY_ORDERS[order] if order else None), warnings


# ----- pure helpers ---------------------------------------------------------------------------------------------
def targeted_rewards(composition: A.Composition, base_rewards: Sequence[str | None]) -> list[str]:
    """The rewards (Table 1 names, in Table 1 order) of the bases ``composition`` uses: the bases its labels name,
    the bases with positive weight (mixture, linear), every base (chained harmonic mean)."""
    if composition.kind == "labels":
        used = {y - 1 for y in composition.labels}
    elif composition.kind in ("mixture", "linear"):
        used = {i for i, w in enumerate(composition.weights) if w > 0}
    else:
        used = set(range(len(base_rewards)))
    names = {base_rewards[i] for i in used if i < len(base_rewards)}
    return [r for r in TABLE1_NAMES if r in names]


def kde_axes(base_rewards: Sequence[str | None], available: Sequence[str], x: str | None = None,
             y: str | None = None) -> tuple[str, str]:
    """The KDE's (x, y) rewards: ``x`` and ``y`` where they are available and distinct, else the chosen bases'
    rewards in order, then the other available ones."""
    order = list(dict.fromkeys([r for r in base_rewards if r in available] + list(available)))
    x = x if x in order else order[0]
    others = [r for r in order if r != x]
    y = y if y in others else others[0] if others else x
    return x, y


def method_note(method: str, composition: A.Composition, classifier: Any = None) -> str | None:
    """The molecule page's note when classifier guidance cannot sample ``composition`` (reaching needs no
    classifier), or None."""
    return classifier_note(method, composition, classifier, ("reaching mixing (training-free)",), ("reaching",))


def beta_window(models: Sequence[MolBaseModel]) -> tuple[float, float]:
    """The β range every chosen model was trained on (SculptError when they share none)."""
    low = max(m.beta_range[0] for m in models)
    high = min(m.beta_range[1] for m in models)
    if low > high:
        raise SculptError("the chosen models were trained on β ranges that do not overlap: "
                          + ", ".join(f"{m.name} [{m.beta_range[0]:g}, {m.beta_range[1]:g}]" for m in models))
    return float(low), float(high)


def default_mol_bases(available: Sequence[str], seh_ok: bool = True) -> list[str]:
    """sEH and SA (the paper's pair) when shipped, else the first two models; SA and QED when the sEH reward
    cannot be scored (``seh_ok`` False: its proxy weights are missing), so the first view shows every figure."""
    first = ("seh", "sa") if seh_ok else ("sa", "qed")
    pair = [n for n in first if n in available]
    if len(pair) == 2:
        return pair
    rest = [n for n in available if seh_ok or n != "seh"]
    return list((rest if len(rest) >= 2 else list(available))[:2])


def seh_reason() -> str | None:
    """Why the sEH reward cannot be scored (its proxy weights are missing or unreadable), or None."""
    from sculpt_core.domains.molecules.seh_proxy import seh_unavailable_reason

    return seh_unavailable_reason()


#: Rewards per (canonical SMILES, the sEH proxy's weights or None without sEH), shared by every session and the
#: prefetch thread. A reward is a function of the molecule alone, and neighbouring views share most of their molecules (one seed: 15 of the 16
#: first molecules at α and α + 0.01), so a move scores only its new ones.
_REWARDS = LRU(50_000)


def score_rewards(smiles: Sequence[str]) -> tuple[np.ndarray, str | None]:
    """Rewards ``[N, 3]`` (sEH, SA, QED) and why sEH is missing (None when it was computed); molecules scored
    before are read from :data:`_REWARDS` (the sEH proxy scores the new ones in one batch; its float32 sums depend
    on the batch by about 1e-8, so a cached sEH value can differ from a rescoring's by that much)."""
    from sculpt_core.domains.molecules.rewards import score_smiles
    from sculpt_core.domains.molecules.seh_proxy import seh_unavailable_reason, seh_weights_identity

    reason = seh_unavailable_reason()
    seh = reason is None
    proxy = seh_weights_identity() if seh else None  # new proxy weights: new sEH values
    rows = [_REWARDS.get((s, proxy)) for s in smiles]
    todo = [i for i, row in enumerate(rows) if row is None]
    if todo:
        for i, r in zip(todo, score_smiles([smiles[i] for i in todo], seh=seh)):
            rows[i] = (r["seh_reward"], r["sa_reward"], r["qed"])
            _REWARDS.put((smiles[i], proxy), rows[i])
    return np.array(rows, dtype=np.float64).reshape(-1, 3), reason


#: The page draws every sample set from one seeded generator in a first batch of PAGE_FIRST trajectories, then
#: batches of PAGE_BATCH, so a view can show its first batch at once and grow the same run to the full set (the
#: full set is the same whether it was grown or drawn at once; measured on one core, reaching, 64 molecules:
#: 16 + 48 take about the time of one batch of 64, four batches of 16 about 1.5 times as long).
PAGE_FIRST = 16
PAGE_BATCH = 128
#: A view of at least this many molecules per set is shown from its first batch first (below: sampled at once).
STAGE_FROM = 64


def new_run(models: Sequence[MolBaseModel], beta: float, composition: A.Composition | None, method: str, n: int,
            seed: int, u_source: str = DEFAULT_U_SOURCE, classifier: Any = None, batch_size: int = PAGE_BATCH,
            scoring: str = "fast", first: int | None = None) -> GrowingRun:
    """A :class:`~sculpt_core.app.mol_store.GrowingRun` of ``n`` valid molecules from one base model
    (``composition=None``) or the composition: batch by batch (the first of ``first`` trajectories when given)
    from the generator ``sample_molecules`` seeds, each batch scored as it is drawn."""
    from sculpt_core.core.limits import MAX_BATCH, MAX_MOLECULES, check_int
    from sculpt_core.core.sampling import seeded_generator
    from sculpt_core.domains.molecules.sampling import sample_trajectories

    check_int(int(n), "number of molecules", 1, MAX_MOLECULES, "molecules per sample")
    check_int(int(batch_size), "batch size", 1, MAX_BATCH, "batch sizes")
    bases = prepare_mol_bases(list(models), beta)
    if composition is None:
        if len(models) != 1:
            raise SculptError("a base-model sample set takes exactly one model")
        policy = models[0].policy(beta)
    else:
        policy = composed_policy(bases, composition, method, classifier=classifier, u_source=u_source,
                                 scoring=scoring)
    gen = seeded_generator(int(seed))
    use_one_torch_thread()

    def draw(size: int, on_step) -> list:
        traj = sample_trajectories(bases.env, CountingPolicy(policy, on_step) if on_step else policy, size, gen)
        return list(zip(traj.terminal, traj.smiles or []))

    return GrowingRun(int(n), int(batch_size), draw, lambda smiles: score_rewards(smiles)[0],
                      bases.env.max_trajectory_length, first=first, rewind=(gen.get_state, gen.set_state))


def run_samples(run: GrowingRun, k: int | None = None) -> MolSamples:
    """The first ``k`` (default: all) molecules a run holds, with their rewards, as one :class:`MolSamples`."""
    k = len(run) if k is None else min(int(k), len(run))
    rewards = np.concatenate(run.rewards, 0) if run.rewards else np.zeros((0, 3))
    return MolSamples(run.smiles[:k], rewards[:k].reshape(-1, 3), *run.seconds_for(k), run.invalid)


def draw_samples(models: Sequence[MolBaseModel], beta: float, composition: A.Composition | None, method: str,
                 n: int, seed: int, u_source: str = DEFAULT_U_SOURCE, classifier: Any = None,
                 batch_size: int = 128, scoring: str = "fast", progress: Progress | None = None) -> MolSamples:
    """Sample ``n`` valid molecules from one base model (``composition=None``) or the composition, and score them.
    ``progress(done, n)`` follows the run step by step without changing what is drawn (the same molecules as
    without it, and as ``mol sample --batch-size`` ``batch_size`` for the seed)."""
    run = new_run(models, beta, composition, method, n, seed, u_source, classifier, batch_size, scoring)
    run.grow_to(int(n), progress)
    return run_samples(run)


def classifier_for(models: Sequence[MolBaseModel], beta: float) -> tuple[Any, str]:
    """(the shipped classifier for exactly these bases at this β, a note) or (None, why there is none)."""
    from sculpt_core.domains.molecules.zoo import load_classifier_for
    from sculpt_core.domains.molecules.zoo import find_mol_classifier

    names = [m.name for m in models]
    try:
        if find_mol_classifier(names) is None:
            return None, ("no classifier is shipped for " + " + ".join(names) + " (in this order); train one with "
                          f"`python -m sculpt_core mol train-classifier --bases {','.join(names)} --beta {beta:g}`")
        clf, _, meta = load_classifier_for(list(models), beta, None)
    except SculptError as exc:
        return None, str(exc)
    kind = "α-conditioned, " if meta.get("alpha_cond") else ""
    return clf, f"shipped ({kind}{meta.get('n_labels')} labels, {meta.get('steps')} steps at β = {meta.get('beta'):g})"


# ----- cached wrappers (Streamlit) ---------------------------------------------------------------------------------
def mol_zoo() -> tuple[list[str], str | None]:
    """(shipped molecule model names, manifest error or None)."""
    return zoo_names("mol")


@st.cache_resource(show_spinner="Loading molecule model…", max_entries=16)
def _load(name: str, stamp: float, assets: str) -> MolBaseModel:
    from sculpt_core.domains.molecules.zoo import load_mol_model

    model = load_mol_model(name)
    model.net.eval()
    return model


def load_mol(name: str) -> MolBaseModel:
    return _load(name, manifest_stamp(), assets_key())


@st.cache_resource(show_spinner=False, max_entries=8)
def _classifier(names: tuple[str, ...], beta: float, stamp: float, assets: str):
    return classifier_for([load_mol(n) for n in names], beta)


def cached_classifier(names: Sequence[str], beta: float):
    return _classifier(tuple(names), float(beta), manifest_stamp(), assets_key())


@st.cache_data(show_spinner=False, max_entries=64)
def cached_diversity(smiles: tuple[str, ...]) -> tuple[float, float | None]:
    """(uniqueness, diversity) of a sample set (diversity on its first 500 molecules), once per set."""
    samples = MolSamples(list(smiles), np.zeros((len(smiles), 3)), 0.0, 0.0, 0)
    return samples.uniqueness(), samples.diversity()


#: Every sample set of the process (the page's, every session's and the prefetch thread's), by :func:`sample_key`.
SAMPLES = SampleStore(256)
#: Molecules per second last measured per (method, scoring), for the time left before a run's first report.
RATES = Rates()


def sample_key(fingerprints: tuple[str, ...], beta: float, comp_key: tuple | None, method: str, u_source: str,
               n: int, seed: int, scoring: str = "fast", seh_ok: bool = True, clf_token: Any = None) -> tuple:
    """Everything a sample set depends on: the models' weights, β, the composition, the method with its u
    (reaching) or scoring and classifier (classifier guidance), n, the seed, whether sEH is scored (so a set
    scored without it is never reused with it) and the batches it is drawn in (:data:`PAGE_FIRST`,
    :data:`PAGE_BATCH`)."""
    u_source = u_source if method == "reaching" else ""
    scoring, clf_token = (scoring, clf_token) if method == "classifier" else ("", None)
    return (tuple(fingerprints), float(beta), comp_key, method, u_source, int(n), int(seed), scoring, bool(seh_ok),
            clf_token, (PAGE_FIRST, PAGE_BATCH))


def rate_kind(method: str, scoring: str = "fast") -> tuple[str, str]:
    return method, scoring if method == "classifier" else ""


def cached_samples(fingerprints: tuple[str, ...], beta: float, comp_key: tuple | None, method: str, u_source: str,
                   n: int, seed: int, _models: list, _composition: A.Composition | None, _classifier: Any = None,
                   scoring: str = "fast", seh_ok: bool = True, clf_token: Any = None,
                   progress: Progress | None = None, stop: Any = None) -> MolSamples:
    """:func:`draw_samples`, once per process and :func:`sample_key` (underscored arguments are not part of the
    key); ``progress(done, n)`` follows the run when it samples here, or the prefetch thread's run of the same
    set while it is in flight. ``stop()`` (the prefetch thread's: its view changed) stops the run at its next
    sampling step with :class:`~sculpt_core.app.mol_store.RunStopped`; its whole batches are kept for the next
    caller (the batch in progress is dropped and the generator rewound)."""
    key = sample_key(fingerprints, beta, comp_key, method, u_source, n, seed, scoring, seh_ok, clf_token)
    run = _run_of(_models, beta, _composition, method, n, seed, u_source, _classifier, scoring)

    def compute(report: Progress) -> MolSamples:
        SAMPLES.run(key, run).grow_to(int(n), report, stop=stop)  # the run a first batch started, continued
        got = run_samples(SAMPLES.run(key, run))
        RATES.record(rate_kind(method, scoring), len(got.smiles), got.seconds)
        return got

    return SAMPLES.get_or_compute(key, compute, progress)


def _run_of(models, beta, composition, method, n, seed, u_source, classifier, scoring):
    """``make()`` of the store's growing run of these inputs (the page's batches: :data:`PAGE_FIRST`, then
    :data:`PAGE_BATCH`)."""
    return lambda: new_run(models, beta, composition, method, n, seed, u_source, classifier, PAGE_BATCH, scoring,
                           first=PAGE_FIRST)


def first_samples(fingerprints: tuple[str, ...], beta: float, comp_key: tuple | None, method: str, u_source: str,
                  n: int, seed: int, _models: list, _composition: A.Composition | None, _classifier: Any = None,
                  scoring: str = "fast", seh_ok: bool = True, clf_token: Any = None, first: int = PAGE_FIRST,
                  progress: Progress | None = None, stop: Any = None) -> MolSamples:
    """The first ``first`` molecules of :func:`cached_samples`' set (the whole set when it is stored): the first
    batch of its run, drawn here or by the thread growing it. ``progress(done, first)``; ``stop()`` true ends the
    drawing at its next sampling step (:class:`~sculpt_core.app.mol_store.RunStopped`, the run rewound)."""
    key = sample_key(fingerprints, beta, comp_key, method, u_source, n, seed, scoring, seh_ok, clf_token)
    if (got := SAMPLES.get(key)) is not None:
        return got
    run = SAMPLES.run(key, _run_of(_models, beta, _composition, method, n, seed, u_source, _classifier,
                                   scoring))
    run.grow_to(first, progress, stop=stop)
    got = run_samples(run, first)
    if len(run) >= first:
        RATES.record(rate_kind(method, scoring), len(got.smiles), got.seconds)
    return got


def classifier_token() -> tuple[float, str]:
    """What the shipped classifier of a view depends on beyond the bases and β (the manifest and assets)."""
    return manifest_stamp(), assets_key()


def neighbour_jobs(fingerprints: tuple[str, ...], models: list, beta: float, window: tuple[float, float], op: str,
                   alpha: float | None, labels: str, weights: str, method: str, u_source: str, n: int, seed: int,
                   classifier: Any = None, scoring: str = "fast", seh_ok: bool = True, clf_token: Any = None,
                   methods: Sequence[str] | None = None, lead: str = "alpha", direction: int = 1,
                   first_next: bool = False) -> list:
    """Prefetch jobs for the views one arrow-key step away, each filling exactly the :func:`cached_samples` (and
    ``cached_diversity``) entries that view reads. ``lead`` is the slider the user moved last: its neighbours come
    first, since the next move is most likely the same. ``lead="alpha"``: α ± 0.01, then β ± 1 with their base sets,
    then α + 0.02. ``lead="beta"``: first the FIRST BATCHES (:data:`PAGE_FIRST` molecules of the composition and of
    every base set, what a staged view draws first; at n ≥ :data:`STAGE_FROM` only) at β ± 1, then those sets in
    full, then α ± 0.01 (the α order when there is no β neighbour to prefetch). Classifier
    guidance moves only α (its classifier is tied to one β). ``method`` "compare" prefetches each of ``methods``
    (the ones the comparison runs). A running job stops at its next sampling step once the prefetcher is shut down
    (interpreter exit), and at its next sampling step once the view changed (its whole batches are kept: the run
    goes on when that set is asked for again). ``direction`` (+1 or −1, the way the lead slider moved last) puts
    the step that way before the step back. ``first_next``: only the first-batch jobs of the one most likely next view (the lead
    slider one step on in ``direction``; none below :data:`STAGE_FROM`), which the page runs even before growing
    the view on screen, so a steady run of arrow presses finds each next view's first batch drawn."""
    from sculpt_core.app.prefetch import neighbour_values, prefetcher
    from sculpt_core.app.widgets import ALPHA_STEP
    from sculpt_core.core.operators import build_composition, composition_key

    stop, stale = prefetcher().check_open, prefetcher().stale
    runs = list(methods or ()) if method == "compare" else [method]

    def view(a: float | None, b: float, meth: str, first_only: bool = False):
        def job() -> None:
            comp = build_composition(op, len(models), a, labels, weights)
            sets = [(fingerprints, composition_key(comp), meth, u_source, models, comp,
                     classifier if meth == "classifier" else None)]
            if b != beta:
                sets += [((fp,), None, "base", "trajectory", [mod], None, None) for mod, fp in zip(models, fingerprints)]
            for fps, key, kind, u, mods, c, clf in sets:
                if first_only:
                    first_samples(fps, b, key, kind, u, n, seed, mods, c, clf, scoring=scoring, seh_ok=seh_ok,
                                  clf_token=clf_token, progress=stop, stop=stale)
                    if stale():
                        return
                    continue
                got = cached_samples(fps, b, key, kind, u, n, seed, mods, c, clf, scoring=scoring, seh_ok=seh_ok,
                                     clf_token=clf_token, progress=stop, stop=stale)
                cached_diversity(tuple(got.smiles))
        return job

    def toward(values: list[float], centre: float) -> list[float]:  # nearest first, the direction's side first
        return sorted(values, key=lambda v: (round(abs(v - centre), 6), 0 if (v - centre) * direction > 0 else 1))

    alphas = toward(neighbour_values(alpha, ALPHA_STEP, *ALPHA_RANGE, ahead=2), alpha) if alpha is not None else []
    betas = toward(neighbour_values(beta, 1.0, *window), beta)
    if first_next:
        if n < STAGE_FROM:
            return []
        if lead == "beta" and betas and any(meth != "classifier" for meth in runs):
            return [view(alpha, betas[0], meth, first_only=True) for meth in runs if meth != "classifier"]
        return [view(alphas[0], beta, meth, first_only=True) for meth in runs] if alphas else []
    near_alpha = [view(a, beta, meth) for a in alphas[:2] for meth in runs]
    near_beta = [view(alpha, b, meth) for b in betas for meth in runs if meth != "classifier"]
    if lead == "beta" and near_beta:
        staged = n >= STAGE_FROM  # below it a view is drawn whole: no first batches to prefetch
        first_beta = [view(alpha, b, meth, first_only=True) for b in betas for meth in runs if meth != "classifier"]
        return (first_beta if staged else []) + near_beta + near_alpha
    return near_alpha + near_beta + [view(a, beta, meth) for a in alphas[2:3] for meth in runs]


__all__ = ["COMPARE_METHODS", "MOL_METHODS", "MOL_SCORINGS", "MOL_SCORING_CAPTIONS", "MOL_U_CAPTIONS",
           "MOL_U_CHOICES", "DISPLAY_KEYS", "GALLERY_ORDERS", "RATES", "REWARD_LABELS", "SAMPLES", "SEED_MAX",
           "URL_KEYS", "MolPageState", "MolSamples",
           "PAGE_BATCH", "PAGE_FIRST", "STAGE_FROM", "beta_window", "cached_classifier", "cached_diversity",
           "cached_samples", "classifier_for", "first_samples", "new_run", "run_samples", "classifier_token",
           "default_mol_bases", "display_query", "draw_samples", "flow_fit_note", "kde_axes", "load_mol",
           "method_note", "mol_zoo", "parse_display",
           "neighbour_jobs", "parse_query", "rate_kind", "sample_key", "score_rewards", "seh_reason",
           "targeted_rewards"]
