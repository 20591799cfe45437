"""Keep Python's cyclic garbage collector out of the sliders' way.

Measured on the Grid page (a real server, one α move by keyboard): its script run took 290–430 ms, of which one
generation-2 collection took 90–245 ms and found fewer than 1000 objects: a full collection scans the whole
long-lived heap (torch, plotly, streamlit, the loaded models and caches), which only grows. After a few warm-up
runs that heap is what stays, so :func:`after_script_run` collects once and moves every live object into the
permanent generation (``gc.freeze``): later collections scan only what was made since. Garbage made after a
freeze is still collected. The cost: a reference cycle among objects frozen while alive that later becomes
unreachable is not freed; the app keeps its long-lived state in caches that drop entries by reference count.
"""

from __future__ import annotations

import gc
import os
import threading

#: Script runs (counted per process) after which the heap is collected and frozen: models, caches and pages
#: are loaded lazily by the first runs.
FREEZE_AFTER_RUNS = (1, 3, 10, 30)

_lock = threading.Lock()
_runs = 0


def after_script_run() -> bool:
    """Count a finished script run; collect and freeze the heap after the runs of :data:`FREEZE_AFTER_RUNS`.
    Returns whether it froze now. ``SCULPT_GC_FREEZE=0`` turns it off (to measure its effect)."""
    global _runs
    with _lock:
        _runs += 1
        if _runs not in FREEZE_AFTER_RUNS or os.environ.get("SCULPT_GC_FREEZE", "1") == "0":
            return False
    gc.collect()
    gc.freeze()
    return True


def script_runs() -> int:
    """How many script runs this process has finished (for tests)."""
    return _runs


__all__ = ["FREEZE_AFTER_RUNS", "after_script_run", "script_runs"]
