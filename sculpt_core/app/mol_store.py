"""Where the Molecule Sculpting page keeps its sample sets, and how it follows a sampling run while it goes.

- :class:`SampleStore`: one process-wide LRU of sample sets shared by every session and by the prefetch thread,
  with the runs in flight: a page that asks for a set the prefetch thread is sampling right now waits for that
  run (and follows its progress) instead of sampling it a second time. It lives outside ``st.cache_data`` on
  purpose: a progress bar updated inside a cached function would be recorded and replayed on every cache hit.
- :class:`CountingPolicy`: wraps any molecule policy and reports, once per sampling step, the step and how many
  trajectories of the current batch have stopped. It changes nothing in what is drawn (same calls, same order, same
  generator), so a set sampled with progress is identical to the unchunked seeded call
  (``sample_molecules(policy, n, seed, batch_size=128)``, as ``mol sample`` runs it).
- :func:`molecule_progress`: turns those step reports and ``sample_molecules``' own per-batch count of valid
  molecules into one monotone ``progress(done, n)``. The molecules of a batch are built together, step by step
  (the shipped models' trajectories nearly all run the env's full length), so within a batch ``done`` counts
  each unfinished trajectory by the fraction of the steps it has taken: exact at every batch's end, a
  molecule-equivalent estimate in between.

No Streamlit here: the page draws the bar (:mod:`sculpt_core.app.mol_views`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

#: ``progress(done, total)``: molecules done so far (a float within a batch, see above) out of ``total``.
Progress = Callable[[float, int], None]
#: ``on_step(step, finished, batch)``: before step ``step`` of a batch of ``batch`` trajectories, ``finished`` stopped.
OnStep = Callable[[int, int, int], None]


class CountingPolicy:
    """``policy`` unchanged, plus ``on_step(step, finished, batch)`` before every step of a batch (step 0 when it
    starts)."""

    def __init__(self, policy: Any, on_step: OnStep) -> None:
        self.policy = policy
        self.on_step = on_step
        self.batch = 0
        self.step = 0

    def start(self, n: int) -> Any:
        self.batch, self.step = int(n), 0
        self.on_step(0, 0, self.batch)
        return self.policy.start(n)

    def log_probs(self, states: Any, carry: Any) -> Any:
        self.on_step(self.step, self.batch - len(states), self.batch)
        self.step += 1
        return self.policy.log_probs(states, carry)

    def advance(self, carry: Any, states: Any, actions: Any, next_states: Any) -> Any:
        return self.policy.advance(carry, states, actions, next_states)

    def __getattr__(self, name: str) -> Any:  # env, models, … of the wrapped policy
        return getattr(self.policy, name)


def molecule_progress(n: int, progress: Progress, max_steps: int) -> tuple[OnStep, Callable[[int, int], None]]:
    """(``on_step`` for :class:`CountingPolicy`, the ``progress`` callback for ``sample_molecules``) reporting
    ``progress(done, n)``: the valid molecules of the finished batches, plus, in the current batch, its stopped
    trajectories and each running one by ``step / max_steps``; never more than ``n`` and never going back (an
    invalid molecule, dropped at the end of its batch, only holds the count)."""
    state = {"valid": 0, "shown": -1.0}
    max_steps = max(int(max_steps), 1)

    def report(done: float) -> None:
        done = max(min(float(done), float(n)), state["shown"])
        if done != state["shown"]:
            state["shown"] = done
            progress(done, n)

    def on_step(step: int, finished: int, batch: int) -> None:
        running = batch - finished
        report(state["valid"] + min(finished + running * min(step / max_steps, 1.0), batch))

    def on_batch(valid: int, total: int) -> None:
        state["valid"] = int(valid)
        report(valid)

    return on_step, on_batch


class _Flight:
    """A run in progress: its latest (done, total), and its value or error once it ends."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.done = 0
        self.total = 0
        self.value: Any = None
        self.error: BaseException | None = None


class SampleStore:
    """A thread-safe LRU of computed values with the computations in flight (see the module docstring)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def get_or_compute(self, key: Hashable, compute: Callable[[Progress], Any], progress: Progress | None = None,
                       poll_s: float = 0.05) -> Any:
        """The stored value of ``key``; else the value of the run in flight for it (followed with ``progress``
        while it goes); else ``compute(report)`` here, stored when it succeeds. A run that failed elsewhere is
        run again here (so its error, if any, is this caller's)."""
        while True:
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
                    return self._data[key]
                flight = self._flights.get(key)
                owner = flight is None
                if owner:
                    flight = self._flights[key] = _Flight()
            if owner:
                return self._run(key, flight, compute, progress)
            seen = None
            while not flight.event.wait(poll_s):
                if progress is not None and flight.total and (flight.done, flight.total) != seen:
                    seen = (flight.done, flight.total)
                    progress(*seen)
            if flight.error is None:
                if progress is not None and flight.total:
                    progress(flight.total, flight.total)
                return flight.value

    def _run(self, key: Hashable, flight: _Flight, compute: Callable[[Progress], Any],
             progress: Progress | None) -> Any:
        def report(done: float, total: int) -> None:
            flight.done, flight.total = done, int(total)
            if progress is not None:
                progress(done, total)

        try:
            value = compute(report)
        except BaseException as exc:  # a failed or interrupted run stores nothing
            flight.error = exc
            raise
        else:
            flight.value = value
            self.put(key, value)
            return value
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.event.set()


class Rates:
    """Molecules per second last measured per (method, scoring): the time left before a run's first report."""

    def __init__(self) -> None:
        self._rates: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def record(self, kind: Hashable, molecules: int, seconds: float) -> None:
        if molecules > 0 and seconds > 0:
            with self._lock:
                self._rates[kind] = molecules / seconds

    def get(self, kind: Hashable) -> float | None:
        with self._lock:
            return self._rates.get(kind)


def eta_text(done: int, total: int, elapsed: float, estimate_s: float | None = None) -> str:
    """"about X s left" from the pace so far, or from ``estimate_s`` (the measured rates) before any progress."""
    if done > 0 and elapsed > 0:
        return f"about {elapsed / done * max(total - done, 0):.1f} s left"
    if estimate_s is not None:
        return f"about {max(estimate_s - elapsed, 0.0):.1f} s left (estimated)"
    return "estimating the time left"


def now() -> float:
    return time.perf_counter()


__all__ = ["CountingPolicy", "Progress", "Rates", "SampleStore", "eta_text", "molecule_progress", "now"]
