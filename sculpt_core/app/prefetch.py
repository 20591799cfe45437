"""Background prefetch for the pages: while the user looks at a view, the neighbouring slider values are computed
by one daemon thread per page domain into the same process-wide caches the page reads, so the next arrow-key step
is a cache hit. The Molecule page samples its neighbouring α and β sets (``cached_samples``); the Grid page
composes α ± one step (``cached_compose``, and the sampled-points overlay when it is on).

Bounded: one worker thread per domain, at most :data:`MAX_PENDING` pending jobs. :meth:`Prefetcher.schedule`
replaces the pending jobs (a new view cancels the old view's unstarted work) and :meth:`Prefetcher.cancel` drops
them while the page computes its own view; a sampling job started for an older view stops at its next sampling
step (it asks :meth:`Prefetcher.stale`; its run keeps its whole batches, the generator rewound to the last one). No thread touches ``st.*`` UI.
``SCULPT_PREFETCH=0`` turns prefetching off.

At interpreter exit an ``atexit`` hook (:meth:`Prefetcher.shutdown`) drops the pending jobs, tells a running job to
stop (jobs poll :meth:`Prefetcher.check_open` through their progress callback, once per sampling step) and joins
the thread for at most :data:`EXIT_JOIN_S` seconds: a daemon thread still inside torch when the interpreter
finalises made the process abort with "terminate called without an active exception".
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from typing import Callable, Hashable, Sequence

from sculpt_core.app.page_gate import page_gate

MAX_PENDING = 6
#: How long the exit hook waits for a running job to notice it should stop.
EXIT_JOIN_S = 3.0
Job = Callable[[], object]


class PrefetchClosed(Exception):
    """Raised inside a running job (by :meth:`Prefetcher.check_open`) once the prefetcher is shut down."""


def prefetch_enabled() -> bool:
    """Prefetching is on unless ``SCULPT_PREFETCH=0``."""
    return os.environ.get("SCULPT_PREFETCH", "1") != "0"


class Prefetcher:
    """One daemon thread running the latest view's jobs in order; older views' pending jobs are dropped."""

    def __init__(self, max_pending: int = MAX_PENDING, name: str = "sculpt-mol-prefetch") -> None:
        self.max_pending = max_pending
        self.name = name  # the worker thread's name
        self._cond = threading.Condition()
        self._pending: deque[tuple[int, Job]] = deque()
        self._generation = 0
        self._view: Hashable | None = None
        self._busy = False
        self._running = -1  # the generation of the running job
        self._extended: Hashable | None = None  # the view whose schedule was extended (once per view)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.completed = 0  # jobs run to the end (for tests and the bench)

    def schedule(self, view: Hashable, jobs: Sequence[Job]) -> None:
        """Prefetch ``jobs`` for ``view`` (nothing new when ``view`` is already scheduled)."""
        with self._cond:
            if view == self._view or self._closed:
                return
            self._view = view
            self._extended = None
            self._generation += 1
            self._pending = deque((self._generation, job) for job in list(jobs)[: self.max_pending])
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def extend(self, view: Hashable, jobs: Sequence[Job]) -> None:
        """Add ``jobs`` to ``view``'s schedule, once per view: :meth:`schedule` when ``view`` is not the scheduled
        view, else after its pending jobs (the page schedules a view's growing sets first, then its neighbours)."""
        with self._cond:
            if self._closed or (view == self._view and self._extended == view):
                return
            if view != self._view:
                self._cond.release()
                try:
                    self.schedule(view, jobs)
                finally:
                    self._cond.acquire()
            else:
                self._pending.extend((self._generation, job) for job in list(jobs)[: self.max_pending])
                self._cond.notify_all()
            self._extended = view

    def cancel(self) -> None:
        """Drop every pending job (the page is about to compute a view of its own)."""
        with self._cond:
            self._generation += 1
            self._view = None
            self._extended = None
            self._pending.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def stale(self) -> bool:
        """True once the running job's view is no longer the scheduled one (a new view, :meth:`cancel`, shutdown):
        a sampling job asks at each sampling step and stops there (its run keeps its whole batches and goes on
        when asked again)."""
        return self._closed or self._running != self._generation

    def check_open(self, *_: object) -> None:
        """A running job's progress callback, once per sampling step: wait while a page run is in progress
        (:mod:`sculpt_core.app.page_gate`; not for a stale job, which is about to stop), then raise
        :class:`PrefetchClosed` once :meth:`shutdown` was called."""
        if threading.current_thread() is self._thread:
            page_gate().pause(give_up=self.stale)
        if self._closed:
            raise PrefetchClosed("the prefetcher is shut down")

    def shutdown(self, timeout: float = EXIT_JOIN_S) -> bool:
        """Drop the pending jobs, stop the running one at its next progress report and join the thread for at
        most ``timeout`` seconds; True when the thread is gone. No job is accepted afterwards."""
        with self._cond:
            self._closed = True
            self._generation += 1
            self._view = None
            self._pending.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is pending or running (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _loop(self) -> None:
        logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                generation, job = self._pending.popleft()
                if generation != self._generation:  # the view changed since it was scheduled
                    continue
                self._busy = True
                self._running = generation
            try:
                job()
                self.completed += 1
            except Exception:  # a neighbour that cannot be sampled (or a job stopped at exit) is not prefetched
                pass
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


_PREFETCHER = Prefetcher()
_GRID_PREFETCHER = Prefetcher(name="sculpt-grid-prefetch")
atexit.register(_PREFETCHER.shutdown)
atexit.register(_GRID_PREFETCHER.shutdown)


def prefetcher() -> Prefetcher:
    """The process-wide prefetcher of the Molecule page."""
    return _PREFETCHER


def grid_prefetcher() -> Prefetcher:
    """The process-wide prefetcher of the Grid page (its own thread: a grid view never cancels a molecule job)."""
    return _GRID_PREFETCHER


def neighbour_values(value: float, step: float, low: float, high: float, ahead: int = 1) -> list[float]:
    """The slider values one arrow-key step (``ahead`` steps) above and below ``value`` inside [low, high],
    nearest first, rounded as the slider rounds them."""
    out: list[float] = []
    for k in range(1, ahead + 1):
        for v in (value + k * step, value - k * step):
            v = round(v, 4)
            if low - 1e-9 <= v <= high + 1e-9 and v not in out:
                out.append(v)
    return out


__all__ = ["EXIT_JOIN_S", "MAX_PENDING", "PrefetchClosed", "Prefetcher", "grid_prefetcher", "neighbour_values",
           "prefetch_enabled", "prefetcher"]
