"""The Diffusion Images page (``pages/diffusion_images.py`` calls :func:`render`): the paper's colored-MNIST
composition of image diffusion models, with the independent judge's verdict under every grid.

- Bases: the shipped image family (manifest section ``diffusion_image_models``; ``mnist16`` by default) and its
  data sets; presets for the paper's triple MN1, MN2, MN3 (labels y = (1, 2, 3): green zeros) and the
  appendix pair M1, M2 (harmonic mean → green 0, contrast → red 0, reverse contrast → green 1), or any 1–3 sets.
- The operator comes from the shared operator table (``widgets.operator_controls``), the methods from
  ``images.compose.IMAGE_METHODS`` (classifier guidance with the shipped classifier, SuperDiff, score sum, one
  base alone) or all three composition methods side by side.
- Every grid is sampled once per input (process-wide LRU; base grids are shared by every composition that
  uses the base) behind one progress bar with a time-left estimate, shown as a PNG (``image_grid``) with a
  download button, and judged on every run (the judge is milliseconds; its expected set follows the operator).
- The view lives in the URL with the other pages' key names (``family`` only when not the default).

Defaults follow the command line (64 images, 200 steps) and the paper (γ = 10): γ = 1 is what the theory
samples, the composition itself; a larger γ sharpens it towards its modal (color, digit) pairs, which is the
set the judge counts (M1 ◑ M2 is 2/3 red 0 and 1/3 green 0 at γ = 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import streamlit as st

from sculpt_core.app import image_grid as IG
from sculpt_core.app.url_state import query_getter, read_numbers
from sculpt_core.app.caches import LRU, assets_dir, assets_key, manifest_stamp
from sculpt_core.app.diffusion_state import COMPARE, diffusion_composition
from sculpt_core.app.widgets import operator_controls
from sculpt_core.core import algebra as A
from sculpt_core.core.operators import ALPHA_RANGE, OPERATORS, composition_key
from sculpt_core.domains.diffusion.images.compose import IMAGE_METHODS
from sculpt_core.domains.diffusion.images.data import DATASETS
from sculpt_core.domains.diffusion.images.zoo import DEFAULT_FAMILY
from sculpt_core.errors import SculptError

#: Preset → (bases, operator, labels): the paper's experiment and its appendix pair.
PRESETS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "triple": (("mn1", "mn2", "mn3"), "labels", "1,2,3"),
    "pair": (("m1", "m2"), "hm", "1,2"),
}
CUSTOM = "custom"
PRESET_LABELS = {"triple": "MN1, MN2, MN3: the paper's y = (1, 2, 3)", "pair": "M1, M2: the appendix pair",
                 CUSTOM: "free choice of bases"}
METHOD_LABELS = {"classifier": "classifier guidance", "superdiff": "SuperDiff (training-free)",
                 "score-sum": "score sum Σ s_i", "base": "one base alone", COMPARE: "compare methods"}
COMPOSE_METHODS = tuple(m for m in IMAGE_METHODS if m != "base")
N_RANGE = (1, 256)
STEPS_RANGE = (1, 1000)
GAMMA_RANGE = (0.1, 100.0)
SEED_MAX = 10 ** 6
MAX_BASES = 3
PAPER_GAMMA = 10.0
DEFAULT_N = 64
DEFAULT_STEPS = 200
TOP_COUNTS = 5


# ----- page state (no Streamlit) -----------------------------------------------------------------------------
def default_bases(sets: Sequence[str]) -> list[str]:
    """The paper's triple when the family has it, else the pair, else its first two sets."""
    for preset in ("triple", "pair"):
        if set(PRESETS[preset][0]) <= set(sets):
            return list(PRESETS[preset][0])
    return list(sets[:2])


def preset_of(bases: Sequence[str]) -> str:
    """The preset these bases are (in this order), else ``custom``."""
    return next((k for k, (b, _, _) in PRESETS.items() if tuple(bases) == b), CUSTOM)


@dataclass
class ImagePageState:
    """Everything a shared link restores on the Diffusion Images page."""

    family: str = DEFAULT_FAMILY
    bases: tuple[str, ...] = PRESETS["triple"][0]
    op: str = "labels"
    alpha: float = 0.5
    labels: str = "1,2,3"
    weights: str = ""
    gamma: float = PAPER_GAMMA
    method: str = "classifier"
    model: int = 1
    n: int = DEFAULT_N
    steps: int = DEFAULT_STEPS
    seed: int = 0

    def to_query(self, default_family: str = DEFAULT_FAMILY) -> dict[str, str]:
        """URL query parameters (operator inputs only where they are read, ``model`` only for one base)."""
        q = {"bases": ",".join(self.bases), "op": self.op, "alpha": f"{self.alpha:g}", "gamma": f"{self.gamma:g}",
             "method": self.method, "n": str(self.n), "steps": str(self.steps), "seed": str(self.seed)}
        if self.family != default_family:
            q = {"family": self.family, **q}
        inputs = OPERATORS[self.op].inputs if self.op in OPERATORS else ""
        if inputs == "labels":
            q["labels"] = self.labels
        if inputs == "weights":
            q["weights"] = self.weights
        if self.method == "base":
            q["model"] = str(self.model)
        return q


def parse_image_query(params: Mapping[str, Any], families: Mapping[str, Sequence[str]],
                      default_family: str) -> tuple[ImagePageState, list[str]]:
    """Validate URL query parameters → (state, warnings); a bad value falls back to its default with a warning.
    ``families``: family name → its data sets. Bases that form a preset bring its operator unless ``op`` is given."""
    warnings: list[str] = []

    get = query_getter(params)

    family = default_family
    if (raw := get("family")) is not None:
        if raw in families:
            family = raw
        else:
            warnings.append(f"URL parameter family={raw!r} ignored: one of {', '.join(families)}.")
    sets = list(families.get(family, ()))
    state = ImagePageState(family=family, bases=tuple(default_bases(sets)))
    if (raw := get("bases")) is not None:
        names = [s.strip() for s in raw.split(",") if s.strip()]
        unknown = [s for s in names if s not in sets]
        if unknown or len(set(names)) != len(names) or not 1 <= len(names) <= MAX_BASES:
            why = (f"unknown base(s) {', '.join(unknown)}; this family has {', '.join(sets)}" if unknown else
                   "a base is repeated" if len(set(names)) != len(names) else f"choose 1 to {MAX_BASES} bases")
            warnings.append(f"URL parameter bases={raw!r} ignored ({why}); showing {', '.join(state.bases)}.")
        else:
            state.bases = tuple(names)
    preset = preset_of(state.bases)
    if preset != CUSTOM:
        state.op, state.labels = PRESETS[preset][1], PRESETS[preset][2]
    elif len(state.bases) == 2:
        state.op = "hm"
    if (raw := get("op")) is not None:
        if raw in OPERATORS:
            state.op = raw
        else:
            warnings.append(f"URL parameter op={raw!r} ignored: one of {', '.join(OPERATORS)}.")
    numbers = (("alpha", *ALPHA_RANGE, False), ("gamma", *GAMMA_RANGE, False), ("n", *N_RANGE, True),
               ("steps", *STEPS_RANGE, True), ("seed", 0, SEED_MAX, True), ("model", 1, MAX_BASES, True))
    read_numbers(get, numbers, state, warnings, rounded=("alpha", "gamma"))
    state.model = min(state.model, len(state.bases))
    if (raw := get("method")) is not None:
        choices = [*IMAGE_METHODS, COMPARE]
        if raw in choices:
            state.method = raw
        else:
            warnings.append(f"URL parameter method={raw!r} ignored: one of {', '.join(choices)}.")
    if (raw := get("labels")) is not None:
        state.labels = raw[:60]
    if (raw := get("weights")) is not None:
        state.weights = raw[:80]
    return state, warnings


def method_note(method: str, comp: A.Composition | None, m: int) -> str | None:
    """Why ``method`` does not apply to ``comp`` over ``m`` bases (a neutral note), or None when it applies."""
    if method == "base":
        return None
    if comp is None or m < 2:
        return "Choose two or three bases to compose them."
    if method == "superdiff":
        if comp.kind in ("mixture", "linear"):
            return None
        if comp.kind == "labels" and sorted(comp.labels) == list(range(1, m + 1)) and comp.alpha is None:
            return None
        return ("SuperDiff composes mixtures and the AND of all bases (labels 1,2[,3], each base once, at α = 0.5); "
                f"it does not apply to {comp.describe()}.")
    if method == "classifier" and comp.kind == "chained_hm":
        return ("Classifier guidance needs a label posterior; the chained harmonic mean observes no labels. "
                "Custom labels such as 1,2,3 condition on all three bases.")
    return None


def verdict_lines(judged: Mapping[str, Any]) -> tuple[str, str]:
    """(the expected set and judge's accuracy, the top counts) as two caption lines."""
    acc = judged.get("judge_held_out_accuracy")
    first = (f"expected: {', '.join(judged['expected'])} · {judged['n']} judged"
             + (f" · judge's held-out accuracy {acc:.1%}" if isinstance(acc, (int, float)) else ""))
    counts = list(judged["counts"].items())
    top = ", ".join(f"{k} × {v}" for k, v in counts[:TOP_COUNTS]) + (" …" if len(counts) > TOP_COUNTS else "")
    return first, f"judged as: {top}"


# ----- families, classifiers and sampled grids -------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=4)
def _families(stamp: float, assets: str) -> tuple[dict[str, list[str]], dict[str, int], str | None]:
    from sculpt_core.domains.diffusion.images.zoo import image_model_entries

    try:
        entries = image_model_entries()
    except SculptError as exc:
        return {}, {}, str(exc)
    sets = {name: [s for s in e["sets"] if s in DATASETS] for name, e in entries.items()
            if isinstance(e, dict) and isinstance(e.get("sets"), list)}
    sizes = {name: e.get("size") for name, e in entries.items() if name in sets}
    return {k: v for k, v in sets.items() if v}, sizes, None


def families() -> tuple[dict[str, list[str]], dict[str, int], str | None]:
    """(family → its data sets, family → image side, error if the manifest is unreadable), per manifest."""
    return _families(manifest_stamp(), assets_key())


def default_family(names: Sequence[str]) -> str:
    return DEFAULT_FAMILY if DEFAULT_FAMILY in names else sorted(names)[0]


def family_token(family: str) -> str:
    """The cache identity of a shipped family (assets folder, name, manifest stamp)."""
    return f"images:{assets_key()}:{family}:{manifest_stamp()}"


def load_models(family: str, sets: Sequence[str]) -> list:
    """The score models of ``sets`` from ``family`` (the family is loaded once per process and file)."""
    from sculpt_core.domains.diffusion.images.zoo import resolve_image_bases

    return resolve_image_bases([f"{family}:{s}" for s in sets])


@st.cache_resource(show_spinner="Loading the guidance classifier…", max_entries=8)
def _classifier(token: str, names: tuple[str, ...], _models: list) -> tuple[Any, str | None, str | None]:
    from sculpt_core.domains.diffusion.images.zoo import find_image_classifier

    try:
        clf, source = find_image_classifier(list(names), _models)
    except SculptError as exc:
        return None, None, str(exc)
    return clf, Path(source).name, None


def find_classifier(family: str, sets: Sequence[str], models: list, comp: A.Composition) -> tuple[Any, str | None, str]:
    """(classifier, cache token, note): the shipped classifier for these bases when it can guide ``comp``, else
    (None, None, why not)."""
    from sculpt_core.domains.diffusion.classifier import ClassifierPosterior

    token = family_token(family)
    clf, source, why = _classifier(token, tuple(f"{family}:{s}" for s in sets), models)
    if clf is None:
        return None, None, str(why)
    try:
        ClassifierPosterior(clf, comp)  # refuses an operator this classifier cannot express
    except SculptError as exc:
        return None, None, f"the shipped classifier ({source}) cannot guide {comp.describe()}: {exc}"
    return clf, f"{source}:{token}", f"shipped classifier {source}"


@dataclass
class Grid:
    """One sampled grid: the images ``[n, 3, H, W]`` in [0, 1], its PNG and the sampling time."""

    images: np.ndarray
    png: bytes
    seconds: float


@st.cache_resource(show_spinner=False)
def _store() -> LRU:
    return LRU(96)


@dataclass
class Job:
    """One grid to show: where (``slot``), its title, and what to sample."""

    slot: str
    title: str
    models: list
    sets: list[str]
    comp: A.Composition | None
    method: str
    model_index: int = 1
    classifier: Any = None
    key: tuple = ()


def sample_key(token: str, sets: Sequence[str], comp: A.Composition | None, method: str, n: int, steps: int,
               seed: int, gamma: float, model_index: int = 1, clf_token: str | None = None) -> tuple:
    """What a grid depends on and nothing else: a base alone is one set (shared by every composition using it),
    the score sum ignores the operator, γ and the classifier matter to classifier guidance only."""
    if method == "base":
        return (token, (sets[model_index - 1],), None, "base", n, steps, seed, None, None)
    comp_part = None if method == "score-sum" or comp is None else composition_key(comp)
    guided = method == "classifier"
    return (token, tuple(sets), comp_part, method, n, steps, seed, gamma if guided else None,
            clf_token if guided else None)


def cached_grid(key: tuple) -> Grid | None:
    return _store().get(key)


def compute_grid(job: Job, n: int, steps: int, seed: int, gamma: float, progress=None) -> Grid:
    """Sample ``job`` (``images.compose.sample_images``) and render its PNG. SculptError on bad input."""
    from sculpt_core.device import default_device
    from sculpt_core.domains.diffusion.images.compose import sample_images

    models, index = job.models, job.model_index
    if job.method == "base":
        models, index = [job.models[job.model_index - 1]], 1
    t0 = time.perf_counter()
    x = sample_images(models, job.comp, job.method, n, steps, seed=seed, gamma=gamma, model_index=index,
                      classifier=job.classifier, device=default_device(), progress=progress)
    images = x.numpy().astype(np.float32)
    return Grid(images, IG.grid_png(images), time.perf_counter() - t0)


def run_jobs(jobs: Sequence[Job], n: int, steps: int, seed: int, gamma: float, show) -> None:
    """Show every job's grid with ``show(job, grid_or_error)`` in order, sampling the ones not cached yet behind
    one progress bar (steps done, grids left, time left)."""
    pending: list[tuple] = []  # keys to sample, once each (the base shown alone shares its base's key)
    for job in jobs:
        if job.key not in pending and cached_grid(job.key) is None:
            pending.append(job.key)
    slot = st.empty() if pending else None
    bar = slot.progress(0.0, text=f"Sampling {len(pending)} grid(s) of {n} images, {steps} steps each…") if slot else None
    total, t0 = len(pending) * steps, time.perf_counter()
    every = max(1, steps // 40)
    try:
        for job in jobs:
            grid = cached_grid(job.key)
            if grid is None:
                k = pending.index(job.key)

                def progress(step: int, info: dict, k: int = k, job: Job = job) -> None:
                    if step % every and step != steps:
                        return
                    finished = k * steps + step
                    left = (time.perf_counter() - t0) / finished * (total - finished)
                    bar.progress(min(finished / total, 1.0), text=f"Sampling {job.title}: step {step}/{steps} · "
                                 f"grid {k + 1} of {len(pending)} · about {left:.0f} s left")

                try:
                    grid = compute_grid(job, n, steps, seed, gamma, progress)
                except SculptError as exc:
                    show(job, str(exc))
                    continue
                except Exception as exc:  # never a traceback in the page
                    show(job, f"sampling failed unexpectedly ({type(exc).__name__}: {exc})")
                    continue
                _store().put(job.key, grid)
            show(job, grid)
    finally:
        if slot is not None:
            slot.empty()


def judge(grid: Grid, sets: Sequence[str], comp: A.Composition | None, method: str,
          model_index: int) -> dict | str:
    """The judge's verdict on a grid (fraction in the expected set, counts, the ideal table), or why there is none."""
    import torch

    from sculpt_core.domains.diffusion.images.zoo import judge_report

    comp = comp if comp is not None else A.mixture([1.0] * len(sets))
    try:
        return judge_report(torch.from_numpy(grid.images), list(sets), comp, method, model_index)
    except SculptError as exc:
        return f"no verdict: {exc}"


# ----- the page ------------------------------------------------------------------------------------------------
def _init_state(fams: dict[str, list[str]], fam_default: str) -> None:
    """Page state from the URL once per session (with a warning per bad value), then the defaults."""
    ss = st.session_state
    if "di_qp_loaded" not in ss:
        url, warnings = parse_image_query(st.query_params.to_dict(), fams, fam_default)
        ss.update({"di_family": url.family, "di_bases": list(url.bases), "di_op": url.op, "di_alpha": url.alpha,
                   "di_labels": url.labels, "di_gamma": float(url.gamma), "di_method": url.method,
                   "di_model": url.model, "di_n": url.n, "di_steps": url.steps, "di_seed": url.seed,
                   "di_preset": preset_of(url.bases), "di_qp_loaded": True})
        if url.weights:
            ss["di_weights"] = url.weights
        ss["di_url_warnings"] = warnings
    if ss.get("di_family") not in fams:
        ss["di_family"] = fam_default


def _on_family() -> None:
    ss = st.session_state
    sets = families()[0].get(ss["di_family"], [])
    ss["di_bases"] = default_bases(sets)
    _on_bases()
    _apply_preset()


def _on_bases() -> None:
    st.session_state["di_preset"] = preset_of(st.session_state.get("di_bases", []))


def _apply_preset() -> None:
    ss = st.session_state
    preset = ss.get("di_preset")
    if preset in PRESETS:
        bases, op, labels = PRESETS[preset]
        ss.update({"di_bases": list(bases), "di_op": op, "di_labels": labels, "di_alpha": 0.5})


def _set_gamma(value: float) -> None:
    st.session_state["di_gamma"] = value


def _panel(container, job: Job, result: Grid | str, sets: Sequence[str], comp, steps: int, seed: int,
           note: str = "") -> dict | None:
    """One grid with the judge's verdict under it and its PNG download; returns the verdict."""
    container.markdown(f"**{job.title}**")
    if job.method == "base":
        container.caption(DATASETS[sets[job.model_index - 1]].describe())
    elif note:
        container.caption(note)
    if isinstance(result, str):
        container.error(f"{job.title}: {result}")
        return None
    container.image(result.png, caption=f"{len(result.images)} images · {steps} steps · seed {seed} · "
                                         f"{result.seconds:.1f} s")
    verdict = judge(result, sets, comp, job.method, job.model_index)
    if isinstance(verdict, str):
        container.caption(verdict)
    else:
        own = job.method == "base"
        container.metric(f"{job.slot}: in {'its own' if own else 'the expected'} set", f"{verdict['fraction']:.0%}",
                         border=True, help="The judge's share of these images whose (color, digit) lies in "
                         + ("the base's own data set." if own else "the modal pairs of the ideal composition."))
        for line in verdict_lines(verdict):
            container.caption(line)
        with container.expander("Ideal table"):
            st.dataframe([{"(color, digit)": k, "probability": v} for k, v in verdict["ideal"].items()],
                         hide_index=True, width="stretch")
    stem = sets[job.model_index - 1] if job.method == "base" else "_".join([*sets, job.method])
    container.download_button("Download PNG", data=result.png, file_name=f"sculpt_images_{stem}.png",
                              mime="image/png", on_click="ignore", key=f"di_dl_{job.slot}", width="stretch")
    return None if isinstance(verdict, str) else verdict


def render() -> None:
    """The whole page: sidebar controls, the URL, base grids and the composition's grid(s) with verdicts."""
    ss = st.session_state
    st.title("Diffusion Images")
    st.caption("Colored MNIST, as in the paper's image experiment: digits written into the red or the green "
               "channel; one U-Net score family trained on each base's (color, digit) set. Samples come from the "
               "reverse VE SDE; an independent digit classifier plus the color from channel mass judges each image.")
    fams, sizes, error = families()
    if error:
        st.error(f"The model zoo's manifest could not be read: {error}")
        return
    if not fams:
        st.warning(f"No colored-MNIST image models are shipped in {assets_dir()} yet. Build them with "
                   "`python -m sculpt_core zoo build-diffusion-images` (the score family, the judge and both "
                   "guidance classifiers; resumable), then reload this page.")
        return
    fam_default = default_family(list(fams))
    _init_state(fams, fam_default)
    for warning in ss.get("di_url_warnings", []):
        st.warning(warning)

    sb = st.sidebar
    sb.header("Bases")
    if len(fams) > 1:
        sb.selectbox("Image model family", list(fams), key="di_family", on_change=_on_family,
                     format_func=lambda f: f"{f} ({sizes.get(f)}×{sizes.get(f)})")
    family = ss["di_family"]
    sets = fams[family]
    presets = [p for p in PRESETS if set(PRESETS[p][0]) <= set(sets)] + [CUSTOM]
    if ss.get("di_preset") not in presets:
        ss["di_preset"] = CUSTOM
    sb.radio("Preset", presets, format_func=PRESET_LABELS.get, key="di_preset", on_change=_apply_preset)
    ss["di_bases"] = [b for b in ss.get("di_bases", []) if b in sets][:MAX_BASES]
    chosen = sb.multiselect(f"Bases (1–{MAX_BASES}; order matters: the first is p1)", sets, key="di_bases",
                            max_selections=MAX_BASES, on_change=_on_bases,
                            format_func=lambda s: f"{s}: {DATASETS[s].describe()}")
    m = len(chosen)
    sb.header("Composition")
    op, alpha_ok, alpha = operator_controls(sb, "di", m)
    method = sb.radio("Method", [*IMAGE_METHODS, COMPARE], format_func=METHOD_LABELS.get, key="di_method")
    if method == "base":
        ss["di_model"] = min(max(int(ss.get("di_model", 1)), 1), max(m, 1))
        model_index = int(sb.selectbox("Which base", list(range(1, max(m, 1) + 1)), key="di_model",
                                       format_func=lambda k: f"p{k} = {chosen[k - 1]}" if k <= m else str(k)))
    else:
        model_index = min(max(int(ss.get("di_model", 1)), 1), max(m, 1))
    gamma = sb.number_input("γ (guidance scale)", *GAMMA_RANGE, step=0.5, key="di_gamma",
                            help="Scales ∇ log Q(y | x_t) in classifier guidance. γ = 1 is the theory: it samples the "
                                 "composition itself. The paper used γ = 10, which sharpens it towards its modal "
                                 "(color, digit) pairs, the set the judge counts.")
    g1, g2 = sb.columns(2)
    g1.button("γ = 10", key="di_gamma_paper", on_click=_set_gamma, args=(PAPER_GAMMA,), width="stretch",
              help="The paper's guidance scale for its image experiment.")
    g2.button("γ = 1", key="di_gamma_theory", on_click=_set_gamma, args=(1.0,), width="stretch",
              help="The theory's: samples the composition itself.")
    sb.header("Sampling")
    n = int(sb.number_input("Images per grid", *N_RANGE, step=1, key="di_n", help="64 → an 8 × 8 grid."))
    steps = int(sb.number_input("Reverse-time steps", *STEPS_RANGE, step=10, key="di_steps",
                                help="Euler–Maruyama steps from t = 1 to ε (the command line's default: 200)."))
    seed = int(sb.number_input("Seed", 0, SEED_MAX, step=1, key="di_seed"))

    state = ImagePageState(family, tuple(chosen), op, float(ss["di_alpha"]), ss.get("di_labels", ""),
                           ss.get("di_weights", ""), float(gamma), method, model_index, n, steps, seed)
    query = state.to_query(fam_default)
    if st.query_params.to_dict() != query:  # the view lives in the URL, so it can be shared
        st.query_params.from_dict(query)

    if m == 0:
        st.info("Choose one to three bases in the sidebar.")
        return
    try:
        models = load_models(family, chosen)
    except SculptError as exc:
        st.error(f"Could not load the image models: {exc}")
        return
    except Exception as exc:  # a damaged checkpoint: a message, not a traceback
        st.error(f"Could not load the image models ({type(exc).__name__}: {exc}).")
        return
    comp = None
    if m >= 2:
        try:
            comp = diffusion_composition(op, m, float(alpha) if alpha_ok else None, ss.get("di_labels", ""),
                                         ss.get("di_weights", ""))
        except SculptError as exc:
            st.error(f"Operator undefined for the chosen bases: {exc}")
    elif method != "base":
        st.info("One base chosen: its grid alone. Choose two or three bases to compose them.")
    if comp is not None:
        st.markdown(f"**Target:** {comp.describe()}  `{comp.formula()}`")

    token = family_token(family)
    base_jobs = [Job(f"p{i + 1}", f"p{i + 1} = {s}", models, list(chosen), None, "base", i + 1,
                     key=sample_key(token, chosen, None, "base", n, steps, seed, gamma, i + 1))
                 for i, s in enumerate(chosen)]
    if method == "base":
        comp_methods = ["base"]
    elif comp is None:
        comp_methods = []
    else:
        comp_methods = list(COMPOSE_METHODS) if method == COMPARE else [method]
    comp_jobs: list[Job] = []
    notes: dict[str, str] = {}
    for meth in comp_methods:
        if meth == "base":
            comp_jobs.append(Job("one base", f"one base alone: p{model_index} = {chosen[model_index - 1]}", models,
                                 list(chosen), comp, "base", model_index, key=base_jobs[model_index - 1].key))
            continue
        note = method_note(meth, comp, m)
        clf = clf_token = None
        if note is None and meth == "classifier":
            clf, clf_token, clf_note = find_classifier(family, chosen, models, comp)
            note = None if clf is not None else f"Classifier guidance: {clf_note}."
            notes[meth] = f"{clf_note.removeprefix('shipped classifier ')} · γ = {gamma:g}" if clf is not None else ""
        if note is not None:
            notes[meth] = note
            continue
        comp_jobs.append(Job(meth, METHOD_LABELS[meth], models, list(chosen), comp, meth, model_index, clf,
                             key=sample_key(token, chosen, comp, meth, n, steps, seed, gamma, model_index, clf_token)))
    if method == "score-sum" or (method == COMPARE and any(j.method == "score-sum" for j in comp_jobs)):
        notes["score-sum"] = "Σ s_i from the reference prior: the shortcut, whatever the operator."

    single = method != COMPARE
    cols = st.columns(m + (1 if single and comp_methods else 0))
    slots = {job.slot: cols[i] for i, job in enumerate(base_jobs)}
    verdicts: dict[str, dict] = {}
    if single:
        for job in comp_jobs:
            slots[job.slot] = cols[-1]
        if comp_methods and not comp_jobs and method in notes:
            cols[-1].markdown(f"**{METHOD_LABELS[method]}**")
            cols[-1].info(notes[method])
    else:
        st.subheader("The composition by every method")
        method_cols = st.columns(len(COMPOSE_METHODS))
        for col, meth in zip(method_cols, COMPOSE_METHODS):
            slots[meth] = col
            if meth not in {j.method for j in comp_jobs}:
                col.markdown(f"**{METHOD_LABELS[meth]}**")
                col.info(notes.get(meth, "does not apply here"))

    def show(job: Job, result: Grid | str) -> None:
        verdict = _panel(slots[job.slot], job, result, chosen, comp, steps, seed, notes.get(job.method, ""))
        if verdict is not None:
            verdicts[job.slot] = verdict

    run_jobs([*base_jobs, *comp_jobs], n, steps, seed, float(gamma), show)
    if not single and comp_jobs:
        rows = []
        for job in comp_jobs:
            v, grid = verdicts.get(job.slot), cached_grid(job.key)
            if v is not None and grid is not None:
                rows.append({"method": METHOD_LABELS[job.method], "in the expected set": v["fraction"],
                             "most judged": next(iter(v["counts"]), ""), "sampling seconds": round(grid.seconds, 2)})
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch")


__all__ = ["CUSTOM", "Grid", "ImagePageState", "Job", "PRESETS", "compute_grid", "default_bases", "families",
           "find_classifier", "judge", "method_note", "parse_image_query", "preset_of", "render", "sample_key",
           "verdict_lines"]
