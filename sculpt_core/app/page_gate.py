"""Page runs first: background prefetch work pauses while a page script runs, so the run has the CPU to itself.

On two cores the prefetch thread and a page run share one interpreter lock; measured on the Molecule page with a
view already prefetched, the page's figures took 3-4 times as long while the prefetch thread grew the next view
(the reward KDE 150-230 ms instead of 45 ms, the whole run 480-650 ms). So :func:`page_run` marks a script run,
and a prefetch job calls :meth:`PageGate.pause` at each of its sampling steps: it waits there while any page run
is in progress, except runs that are themselves waiting for background work (:func:`waiting_for_background`: a
page that needs the very set the prefetch thread is drawing must not stop that thread), and for
:data:`RENDER_GRACE_S` after a run ended, while the browser draws what it sent.

No Streamlit here; :func:`sculpt_core.app.navigation.run_app` wraps every page run.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

#: The longest one pause lasts: a safety net, a page run normally ends well before.
MAX_PAUSE_S = 10.0
#: How long background work keeps waiting after a page run ended: the browser draws what the run sent
#: meanwhile (plotly charts, images), on the same two cores.
RENDER_GRACE_S = 0.3


class PageGate:
    """Counts page runs in progress and those of them waiting for background work."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0
        self._local = threading.local()  # per thread: how deep it is in page runs
        self._last_end = float("-inf")  # perf_counter when the last page run ended

    def busy(self) -> bool:
        """True while a page run is in progress that is not waiting for background work."""
        with self._cond:
            return self._running > self._waiting

    @contextmanager
    def page_run(self) -> Iterator[None]:
        with self._cond:
            self._running += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            with self._cond:
                self._running -= 1
                self._last_end = time.perf_counter()
                self._cond.notify_all()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """The calling page run waits for a background thread meanwhile (the gate opens for it; a thread that
        is not in a page run, e.g. a prefetch job waiting for another, changes nothing)."""
        if not getattr(self._local, "depth", 0):
            yield
            return
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._waiting -= 1

    def pause(self, give_up: Callable[[], bool] | None = None, max_s: float = MAX_PAUSE_S,
              grace_s: float = RENDER_GRACE_S, poll_s: float = 0.05) -> float:
        """Wait while :meth:`busy` and for ``grace_s`` after the last page run ended, unless a page run waits for
        background work (at most ``max_s`` seconds in all; ``give_up()``, polled every ``poll_s``, ends it early);
        the seconds waited."""
        start = time.perf_counter()
        with self._cond:
            while not (give_up is not None and give_up()):
                now = time.perf_counter()
                left = max_s - (now - start)
                if left <= 0:
                    break
                if self._running > self._waiting:
                    wait = poll_s
                elif self._waiting == 0 and now - self._last_end < grace_s:  # no page waits for this work
                    wait = grace_s - (now - self._last_end)
                else:
                    break
                self._cond.wait(min(wait, poll_s, left))
        return time.perf_counter() - start


_GATE = PageGate()


def page_gate() -> PageGate:
    """The process-wide gate (every session's page runs, every prefetch thread)."""
    return _GATE


def page_run():
    """Context manager around one page script run."""
    return _GATE.page_run()


def waiting_for_background():
    """Context manager around a page run's wait for a value a background thread computes."""
    return _GATE.waiting()


__all__ = ["MAX_PAUSE_S", "RENDER_GRACE_S", "PageGate", "page_gate", "page_run", "waiting_for_background"]
