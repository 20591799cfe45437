"""End to end in a real headless browser, one test per page (issue 17): open the page, change its main control
(the α slider by keyboard where there is one; the home page's colour scale, the map's embedding), see the figure
change, then open the page's own URL (``page.url``, written with ``st.query_params``) in a fresh page and see the
same view: the same control value and the same figure fingerprint. Also: the grid page's "compare all" cards line
up with their panels, a trajectory-product view keeps the previous figures on screen behind a stale note and a
progress bar (never a blank page), the molecule page samples and draws (and its CSV download, clicked, carries the
view's parameters in its name and columns), the diffusion page's time slider and its spec file upload, and the
Diffusion Images page on a tiny image zoo (its own server): the M1/M2 pair and a grid download.

Needs Debian's ``chromium`` (``apt-get install -y chromium chromium-driver``) and the ``playwright`` Python
package (its own browser downloads are not used). Skips with the reason when either is missing.
Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sculpt_core.app.navigation import PAGE_TITLE

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "test-output"
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} not installed (apt-get install -y chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _streamlit_server(assets, log_name: str):
    """``streamlit run app.py`` on a free port with ``assets`` as SCULPT_ASSETS (None: the shipped zoo); yields
    its URL once healthy and stops it afterwards (its output goes to ``test-output/<log_name>``)."""
    app_env = {"SCULPT_FAST_TRAINING": "1", **({"SCULPT_ASSETS": str(assets)} if assets is not None else {})}
    port = _free_port()
    OUT.mkdir(exist_ok=True)
    log = open(OUT / log_name, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}",
         "--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
        cwd=ROOT, env={**os.environ, **app_env}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}; see {OUT / log_name}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("streamlit did not become healthy within 60 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def app_url(tiny_zoo):
    with _streamlit_server(tiny_zoo, "e2e_streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


def _wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the script has started and finished its rerun."""
    page.wait_for_timeout(300)  # let the rerun start (the state flips to 'running')
    page.wait_for_selector(READY, timeout=timeout_ms)


def _metric_text(page, label: str) -> str:
    metric = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return metric.locator("[data-testid='stMetricValue']").inner_text()


FINGERPRINT_JS = """() => {
  const img = document.querySelector("[data-testid='stMain'] [data-testid='stImage'] img");
  if (img) return img.complete && img.naturalWidth > 0 ? img.src : null;  // the default view: one PNG, by its bytes
  const plot = document.querySelector(".st-key-fig_composed .js-plotly-plot");
  if (!plot || !plot.data || !plot.data.length) return null;
  const z = plot.data[0].z;
  if (z && typeof z.bdata === "string") return z.bdata;  // plotly's base64 typed-array encoding
  let s = 0, k = 1;
  for (const row of z) for (const v of row) { s += (Number.isFinite(v) ? v : 0) * (k % 97 + 1); k += 1; }
  return s.toPrecision(12);
}"""


def _fingerprint(page) -> str | None:
    """What identifies the composed heatmap: the source of its PNG (the default figure; Streamlit names a media
    file after its bytes), or a checksum of its values read from the live plotly graph (``fig=interactive``)."""
    return page.evaluate(FINGERPRINT_JS)


def _alpha_thumb(page):
    """The α slider's thumb: an ``<input type=range>`` (react-aria) or a ``role=slider`` div, depending on Streamlit."""
    return page.locator(".st-key-g_alpha").get_by_role("slider")


def _alpha_value(page) -> float:
    return _slider_value(page, "g_alpha")


def _slider_value(page, key: str) -> float:
    """The value of the slider keyed ``key`` (its thumb's value or aria-valuenow)."""
    thumb = page.locator(f".st-key-{key}").get_by_role("slider")
    return float(thumb.evaluate("e => e.value || e.getAttribute('aria-valuenow')"))


def _press(page, key: str, arrow: str, times: int) -> None:
    """Move the slider keyed ``key`` by ``times`` key presses (``ArrowRight``, ``ArrowLeft``, ``Home`` …)."""
    page.locator(f".st-key-{key}").get_by_role("slider").focus()
    for _ in range(times):
        page.keyboard.press(arrow)


#: A checksum of one plotly graph's data (every trace, plotly's own ``uid``/``_…`` fields left out), or null.
FIGURE_JS = """(selector) => {
  const plot = document.querySelector(selector);
  if (!plot || !plot.data || !plot.data.length) return null;
  const s = JSON.stringify(plot.data, (k, v) => (k === "uid" || k.startsWith("_")) ? undefined : v);
  let h = 5381;
  for (let i = 0; i < s.length; i++) h = ((h * 33) ^ s.charCodeAt(i)) >>> 0;
  return s.length + ":" + h;
}"""


def _figure(page, selector: str) -> str | None:
    return page.evaluate(FIGURE_JS, selector)


def _wait_figure_changed(page, selector: str, before: str | None, timeout_ms: int = 60_000) -> str:
    page.wait_for_function(f"([sel, before]) => {{ const f = ({FIGURE_JS})(sel); return f !== null && f !== before; }}",
                           arg=[selector, before], timeout=timeout_ms)
    _wait_idle(page, timeout_ms)
    return _figure(page, selector)


def _reopen(browser, url: str, ready: str, viewport: dict, timeout_ms: int = 90_000, frames: list | None = None):
    """``url`` (a page's own address, copied) in a fresh page, once its content is drawn and the script idle;
    with ``frames``, every websocket message the server sends is appended to it (as bytes)."""
    page = browser.new_page(viewport=viewport)
    if frames is not None:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(
            payload if isinstance(payload, bytes) else payload.encode())))
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(ready, timeout=timeout_ms)
    _wait_idle(page, timeout_ms)
    assert page.locator("[data-testid='stException']").count() == 0
    return page


def _radio_value(page, key: str) -> str:
    """The label of the checked option of the radio keyed ``key``."""
    return page.locator(f".st-key-{key} label:has(input:checked)").inner_text().strip()


def test_move_alpha_changes_figure(app_url, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    try:
        page.goto(app_url + "/grid_sculpting", wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=60_000)
        _wait_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        # the first URL this server process serves: still the app's page config and menu, not the legacy
        # pages/-folder ones (see sculpt_core.app.navigation)
        assert page.title() == PAGE_TITLE
        menu = [t.split("\n")[-1] for t in page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()]
        assert menu == ["Home", "Grid Sculpting", "Molecule Sculpting", "Distribution Map", "Diffusion Sculpting",
                        "Diffusion Images"], menu
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "e2e_grid_before.png"), full_page=True)
        alpha_before, fp_before = _alpha_value(page), _fingerprint(page)
        true_l1_before = _metric_text(page, "L1 to true target")
        assert fp_before is not None, "no plotly data found in the composed figure"

        thumb = _alpha_thumb(page)
        thumb.focus()
        for _ in range(15):
            page.keyboard.press("ArrowRight")
        _wait_idle(page)
        page.wait_for_function(f"(before) => {{ const f = ({FINGERPRINT_JS})(); return f !== null && f !== before; }}",
                               arg=fp_before, timeout=30_000)
        _wait_idle(page)

        alpha_after, fp_after = _alpha_value(page), _fingerprint(page)
        assert alpha_after > alpha_before
        assert fp_after != fp_before, "the composed heatmap did not change after moving α"
        assert _metric_text(page, "L1 to true target") != true_l1_before
        assert "alpha=" in page.url and f"alpha={alpha_after:g}" in page.url
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(OUT / "e2e_grid_after.png"), full_page=True)
        url, l1_after = page.url, _metric_text(page, "L1 to true target")
    finally:
        page.close()

    # the copied link restores the same view in a fresh session
    frames: list[bytes] = []
    page = _reopen(browser, url, "[data-testid='stPlotlyChart']", {"width": 1500, "height": 1100}, frames=frames)
    try:
        assert _alpha_value(page) == pytest.approx(alpha_after)
        assert _fingerprint(page) == fp_after and _metric_text(page, "L1 to true target") == l1_after
        _trajectory_view_is_never_blank(page, frames)
    finally:
        page.close()


def test_grid_alpha_reruns_its_fragment_and_an_operator_change_the_whole_page(app_url, browser):
    """An α move reruns only the live fragment (the base models' section is not sent again); an operator change
    reruns the whole page (``st.rerun`` from the fragment: the training form's offer depends on the operator), which
    AppTest cannot show, since it runs no fragment-only reruns. Read from the server's websocket messages."""
    frames: list[bytes] = []
    page = _reopen(browser, app_url + "/grid_sculpting", "[data-testid='stPlotlyChart']",
                   {"width": 1500, "height": 1100}, frames=frames)
    outside = "exact L1 to its target at this".encode()  # the base models' caption, outside the fragment
    try:
        assert any(outside in f for f in frames)
        fp_before = _fingerprint(page)
        frames.clear()
        _press(page, "g_alpha", "ArrowRight", 1)
        page.wait_for_function(f"(before) => {{ const f = ({FINGERPRINT_JS})(); return f !== null && f !== before; }}",
                               arg=fp_before, timeout=30_000)
        _wait_idle(page)
        assert frames and not any(outside in f for f in frames), "an α move reran the whole page"
        frames.clear()
        page.locator(".st-key-g_op").click()
        page.get_by_role("option", name="contrast", exact=True).click()
        page.wait_for_function("() => location.search.includes('op=contrast')", timeout=30_000)
        _wait_idle(page)
        page.wait_for_timeout(500)
        _wait_idle(page)
        assert any(outside in f for f in frames), "an operator change did not rerun the whole page"
        assert page.locator("[data-testid='stException']").count() == 0
    finally:
        page.close()


#: The composed view: its PNG (the only image of the main area) or its plotly figure (``fig=interactive``).
COMPOSED_JS = """() => document.querySelectorAll(
  "[data-testid='stMain'] [data-testid='stImage'] img, .st-key-fig_composed .js-plotly-plot").length"""
#: Records, from the call on, the fewest composed views the main area ever held (every DOM change is looked at;
#: the base models' chart, always there, is not counted, so a blank composed view fails).
WATCH_JS = """() => {
  const count = (%s);
  const w = window.__sculptWatch = {minComposed: count(), changes: 0};
  new MutationObserver(() => {
    w.changes += 1;
    w.minComposed = Math.min(w.minComposed, count());
  }).observe(document.querySelector("[data-testid='stMain']"),
             {subtree: true, childList: true, characterData: true, attributes: true});
}""" % COMPOSED_JS


def _trajectory_view_is_never_blank(page, frames: list[bytes]) -> None:
    """Issue 17: switching to trajectory-product u samples 20,000 trajectories. Meanwhile the previous figures
    stay on screen (the main area never loses its charts), and the server sends a stale note and a progress bar
    with counts and the time left (read from its websocket messages: sampling takes well under a second here,
    so the browser may draw the bar for too short a time to be seen), which are gone once the view is drawn."""
    page.locator(".st-key-g_method").get_by_text("reaching mixing").click()
    _wait_idle(page)
    page.wait_for_selector(".st-key-g_u", timeout=30_000)
    fp_exact = _fingerprint(page)
    page.evaluate(WATCH_JS)
    frames.clear()
    page.locator(".st-key-g_u").get_by_text("trajectory product (sampled)").click()
    page.get_by_text("Monte-Carlo histogram of 20000 sampled trajectories").wait_for(timeout=60_000)
    _wait_idle(page)
    watch = page.evaluate("() => window.__sculptWatch")
    assert watch["changes"] > 0 and watch["minComposed"] >= 1, watch  # the composed view never goes blank
    sent = b"".join(frames)
    assert "Stale: the figures below are the previous view".encode() in sent, "the server sent no stale note"
    bars = [f for f in frames if b"Sampling trajectories: " in f]
    assert any(b"0 / 20,000" in f for f in bars) and any(b"s left" in f for f in bars), len(bars)
    assert any(b"20,000 / 20,000" in f for f in bars), len(bars)
    assert page.locator("[data-testid='stMain'] [data-testid='stProgress']").count() == 0
    assert page.get_by_text("Stale: the figures below").count() == 0
    assert _fingerprint(page) != fp_exact and "u=trajectory" in page.url
    assert page.locator("[data-testid='stException']").count() == 0


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and \
        b["y"] < a["y"] + a["height"]


def test_compare_all_cards_line_up_and_titles_do_not_overlap(app_url, browser):
    """Issue 17: each "compare all" card (metric) sits above its own heatmap, panels are large enough to read,
    no two panel titles overlap, and every method has an error map."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    try:
        page.goto(app_url + "/grid_sculpting?method=compare", wait_until="domcontentloaded")
        page.wait_for_selector(".st-key-fig_compare_1 .js-plotly-plot", timeout=60_000)
        _wait_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        charts = page.locator("[class*='st-key-fig_compare_'] .js-plotly-plot").all()
        errors = page.locator("[class*='st-key-fig_error_'] .js-plotly-plot").all()
        metrics = page.locator("[data-testid='stMetric']").filter(has_text="L1 to").all()
        assert len(charts) >= 4 and len(errors) == len(metrics) - 1 >= 3
        panels = [c.locator(".nsewdrag").first.bounding_box() for c in charts]
        assert all(p["width"] >= 180 and p["height"] >= 180 for p in panels), panels
        titles = [a.bounding_box() for c in charts + errors for a in c.locator(".annotation").all()]
        assert not any(_overlap(a, b) for i, a in enumerate(titles) for b in titles[i + 1:]), titles
        card_x = sorted(round(m.bounding_box()["x"]) for m in metrics)
        chart_x = sorted(round(page.locator(f".st-key-fig_compare_{i}").bounding_box()["x"])
                         for i in range(len(metrics)) if page.locator(f".st-key-fig_compare_{i}").count())
        assert card_x == chart_x, (card_x, chart_x)  # every card in its panel's column
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "e2e_grid_compare.png"), full_page=True)
    finally:
        page.close()


def test_home_page_renders(app_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=60_000)
        _wait_idle(page)
        assert page.get_by_text("2309.16115").count() >= 1
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(OUT / "e2e_home.png"), full_page=True)
        # its control: the colour scale (per panel → log10 changes every panel's values)
        assert _radio_value(page, "home_scale") == "per panel"
        before = _figure(page, HOME_FIG)
        assert before is not None, "no plotly data in the home picture"
        page.locator(".st-key-home_scale").get_by_text("log10 (shared)").click()
        after = _wait_figure_changed(page, HOME_FIG, before)
        assert "scale=log" in page.url, page.url
        url = page.url
    finally:
        page.close()

    page = _reopen(browser, url, HOME_FIG, {"width": 1400, "height": 1000})
    try:
        assert _radio_value(page, "home_scale") == "log10 (shared)"
        assert _figure(page, HOME_FIG) == after
    finally:
        page.close()


HOME_FIG = ".st-key-home_fig .js-plotly-plot"


def test_molecule_page_samples_and_draws(app_url, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1400}, accept_downloads=True)
    try:
        page.goto(app_url + "/molecule_sculpting", wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=90_000)
        _wait_idle(page, 90_000)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stImage'] img").count() >= 1  # the molecule gallery
        assert _metric_text(page, "molecules / s").strip() not in ("", "n/a")
        page.screenshot(path=str(OUT / "e2e_molecules.png"), full_page=True)
        # α by keyboard: a new sample set, so the reward KDE changes; the URL carries α
        alpha_before, kde_before = _slider_value(page, "m_alpha"), _figure(page, MOL_KDE)
        assert kde_before is not None, "no plotly data in the reward KDE"
        _press(page, "m_alpha", "ArrowRight", 5)
        _wait_figure_changed(page, MOL_KDE, kde_before, 90_000)  # the first batch of 16 may come first …
        kde_after = _wait_full_view(page, MOL_KDE)  # … then the full set; compare that one after the reload
        alpha_after = _slider_value(page, "m_alpha")
        assert alpha_after == pytest.approx(alpha_before + 0.05)
        assert f"alpha={alpha_after:g}" in page.url, page.url
        assert page.locator("[data-testid='stException']").count() == 0
        url, gallery = page.url, _image_srcs(page, "[data-testid='stMain'] [data-testid='stImage'] img")
        # the CSV download, clicked in the browser: the view's parameters in its name and as columns
        with page.expect_download() as download:
            page.get_by_role("button", name="Samples (CSV)").click()
        name = download.value.suggested_filename
        assert name.startswith("sculpt_mol_") and name.endswith(".csv") and f"_a{alpha_after:g}_" in name, name
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert rows and {"method", "alpha", "beta", "labels", "smiles", "qed"} <= set(rows[0])
        assert all(float(r["alpha"]) == pytest.approx(alpha_after) for r in rows)
    finally:
        page.close()

    page = _reopen(browser, url, MOL_KDE, {"width": 1500, "height": 1400})
    try:
        assert _slider_value(page, "m_alpha") == pytest.approx(alpha_after)
        assert _figure(page, MOL_KDE) == kde_after
        assert _image_srcs(page, "[data-testid='stMain'] [data-testid='stImage'] img") == gallery
    finally:
        page.close()


MOL_KDE = ".st-key-fig_kde .js-plotly-plot"
GROWING_JS = "() => !(document.querySelector(\"section[data-testid='stMain']\") || document.body).innerText.includes('growing…')"


def _wait_full_view(page, selector: str, timeout_s: float = 90.0) -> str:
    """Wait until the molecule page shows its full sample sets (no "growing…" note, the page idle) and its figure
    stays the same for 1 s; returns that figure's fingerprint."""
    deadline = time.monotonic() + timeout_s
    page.wait_for_function(GROWING_JS, timeout=timeout_s * 1000)
    _wait_idle(page, int(timeout_s * 1000))
    last = _figure(page, selector)
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        now = _figure(page, selector)
        if now == last and page.evaluate(GROWING_JS):
            return now
        last = now
    pytest.fail("the molecule view did not settle on its full sample sets")


def _image_srcs(page, selector: str) -> list[str]:
    """The ``src`` of every image the selector finds (Streamlit serves each image under its content hash)."""
    return page.locator(selector).evaluate_all("els => els.map(e => e.getAttribute('src'))")


TARGET_FINGERPRINT_JS = """(index) => {
  const plots = document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot");
  const plot = plots[index];
  if (!plot || !plot.data || !plot.data.length) return null;
  const heat = plot.data.filter(t => t.type === "heatmap");
  const z = heat.length ? heat[heat.length - 1].z : null;  // the last panel: the exact composed target
  if (!z) return null;
  if (typeof z.bdata === "string") return z.bdata;
  let s = 0, k = 1;
  for (const row of z) for (const v of row) { s += (Number.isFinite(v) ? v : 0) * (k % 97 + 1); k += 1; }
  return s.toPrecision(12);
}"""

SNAPSHOT_RANGE_JS = """() => {
  const plots = document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot");
  const plot = plots[plots.length - 1];
  return plot && plot.layout && plot.layout.xaxis ? plot.layout.xaxis.range[1] : null;
}"""


def test_diffusion_page_alpha_and_time_slider(app_url, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1800})
    try:
        page.goto(app_url + "/diffusion_sculpting?n=400&steps=30", wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=90_000)
        _wait_idle(page, 90_000)
        assert page.locator("[data-testid='stException']").count() == 0
        l1_before = _metric_text(page, "binned L1")
        assert _metric_text(page, "L1 noise floor").strip() not in ("", "n/a")
        fp_before = page.evaluate(TARGET_FINGERPRINT_JS, 0)
        assert fp_before is not None, "no exact target heatmap found"
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "e2e_diffusion_before.png"), full_page=True)

        thumb = page.locator(".st-key-d_alpha").get_by_role("slider")
        thumb.focus()
        for _ in range(20):
            page.keyboard.press("ArrowLeft")
        _wait_idle(page)
        page.wait_for_function(f"(before) => ({TARGET_FINGERPRINT_JS})(0) !== before", arg=fp_before, timeout=60_000)
        _wait_idle(page, 90_000)
        alpha = float(thumb.evaluate("e => e.value || e.getAttribute('aria-valuenow')"))
        assert alpha < 0.5 and f"alpha={alpha:g}" in page.url
        assert _metric_text(page, "binned L1") != l1_before or page.evaluate(TARGET_FINGERPRINT_JS, 0) != fp_before
        assert page.get_by_text("Preview (").count() == 0  # the quick preview was replaced by the full run
        assert page.locator("[data-testid='stException']").count() == 0
        url, target_after, l1_after = page.url, page.evaluate(TARGET_FINGERPRINT_JS, 0), _metric_text(page, "binned L1")

        # the time slider: back to t ≈ 1, where the particles spread over the prior (σ(1) ≈ 9.85)
        end_range = page.evaluate(SNAPSHOT_RANGE_JS)
        time_thumb = page.locator(".st-key-d_t").get_by_role("slider")
        time_thumb.focus()
        page.keyboard.press("Home")
        _wait_idle(page)
        page.wait_for_function(f"(before) => ({SNAPSHOT_RANGE_JS})() !== before", arg=end_range, timeout=30_000)
        _wait_idle(page)
        assert page.evaluate(SNAPSHOT_RANGE_JS) > 8 > end_range
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(OUT / "e2e_diffusion_after.png"), full_page=True)
    finally:
        page.close()

    # the link copied after the α move: the same α, exact target and samples (the same binned L1)
    page = _reopen(browser, url, "[data-testid='stPlotlyChart']", {"width": 1500, "height": 1800})
    try:
        page.wait_for_function(f"(want) => ({TARGET_FINGERPRINT_JS})(0) === want", arg=target_after, timeout=60_000)
        assert _slider_value(page, "d_alpha") == pytest.approx(alpha)
        assert _metric_text(page, "binned L1") == l1_after
        assert page.get_by_text("Preview (").count() == 0
    finally:
        page.close()


MAP_JS = """() => {
  const plot = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
  if (!plot || !plot.data) return null;
  const points = plot.data.reduce((s, t) => s + (t.hovertext ? t.hovertext.length : 0), 0);
  const title = plot.layout && plot.layout.title ? (plot.layout.title.text || plot.layout.title) : "";
  return {points: points, title: String(title)};
}"""


def test_diffusion_spec_upload_adds_a_base_and_a_bad_file_is_a_message(app_url, browser, tmp_path):
    """The file uploader of "Add your own base", driven in chromium (AppTest cannot upload): a JSON mixture file
    becomes a selected base of the composition; a file that is not a spec gives a message, never a traceback."""
    good, bad = tmp_path / "upload_spec.json", tmp_path / "broken.json"
    good.write_text('{"weights": [1, 2], "means": [[2.0, 2.0], [-2.0, 1.0]], "stds": [0.5, 0.8]}', encoding="utf-8")
    bad.write_text('{"weights": [1], "means": [[0, 0]]', encoding="utf-8")
    page = browser.new_page(viewport={"width": 1500, "height": 1800})
    try:
        page.goto(app_url + "/diffusion_sculpting?n=200&steps=20", wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=90_000)
        _wait_idle(page, 90_000)
        bases = page.locator(".st-key-d_bases")
        assert "upped" not in bases.inner_text()
        expander = page.locator("details").filter(has_text="Add your own base (a Gaussian mixture)")

        def open_form() -> None:  # a rerun may fold the expander again
            if expander.get_attribute("open") is None:
                expander.locator("summary").click()
            page.get_by_role("tab", name="JSON (paste or upload)").click()

        open_form()
        page.locator(".st-key-d_spec_name input").fill("upped")
        page.locator(".st-key-d_spec_name input").press("Enter")
        _wait_idle(page)
        for path, ok in ((bad, False), (good, True)):
            open_form()
            page.locator(".st-key-d_spec_upload input[type='file']").set_input_files(str(path))
            _wait_idle(page)
            open_form()
            page.get_by_role("button", name="Add the JSON spec").click()
            _wait_idle(page, 90_000)
            assert page.locator("[data-testid='stException']").count() == 0
            if not ok:
                assert page.get_by_text("Cannot add this spec").count() == 1
                assert "upped" not in bases.inner_text()
        page.wait_for_function("() => document.querySelector('.st-key-d_bases').innerText.includes('upped')",
                               timeout=60_000)
        assert "upped (your spec, exact)" in bases.inner_text()
        page.screenshot(path=str(OUT / "e2e_diffusion_upload.png"), full_page=True)
    finally:
        page.close()


def test_distribution_map_opens_on_fig4_and_switches_embedding(app_url, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1600})
    try:
        page.goto(app_url + "/distribution_map", wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=60_000)
        _wait_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        shown = page.evaluate(MAP_JS)
        assert shown["points"] == 13 and "t-SNE" in shown["title"], shown  # the paper's 13 distributions
        assert _metric_text(page, "d(SEH, SA)").strip() not in ("", "n/a")
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "e2e_map_tsne.png"), full_page=True)
        tsne = _figure(page, MAP_FIG)
        page.locator("[data-testid='stSidebar']").get_by_text("MDS (metric, SMACOF)").click()
        _wait_idle(page)
        page.wait_for_function(f"() => {{ const s = ({MAP_JS})(); return s && s.title.includes('MDS'); }}",
                               timeout=30_000)
        assert page.evaluate(MAP_JS)["points"] == 13
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(OUT / "e2e_map_mds.png"), full_page=True)
        mds = _figure(page, MAP_FIG)
        assert mds is not None and mds != tsne, "the map's points did not move with the embedding"
        assert "embedding=mds" in page.url, page.url
        url = page.url
    finally:
        page.close()

    page = _reopen(browser, url, MAP_FIG, {"width": 1500, "height": 1600})
    try:
        assert _radio_value(page, "dm_embed") == "MDS (metric, SMACOF)"
        assert "MDS" in page.evaluate(MAP_JS)["title"] and _figure(page, MAP_FIG) == mds
    finally:
        page.close()


MAP_FIG = ".st-key-dm_map .js-plotly-plot"


@pytest.fixture(scope="module")
def image_app_url(tiny_image_zoo):
    """A second server on the tiny colored-MNIST zoo (the first one's assets have no image models)."""
    with _streamlit_server(tiny_image_zoo, "e2e_streamlit_images.log") as url:
        yield url


IMAGES = "[data-testid='stMain'] [data-testid='stImage'] img"


def test_diffusion_images_grids_pair_preset_and_png(image_app_url, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1400}, accept_downloads=True)
    try:
        page.goto(image_app_url + "/diffusion_images?n=4&steps=3", wait_until="domcontentloaded")
        page.wait_for_selector(IMAGES, timeout=90_000)
        _wait_idle(page, 90_000)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator(IMAGES).count() == 4  # three bases and the composition
        assert _metric_text(page, "classifier: in the expected set").strip().endswith("%")
        assert page.get_by_text("expected: green 0 ·").count() == 1
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "e2e_images_triple.png"), full_page=True)

        page.locator("[data-testid='stSidebar']").get_by_text("M1, M2: the appendix pair").click()
        _wait_idle(page)
        page.wait_for_function(f"() => document.querySelectorAll(\"{IMAGES}\").length === 3", timeout=60_000)
        _wait_idle(page)
        assert "bases=m1%2Cm2" in page.url and "op=hm" in page.url, page.url
        assert _metric_text(page, "p2: in its own set").strip().endswith("%")
        assert page.locator("[data-testid='stException']").count() == 0
        with page.expect_download() as download:
            page.locator("[data-testid='stDownloadButton'] button").last.click()
        assert download.value.suggested_filename == "sculpt_images_m1_m2_classifier.png"
        assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page.screenshot(path=str(OUT / "e2e_images_pair.png"), full_page=True)
        # α by keyboard: the composed grid changes (an α-conditioned classifier samples a new one; the tiny zoo's
        # pair classifier is not α-conditioned, so the page says so in its place), the bases stay, the URL has α
        srcs_before = _image_srcs(page, IMAGES)
        _press(page, "di_alpha", "ArrowLeft", 20)
        _wait_idle(page)
        page.wait_for_function(f"(before) => Array.from(document.querySelectorAll(\"{IMAGES}\"), "
                               f"e => e.getAttribute('src')).join() !== before", arg=",".join(srcs_before),
                               timeout=60_000)
        _wait_idle(page)
        alpha, srcs_after = _slider_value(page, "di_alpha"), _image_srcs(page, IMAGES)
        assert alpha == pytest.approx(0.3) and f"alpha={alpha:g}" in page.url, page.url
        assert srcs_after[:2] == srcs_before[:2]
        not_alpha = page.get_by_text("this classifier is not α-conditioned").count()
        assert (len(srcs_after) == 2 and not_alpha == 1) or (len(srcs_after) == 3 and srcs_after[2] != srcs_before[2])
        url = page.url
    finally:
        page.close()

    page = _reopen(browser, url, IMAGES, {"width": 1500, "height": 1400})
    try:
        page.wait_for_function(f"(n) => document.querySelectorAll(\"{IMAGES}\").length === n", arg=len(srcs_after),
                               timeout=60_000)
        _wait_idle(page)
        assert _slider_value(page, "di_alpha") == pytest.approx(alpha)
        assert _image_srcs(page, IMAGES) == srcs_after
        assert page.get_by_text("this classifier is not α-conditioned").count() == not_alpha
    finally:
        page.close()
