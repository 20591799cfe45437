"""How fast the Diffusion Sculpting page answers an α move (``python bench/diffusion_app_speed.py``).

Prints ONE JSON line: p50/p95 milliseconds of a full page rerun (Streamlit ``AppTest``: script run, sampling,
figure building, protobuf serialisation; no browser) after moving α to a value not seen before (so every cache
misses: the exact target's bin masses and the sampled run), per method, at the page's live settings (default
2000 particles, 100 Euler–Maruyama steps, from the reference prior); the rerun after moving α back to a value
already shown (cache hit); SuperDiff, which has no α-operator, by editing mixture weights instead; the first
(cold) load of the page in this fresh process; and, as a baseline in the same process, the bare library calls
the page is built on (``bin_masses`` of the target, ``sample_method``, the binned L1 and its floor) with the
ratio rerun-p95 / library-p50.

Uses the shipped zoo (``assets/``, or ``SCULPT_ASSETS``) and its default bases (learned ring and band; the
exact specs when the zoo ships no diffusion models). Target: p95 ≤ 300 ms per α move.

``first_samples_shown_*``: when, within the rerun, the page first drew samples (its ``d_answer_ms``, from the
script's start): a slow run (a guided method, or learned score networks) draws a preview of 300 particles × 20
steps first and replaces it with the full run when that finishes; the exact target is drawn before either.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import latency_summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=8, help="α moves per method")
    parser.add_argument("--n", type=int, default=2000, help="particles of the live view")
    parser.add_argument("--steps", type=int, default=100, help="reverse-time steps of the live view")
    parser.add_argument("--methods", default="oracle,score-sum,base,classifier",
                        help="methods whose α moves are timed (classifier only if one exists for the bases)")
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest  # streamlit only; torch/sculpt_core load inside the first run

    out: dict = {"bench": "diffusion_app_speed", "python": platform.python_version(), "moves": args.moves,
                 "n": args.n, "steps": args.steps}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update({"n": str(args.n), "steps": str(args.steps)})
    t0 = time.perf_counter()
    at.switch_page("pages/diffusion_sculpting.py").run()
    out["first_load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if at.exception:
        out["error"] = at.exception[0].value
        print(json.dumps(out))
        return
    bases = at.multiselect(key="d_bases").value
    out["bases"] = bases

    import torch

    from sculpt_core.app import diffusion as D
    from sculpt_core.app import diffusion_state as S
    from sculpt_core.device import describe_device

    out["device"] = describe_device()
    out["torch_threads_page"] = 1  # the page pins one intra-op thread in its own script thread
    available = D.methods()
    wanted = [m for m in args.methods.split(",") if m in available]

    answers: dict[str, list[float]] = {}

    def alpha_moves(method: str, alphas: list[float]) -> dict:
        at.radio(key="d_method").set_value(method).run()
        times = []
        for a in alphas:
            slider = at.slider(key="d_alpha").set_value(a)
            t0 = time.perf_counter()
            slider.run()
            times.append(time.perf_counter() - t0)
            if at.exception or at.error:
                return {"error": (at.exception or at.error)[0].value}
            answer = at.session_state["d_answer_ms"] if "d_answer_ms" in at.session_state else None
            if answer is not None:
                answers.setdefault(method, []).append(answer / 1000)
        if not [m for m in at.metric if m.label == "binned L1"]:
            return {"error": "no result shown: " + " ".join(i.value for i in at.info)[:200]}
        return latency_summary(times)

    reruns: dict[str, dict] = {}
    hits: dict[str, dict] = {}
    first_answer: dict[str, dict | None] = {}
    methods_timed = []
    for k, method in enumerate(wanted):
        if method == "classifier":
            at.radio(key="d_method").set_value("classifier").run()
            if not [m for m in at.metric if m.label == "binned L1"]:
                out["classifier"] = "not measured: " + " ".join(i.value for i in at.info)[:160]
                continue
        alphas = [round(0.20 + 0.01 * i + 0.003 * k, 3) for i in range(args.moves)]  # unseen by every method
        reruns[method] = alpha_moves(method, alphas)
        first_answer[method] = latency_summary(answers.pop(method, [])) if answers.get(method) else None
        hits[method] = alpha_moves(method, list(reversed(alphas)))  # the same values again: cache hits
        answers.pop(method, None)
        methods_timed.append(method)
    out["rerun_after_alpha_move"] = reruns
    out["first_samples_shown_after_alpha_move"] = first_answer
    out["rerun_after_alpha_move_cached"] = hits

    # SuperDiff has no α-operator: time edits of the mixture weights instead
    at.selectbox(key="d_op").set_value("mixture").run()
    at.radio(key="d_method").set_value("superdiff").run()
    times, shown = [], []
    for i in range(args.moves):
        box = at.text_input(key="d_weights").set_value(f"1,{1.5 + 0.1 * i:g}")
        t0 = time.perf_counter()
        box.run()
        times.append(time.perf_counter() - t0)
        if "d_answer_ms" in at.session_state and at.session_state["d_answer_ms"] is not None:
            shown.append(at.session_state["d_answer_ms"] / 1000)
    out["rerun_after_weights_edit_superdiff"] = (latency_summary(times) if not (at.exception or at.error)
                                                 else {"error": (at.exception or at.error)[0].value})
    out["first_samples_shown_after_weights_edit_superdiff"] = latency_summary(shown) if shown else None

    # baseline: the bare library calls, in the same process and thread setting as the page
    from sculpt_core.domains.diffusion.metrics import binned_l1, noise_floor
    from sculpt_core.domains.diffusion.exact import ExactComposition
    from sculpt_core.domains.diffusion.sampling import sample_method

    resolved = [D.resolve(b, {}, {}) for b in bases]
    specs = [b.spec for b in resolved]
    learned = [b.model for b in resolved]
    baseline: dict[str, dict] = {}
    density: list[float] = []
    from sculpt_core.app.torch_threads import use_one_torch_thread

    use_one_torch_thread()
    for method in methods_timed:
        if method == "classifier":
            continue
        times = []
        for i in range(args.moves):
            comp = S.diffusion_composition("hm", 2, round(0.6 + 0.01 * i, 3))
            t0 = time.perf_counter()
            q, _ = ExactComposition(specs, comp).bin_masses(3.5, D.BINS, D.LIVE_NODES)
            t1 = time.perf_counter()
            models = None if method == "oracle" or all(m is None for m in learned) else learned
            x, _ = sample_method(specs, comp, method, args.n, args.steps, "em", 0, "gaussian", models=models)
            binned_l1(x.numpy(), q, 3.5)
            noise_floor(q, args.n)
            times.append(time.perf_counter() - t0)
            density.append(t1 - t0)
        baseline[method] = latency_summary(times)
    out["baseline_library"] = baseline
    out["baseline_exact_density"] = latency_summary(density) if density else None
    out["ratio_rerun_p95_to_library_p50"] = {
        m: round(reruns[m]["p95_ms"] / max(baseline[m]["p50_ms"], 1e-3), 2)
        for m in baseline if "p95_ms" in reruns.get(m, {})}
    out["meets_target_300ms"] = {m: r.get("p95_ms", float("inf")) <= 300 for m, r in reruns.items()}
    out["first_samples_meet_target_300ms"] = {m: a is not None and a["p95_ms"] <= 300 for m, a in first_answer.items()}
    out["torch_threads_main"] = torch.get_num_threads()
    out["load_average"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    out["assets"] = os.environ.get("SCULPT_ASSETS", str(ROOT / "assets"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
