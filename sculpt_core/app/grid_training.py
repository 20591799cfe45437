"""The Grid Sculpting page's "Train a base model" section: the reward source (a paper reward or an uploaded
log-reward, previewed as the distribution it asks for), a time estimate before training, the live loss curve,
an honest verdict afterwards (a warning when the model ends far from its target) and a question before a new
model replaces a base the user chose.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import streamlit as st
import torch

from sculpt_core.app import grid as G
from sculpt_core.app import grid_figures as F
from sculpt_core.core.operators import TWO_MODEL_OPS
from sculpt_core.core.zoo import read_manifest
from sculpt_core.domains.grid.train import check_training_scale
from sculpt_core.errors import SculptError

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
#: A trained model whose exact L1 to its target is above this is announced with a warning, not a success (the
#: shipped bases reach 0.0002–0.015; L1 lies in [0, 2]).
L1_WARN = 0.1
#: Seconds per training step when neither this session nor the manifest says (a 2-core CPU, default config).
FALLBACK_SECONDS_PER_STEP = {False: 0.06, True: 0.05}


def target_distribution(log_reward: torch.Tensor, temperature: float) -> np.ndarray:
    """p ∝ R^(1/T) on the grid: what a base model trained on this reward at temperature T should sample."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise SculptError(f"temperature must be a positive finite number, got {temperature!r}")
    logits = log_reward.double().flatten() / float(temperature)
    return torch.softmax(logits, 0).reshape(log_reward.shape).numpy()


def manifest_seconds_per_step(models: Mapping[str, Any], beta_conditioned: bool) -> float | None:
    """The median training seconds per step of the shipped grid models of the same kind (β-conditioned or not),
    from their manifest entries; None when none says."""
    rates = []
    for e in models.values() if isinstance(models, Mapping) else ():
        if not isinstance(e, Mapping) or ("beta_range" in e) != beta_conditioned:
            continue
        try:
            rate = float(e["train_seconds"]) / float(e["steps"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue  # an entry without usable figures says nothing
        if math.isfinite(rate) and rate > 0:
            rates.append(rate)
    return statistics.median(rates) if rates else None


def seconds_per_step(beta_conditioned: bool, last: Mapping[str, Any] | None = None) -> tuple[float, str]:
    """(seconds per step, where the figure comes from): this session's last training of the same kind if any,
    else the shipped models' manifest, else a fixed guess."""
    if last and last.get("steps") and bool(last.get("beta")) == beta_conditioned:
        return float(last["seconds"]) / float(last["steps"]), "your last training in this session"
    try:
        rate = manifest_seconds_per_step(read_manifest().get("grid_models", {}), beta_conditioned)
    except SculptError:
        rate = None
    if rate is not None:
        return rate, "the shipped models' training"
    return FALLBACK_SECONDS_PER_STEP[beta_conditioned], "a typical 2-core CPU"


def estimate_text(steps: int, beta_conditioned: bool, last: Mapping[str, Any] | None = None) -> str:
    """'about N s' for ``steps`` steps, saying where the rate comes from."""
    cfg = G.base_train_config(int(steps), beta_conditioned)
    rate, source = seconds_per_step(beta_conditioned, last)
    seconds = rate * cfg.steps
    shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    return f"Estimated training time: about {shown} for {cfg.steps} steps ({rate * 1000:.0f} ms/step, from {source})."


def replaced_base(selection: Sequence[str], new: str, available: Sequence[str], op: str | None) -> str | None:
    """The chosen base a just-trained model would replace (None when it can simply join the selection)."""
    current = [b for b in selection if b in available]
    after = G.with_new_base(current, new, available, op)
    gone = [b for b in current if b not in after]
    return gone[0] if gone else None


def take_new_base(available: Sequence[str]) -> None:
    """Call before the base-model box is drawn: a just-trained model joins the selection when there is room;
    when it would replace a chosen base, the question is left for :func:`offer_new_base`."""
    ss = st.session_state
    new = ss.pop("g_pending_base", None)
    if new is None or new not in available or new in ss.get("g_bases", []):
        return
    if replaced_base(ss.get("g_bases", []), new, available, ss.get("g_op")) is None:
        ss["g_bases"] = G.with_new_base(ss.get("g_bases", []), new, available, ss.get("g_op"))
    else:
        ss["g_offer_base"] = new


def _accept(new: str, available: Sequence[str]) -> None:
    ss = st.session_state
    ss["g_bases"] = G.with_new_base(ss.get("g_bases", []), new, available, ss.get("g_op"))
    ss.pop("g_offer_base", None)


def offer_new_base(available: Sequence[str], container: Any = None) -> None:
    """Ask before a just-trained model replaces a chosen base (its buttons change the selection in their
    callbacks, before the next run draws the base-model box)."""
    ss = st.session_state
    new = ss.get("g_offer_base")
    if new is None or new not in available or new in ss.get("g_bases", []):
        ss.pop("g_offer_base", None)
        return
    gone = replaced_base(ss.get("g_bases", []), new, available, ss.get("g_op"))
    if gone is None:  # the selection changed meanwhile and has room now
        ss.pop("g_offer_base", None)
        ss["g_pending_base"] = new
        return
    where = container if container is not None else st
    op_note = " for this operator (it takes two models)" if ss.get("g_op") in TWO_MODEL_OPS else ""
    where.info(f"{new} is trained and in the model list. The selection is full{op_note}: use {new} instead of "
               f"{gone}?")
    c1, c2 = where.columns(2)
    c1.button(f"Replace {gone} with {new}", key="g_offer_yes", on_click=_accept, args=(new, list(available)))
    c2.button("Keep the current selection", key="g_offer_no", on_click=lambda: ss.pop("g_offer_base", None))


def _reward_input(source: str) -> tuple[torch.Tensor | None, str | None]:
    """The chosen reward (log R, name), previewed; (None, None) while an upload is missing or invalid."""
    if source.startswith("upload"):
        upload = st.file_uploader("Log-reward .npy: a 32×32 float array log R[z0, z1]", type=["npy"],
                                  key="tb_upload")
        if upload is None:
            st.caption("Choose a file to see the distribution it defines before training.")
            return None, None
        try:
            log_r = G.load_uploaded_log_reward(upload.getvalue(), upload.name)
        except SculptError as exc:
            st.error(f"Cannot use this upload: {exc}")
            return None, None
        return log_r, re.sub(r"[^A-Za-z0-9_.-]", "_", Path(upload.name).stem)[:30] or "upload"
    reward = st.selectbox("Paper reward", G.reward_names(), key="tb_reward")
    return G.paper_log_reward(reward), reward


def training_section(available: Sequence[str], session_models: dict) -> None:
    """The whole "Train a base model" expander."""
    ss = st.session_state
    last = ss.get("g_last_training")
    with st.expander("Train a base model", expanded=last is not None and not last.get("seen", False)):
        if last is not None:
            text = (f"Trained {last['name']} in {last['seconds']:.1f} s ({last['steps']} steps, exact L1 to its "
                    f"target {last['l1']:.3f}); it is in the model list.")
            if last["l1"] > L1_WARN:
                st.warning(f"{text} It is far from its target (L1 above {L1_WARN:g}; the shipped models reach "
                           "0.0002–0.015): compositions of it show the model's errors, not the operator. Train "
                           "longer (more steps) before relying on it.")
            else:
                st.success(text)
            if last["history"]:
                st.plotly_chart(F.loss_curve(*zip(*last["history"])), width="stretch", theme=None,
                                key="fig_loss_last")
            last["seen"] = True
        offer_new_base(available)
        source = st.radio("Reward", ["paper reward", "upload a log-reward .npy"], horizontal=True, key="tb_source",
                          help="The reward is chosen outside the form so its preview updates at once.")
        c1, c2, c3 = st.columns(3)
        temperature = c1.number_input("Temperature T (p ∝ R^(1/T))", 0.05, 10.0, 1.0, 0.05, key="tb_T")
        steps = c2.number_input("Training steps", 10, 5000, 600, 10, key="tb_steps")
        new_name = c3.text_input("Name", key="tb_name", placeholder="automatic")
        beta_cond = st.checkbox(f"β-conditioned (trained for every β in [{G.BETA_TRAIN_RANGE[0]:g}, "
                                f"{G.BETA_TRAIN_RANGE[1]:g}] on R^(1/T), so the β slider moves live)", key="tb_beta")
        log_r, reward_name = _reward_input(source)
        if log_r is not None:
            try:  # said now, before any training
                check_training_scale(log_r, float(temperature), G.BETA_TRAIN_RANGE if beta_cond else None)
            except SculptError as exc:
                st.error(f"Cannot train on this reward: {exc}")
                log_r = None
        if log_r is not None:
            p = target_distribution(log_r, float(temperature))
            st.plotly_chart(F.heatmap_panels([(f"target of the new model: p ∝ R^(1/T), T = {float(temperature):g}",
                                               p)], "shared"),
                            width="stretch", theme=None, key="fig_train_preview")
        st.caption(estimate_text(int(steps), bool(beta_cond), last))
        if not st.button("Train", type="primary", key="tb_train", disabled=log_r is None):
            return
        try:
            name = (new_name or "").strip()
            if not name:
                k = 1
                while f"{reward_name}_{k}" in available:
                    k += 1
                name = f"{reward_name}_{k}"
            if not NAME_RE.match(name):
                raise SculptError(f"model name {name!r}: use letters, digits, '_', '-' or '.' (at most 40)")
            if name in available:
                raise SculptError(f"a model named {name!r} exists already; choose another name")
            cfg = G.base_train_config(int(steps), bool(beta_cond))
            bar = st.progress(0.0, text="Training…")
            curve = st.empty()
            history: list[tuple[int, float, float]] = []

            def progress(step: int, info: dict) -> None:
                history.append((step, info["loss"], info["l1"]))
                eta = info["elapsed_s"] / step * (cfg.steps - step)
                bar.progress(min(step / cfg.steps, 1.0), text=f"step {step}/{cfg.steps} · loss {info['loss']:.3g} · "
                                                              f"L1 {info['l1']:.3f} · {info['elapsed_s']:.0f} s elapsed, "
                                                              f"about {eta:.0f} s left")
                curve.plotly_chart(F.loss_curve(*zip(*history)), width="stretch", theme=None)

            model, info = G.train_base_model(log_r, float(temperature), cfg, reward_name, progress=progress)
            model.name = name
            session_models[name] = {"token": G.new_token(), "model": model, "reward": reward_name}
            ss["g_pending_base"] = name
            ss["g_last_training"] = {"name": name, "seconds": info["seconds"], "steps": info["steps"],
                                     "l1": info["l1"], "history": history, "seen": False, "beta": bool(beta_cond)}
            st.rerun()
        except SculptError as exc:
            st.error(f"Cannot train: {exc}")


__all__ = ["L1_WARN", "estimate_text", "manifest_seconds_per_step", "offer_new_base", "replaced_base",
           "seconds_per_step", "take_new_base", "target_distribution", "training_section"]
