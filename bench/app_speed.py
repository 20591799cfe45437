"""How fast the Grid Sculpting page answers an α slider move (``python bench/app_speed.py``).

Prints ONE JSON line: p50/p95 milliseconds of a full page rerun (Streamlit ``AppTest``: script run, figure
building, protobuf serialisation; no browser) after moving α (and β, for β-conditioned bases) to a value not seen
before (so the result cache misses), for oracle, reaching (exact u), ensemble and — if one is shipped for the bases — classifier
guidance; the first (cold) load of the grid page in this fresh process; and, as a baseline, the bare
library ``compose()`` call for each method, with the ratio rerun-p95 / compose-p50.

Uses the shipped zoo (``assets/``, or ``SCULPT_ASSETS``) and its default pair of base models.
Targets: p95 ≤ 300 ms for oracle/reaching/ensemble, ≤ 1 s for classifier, first load ≤ 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from timing import latency_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=20, help="α moves per method")
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest  # streamlit only; torch/sculpt_core load inside the first run

    out: dict = {"bench": "app_speed", "python": platform.python_version(), "moves": args.moves}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    t0 = time.perf_counter()
    at.switch_page("pages/grid_sculpting.py").run()
    out["first_load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if at.exception:
        out["error"] = at.exception[0].value
        print(json.dumps(out))
        return
    bases = at.multiselect(key="g_bases").value
    out["bases"] = bases
    if len(bases) < 2:
        out["error"] = "fewer than two zoo models shipped"
        print(json.dumps(out))
        return

    import torch

    from sculpt_core.core import algebra as A
    from sculpt_core.domains.grid.compose import compose, prepare_bases
    from sculpt_core.device import describe_device
    from sculpt_core.domains.grid.zoo import load_grid_model
    from sculpt_core.domains.grid.zoo import find_grid_classifier

    out["device"] = describe_device()
    out["torch_threads"] = torch.get_num_threads()
    found = find_grid_classifier(list(bases))
    methods = ["oracle", "reaching", "ensemble"] + (["classifier"] if found is not None else [])
    if found is None:
        out["classifier"] = f"not measured: no classifier shipped for {'+'.join(bases)}"

    # warm home page too (a navigation click back to the landing page)
    home = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    t0 = time.perf_counter()
    home.run()
    out["home_load_ms"] = round((time.perf_counter() - t0) * 1000, 1)

    alphas = [round(0.30 + 0.01 * i, 2) for i in range(args.moves)]
    reruns: dict[str, dict] = {}
    for method in methods:
        at.radio(key="g_method").set_value(method).run()
        times = []
        for a in alphas:
            slider = at.slider(key="g_alpha").set_value(a)
            t0 = time.perf_counter()
            slider.run()
            times.append(time.perf_counter() - t0)
            if at.exception or at.error:
                reruns[method] = {"error": (at.exception or at.error)[0].value}
                break
        else:
            reruns[method] = latency_summary(times)
    out["rerun_after_alpha_move"] = reruns

    # β slider (β-conditioned variants of the same bases): a move re-evaluates the base networks at the new β
    beta_bases = [f"{b}_beta" for b in bases]
    if all(b in at.multiselect(key="g_bases").options for b in beta_bases):
        at.multiselect(key="g_bases").set_value(beta_bases).run()
        beta_reruns = {}
        betas = [round(0.55 + 0.07 * i, 2) for i in range(args.moves)]
        for method in ("oracle", "reaching", "ensemble"):
            at.radio(key="g_method").set_value(method).run()
            times = []
            for b in betas:
                slider = at.slider(key="g_beta").set_value(b)
                t0 = time.perf_counter()
                slider.run()
                times.append(time.perf_counter() - t0)
                if at.exception or at.error:
                    beta_reruns[method] = {"error": (at.exception or at.error)[0].value}
                    break
            else:
                beta_reruns[method] = latency_summary(times)
            betas = [round(b + 0.003, 3) for b in betas]  # new values for the next method: no cache hits
        out["rerun_after_beta_move"] = {"bases": beta_bases, **beta_reruns}
    else:
        out["rerun_after_beta_move"] = f"not measured: {', '.join(beta_bases)} not all shipped"

    # baseline: the bare library call the page is built on
    models = [load_grid_model(n) for n in bases]
    prepared = prepare_bases(models)
    clf = found[0] if found is not None else None
    baseline = {}
    for method in methods:
        times = []
        for a in alphas:
            t0 = time.perf_counter()
            compose(prepared, A.harmonic_mean(a + 0.001), method, classifier=clf)
            times.append(time.perf_counter() - t0)
        baseline[method] = latency_summary(times)
    out["baseline_compose"] = baseline
    out["ratio_rerun_p95_to_compose_p50"] = {
        m: round(reruns[m]["p95_ms"] / max(baseline[m]["p50_ms"], 1e-3), 2) for m in methods if "p95_ms" in reruns.get(m, {})}
    targets = {"oracle": 300, "reaching": 300, "ensemble": 300, "classifier": 1000}
    beta_ok = all(v.get("p95_ms", float("inf")) <= 300 for k, v in out["rerun_after_beta_move"].items()
                  if k != "bases") if isinstance(out["rerun_after_beta_move"], dict) else True
    out["meets_targets"] = bool(out["first_load_ms"] <= 5000 and beta_ok and all(
        reruns[m].get("p95_ms", float("inf")) <= targets[m] for m in methods))
    out["assets"] = os.environ.get("SCULPT_ASSETS", str(ROOT / "assets"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
