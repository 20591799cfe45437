"""Key press → final content in a real browser, for the Grid and the Molecule page (``python bench/browser_speed.py``).

Starts the app (``streamlit run app.py``) and drives Debian's chromium with Playwright: on each page it focuses the α
slider (the shared operator control) and presses → ``--moves`` times, each time to a value the page has not shown
before; a move's latency runs from the key press until the page has finished its rerun (Streamlit's running
indicator gone) and the main figure differs from the one before (the plotly payloads or image sources of the main
area). A page that first draws a view from a small first batch (the molecule page: "first 16 of 64 molecules;
growing…") changes its figures first from that batch: ``full_view`` is the same latency until the full view is on
screen (the page's "growing…" note gone, the page not running); a page without that note has ``full_view`` equal
to the first change. Prints ONE JSON line: p50/p95 per page; the page's first open; and, as the baseline of the same
run, the page's in-process rerun time after the same α moves (Streamlit ``AppTest``: no browser, no network, no
rendering; the whole page's rerun, where the browser reruns only a page's live fragment; a molecule move there is
its first-batch run; the scripts compiled once, as a server does).

Targets (issue 17): grid ≤ 200 ms p50, molecule ≤ 400 ms p50 at the default view size for an α move, molecule
≤ 1 s p50 for a β move (``--slider beta``).

Usage: python bench/browser_speed.py [--moves 8] [--pages grid,molecule] [--slider alpha|beta] [--dwell-ms 300]
[--query fig=interactive] [--chromium /usr/bin/chromium] [--raw]

The in-process baseline runs with ``SCULPT_PREFETCH`` as set (prefetch on by default; its AppTest moves follow one
another without a pause, so they mostly measure sampling).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import latency_summary  # noqa: E402

PAGES = {"grid": ("grid_sculpting", "pages/grid_sculpting.py"), "molecule": ("molecule_sculpting", "pages/molecule_sculpting.py")}
ALPHA_LABEL = "α (eq. 7"
#: --slider: the label a slider's text starts with, and one arrow-key step of it (β: the molecule page only).
SLIDERS = {"alpha": (ALPHA_LABEL, 0.01), "beta": ("β (reward exponent", 1.0)}
#: Issue 17's p50 targets per (page, slider), in ms.
TARGETS = {("grid", "alpha"): 200, ("molecule", "alpha"): 400, ("molecule", "beta"): 1000}
RUNNING = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
#: What the main figures show, cheaply: per plotly trace its x, y, z lengths and about 16 values of each (16 rows
#: × 16 values of a 2-D z; an undecoded base64 array by its ends), per image its source. It is evaluated every 10 ms while a move is timed, in the
#: browser's main thread, so it must not cost much itself: ``JSON.stringify`` of every trace's arrays (typed
#: arrays stringify as objects) took the main thread tens of ms per poll with the molecule page's KDE contours.
SIGNATURE = """() => {
  const pick = (a) => {
    if (a === undefined || a === null) return '';
    if (typeof a !== 'object') return String(a);
    if (typeof a.bdata === 'string') return a.bdata.length + ':' + a.bdata.slice(0, 64) + a.bdata.slice(-64);
    const n = a.length || 0, step = Math.max(1, Math.floor(n / 16));
    let out = n + ':';
    for (let i = 0; i < n; i += step) out += pick(a[i]) + ',';
    return out;
  };
  const main = document.querySelector('section[data-testid="stMain"]') || document.body;
  const plots = [...main.querySelectorAll('.js-plotly-plot')].map(p => (p.data || []).map(t => [pick(t.x), pick(t.y), pick(t.z)].join(';')).join('/'));
  const imgs = [...main.querySelectorAll('img')].map(i => i.src.length + ':' + i.src.slice(-64));
  return plots.join('|') + '#' + imgs.join('|');
}"""

#: The molecule page's note while a view is drawn from the first batch of its sample sets ("first 16 of 64
#: molecules; growing…"); the full view is on screen once it is gone (and the page is not running).
GROWING = """() => {
  const main = document.querySelector('section[data-testid="stMain"]') || document.body;
  return main.innerText.includes('growing…');
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_moves(url: str, moves: int, chromium: str, dwell_ms: int = 300, label: str = ALPHA_LABEL,
                  raw: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        t0 = time.perf_counter()
        page.goto(url, timeout=300_000)
        page.wait_for_selector(".js-plotly-plot, img", timeout=300_000)
        page.wait_for_timeout(500)
        page.wait_for_function(RUNNING, timeout=300_000)
        first_open = time.perf_counter() - t0
        slider = page.locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider").first
        latencies, full = [], []
        for _ in range(moves):
            before = page.evaluate(SIGNATURE)
            slider.focus()
            start = time.perf_counter()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(f"(before) => ({RUNNING})() && ({SIGNATURE})() !== before", arg=before,
                                   timeout=300_000, polling=10)
            latencies.append(time.perf_counter() - start)
            if page.evaluate(GROWING):  # drawn from a first batch: wait for the figures of the full view
                partial = page.evaluate(SIGNATURE)
                page.wait_for_function(f"(partial) => ({RUNNING})() && !({GROWING})() && ({SIGNATURE})() !== partial",
                                       arg=partial, timeout=300_000, polling=10)
            full.append(time.perf_counter() - start)
            page.wait_for_timeout(dwell_ms)  # the user looks (the molecule page prefetches the next views meanwhile)
        browser.close()
    out = {"first_open_s": round(first_open, 2), **latency_summary(latencies), "full_view": latency_summary(full)}
    if raw:
        out["moves_ms"] = [round(1e3 * t, 1) for t in latencies]
        out["full_view"]["moves_ms"] = [round(1e3 * t, 1) for t in full]
    return out


def shared_script_cache() -> None:
    """AppTest compiles every script anew on each run (a new ScriptCache per run: 40-80 ms of AST work for these
    pages on this machine), which a server does once: give every run the same cache, so the baseline times the
    page's own work."""
    import streamlit.testing.v1.app_test as app_test
    import streamlit.testing.v1.local_script_runner as local_runner
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    shared = ScriptCache()
    app_test.ScriptCache = local_runner.ScriptCache = lambda: shared


def in_process_moves(page_file: str, moves: int, label: str = ALPHA_LABEL, step: float = 0.01,
                     query: dict[str, str] | None = None) -> dict:
    from streamlit.testing.v1 import AppTest

    shared_script_cache()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(page_file).run()
    slider = next(s for s in at.slider if s.label.startswith(label))
    times = []
    value = float(slider.value)
    for _ in range(moves):
        value = round(value + step, 2)
        t0 = time.perf_counter()
        next(s for s in at.slider if s.label.startswith(label)).set_value(value).run()
        times.append(time.perf_counter() - t0)
    return latency_summary(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=8)
    ap.add_argument("--pages", default="grid,molecule")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--dwell-ms", type=int, default=300,
                    help="pause after each move before the next key press (a user looking at the view; default 300)")
    ap.add_argument("--slider", choices=sorted(SLIDERS), default="alpha",
                    help="the slider moved by → (beta: the molecule page only; one step is β + 1)")
    ap.add_argument("--query", default="",
                    help="URL query the pages open with, e.g. fig=interactive (the grid page's plotly figure)")
    ap.add_argument("--raw", action="store_true", help="also give every move's latency (ms), in order")
    args = ap.parse_args()
    try:
        query = dict(part.split("=", 1) for part in args.query.split("&") if part)
    except ValueError:
        raise SystemExit(f"error: --query takes key=value pairs joined by '&', got {args.query!r}")
    pages = args.pages.split(",")
    if any(name not in PAGES for name in pages):
        raise SystemExit(f"error: --pages takes {', '.join(PAGES)}, got {args.pages!r}")
    if any((name, args.slider) not in TARGETS for name in pages):
        raise SystemExit(f"error: --slider {args.slider} is measured on {[k[0] for k in TARGETS if k[1] == args.slider]} only")
    label, step = SLIDERS[args.slider]
    out: dict = {"bench": "browser_speed", "moves": args.moves, "dwell_ms": args.dwell_ms, "slider": args.slider,
                 "query": args.query, "load_avg_start": round(os.getloadavg()[0], 2)}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
                               f"--server.port={port}", "--browser.gatherUsageStats=false"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(6)
        for name in pages:
            path, page_file = PAGES[name]
            url = f"http://127.0.0.1:{port}/{path}" + (f"?{args.query}" if args.query else "")
            out[name] = {"browser": browser_moves(url, args.moves, args.chromium, args.dwell_ms, label,
                                                    args.raw)}
            out[name]["in_process_rerun"] = in_process_moves(page_file, args.moves, label, step, query)
            print(name, out[name], file=sys.stderr, flush=True)
    finally:
        server.terminate()
    for name in pages:
        out[name]["target_p50_ms"] = TARGETS[(name, args.slider)]
        out[name]["ok"] = out[name]["browser"]["p50_ms"] <= TARGETS[(name, args.slider)]
    out["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
