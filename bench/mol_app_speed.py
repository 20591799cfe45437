"""How fast the Molecule Sculpting page answers an α slider move (``python bench/mol_app_speed.py``).

Prints ONE JSON line: p50/p95 milliseconds of a full page rerun (Streamlit ``AppTest``: sampling, scoring,
KDE contours, Table 1 bars, the gallery PNG; no browser) after moving α to a value not seen before (so the sample
cache misses), per method (reaching with the page's default u, the p_F/p_B product; ensemble; classifier guidance
when a classifier is shipped for the default pair) and per "molecules per view" setting; the first (cold) load of
the page; and, as a baseline, the bare library call behind it (``app_molecules.draw_samples``: sampling + scoring) with the ratio
rerun-p50 / baseline-p50, which is the page's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from timing import latency_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=6, help="α moves per method and size")
    parser.add_argument("--sizes", default="64,128", help="molecules per view")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    import torch

    torch.set_num_threads(args.threads)
    out: dict = {"bench": "mol_app_speed", "threads": args.threads, "cpu_count": os.cpu_count(),
                 "load_avg_start": round(os.getloadavg()[0], 2), "moves": args.moves}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["m_n"] = 64
    t0 = time.perf_counter()
    at.switch_page("pages/molecule_sculpting.py").run()
    out["first_load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if at.exception:
        out["error"] = at.exception[0].value
        print(json.dumps(out))
        return
    bases = at.multiselect(key="m_bases").value
    out["bases"] = bases
    from sculpt_core.app.molecules import classifier_for, draw_samples
    from sculpt_core.core import algebra as A
    from sculpt_core.domains.molecules.zoo import load_mol_model

    models = [load_mol_model(b) for b in bases]
    clf, note = classifier_for(models, 32.0)
    methods = ["reaching", "ensemble"] + (["classifier"] if clf is not None else [])
    if clf is None:
        out["classifier"] = f"not measured: {note}"
    sizes = [int(s) for s in args.sizes.split(",")]
    reruns: dict = {}
    baseline: dict = {}
    step = 0
    for n in sizes:
        at.session_state["m_n"] = n
        for method in methods:
            at.radio(key="m_method").set_value(method).run()
            times = []
            for _ in range(args.moves):
                step += 1
                slider = at.slider(key="m_alpha").set_value(round(0.2 + 0.01 * step, 2))
                t0 = time.perf_counter()
                slider.run()
                times.append(time.perf_counter() - t0)
                if at.exception or at.error:
                    reruns[f"{method}_n{n}"] = {"error": (at.exception or at.error)[0].value}
                    break
            else:
                reruns[f"{method}_n{n}"] = latency_summary(times)
            base_times = []
            for k in range(max(2, args.moves // 2)):
                t0 = time.perf_counter()
                draw_samples(models, 32.0, A.harmonic_mean(0.77 + 0.01 * k), method, n, seed=1000 + k,
                             classifier=clf)
                base_times.append(time.perf_counter() - t0)
            baseline[f"{method}_n{n}"] = latency_summary(base_times)
    out["rerun_after_alpha_move"] = reruns
    out["baseline_draw_samples"] = baseline
    out["ratio_rerun_p50_to_baseline_p50"] = {k: round(reruns[k]["p50_ms"] / max(baseline[k]["p50_ms"], 1e-3), 2)
                                              for k in reruns if "p50_ms" in reruns[k]}
    out["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
