"""Where the Molecule Sculpting page keeps its sample sets, and how it follows a sampling run while it goes.

- :class:`SampleStore`: one process-wide LRU of sample sets shared by every session and by the prefetch thread,
  with the runs in flight: a page that asks for a set the prefetch thread is sampling right now waits for that
  run (and follows its progress) instead of sampling it a second time. It lives outside ``st.cache_data`` on
  purpose: a progress bar updated inside a cached function would be recorded and replayed on every cache hit.
- :class:`CountingPolicy`: wraps any molecule policy and reports, once per sampling step, the step and how many
  trajectories of the current batch have stopped. It changes nothing in what is drawn (same calls, same order, same
  generator), so a set sampled with progress is identical to the unchunked seeded call
  (``sample_molecules(policy, n, seed, batch_size=128)``, as ``mol sample`` runs it).
- :class:`GrowingRun`: a seeded run that draws its molecules batch by batch and can stop after any batch: the
  page shows the first batch of a view at once and grows the same run to the full set later (in the prefetch
  thread, or in the page's next run); the grown set is the set an uninterrupted run of the same batches gives.
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

from sculpt_core.app.caches import LRU
from sculpt_core.app.page_gate import waiting_for_background

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


class SampleStore(LRU):
    """A thread-safe LRU of computed values (:class:`~sculpt_core.app.caches.LRU`) with the computations in flight
    and the growing runs of sets not complete yet, all under the LRU's lock (see the module docstring)."""

    def __init__(self, size: int = 256) -> None:
        super().__init__(size)
        self._flights: dict[Hashable, _Flight] = {}
        self._runs: OrderedDict = OrderedDict()  # key -> GrowingRun of a set not complete yet

    def run(self, key: Hashable, make: Callable[[], "GrowingRun"]) -> "GrowingRun":
        """The growing run of ``key`` (a new one from ``make()`` when there is none, or it broke); at most
        ``size // 8`` unfinished runs are kept (the oldest is dropped, and would start again)."""
        with self.lock:
            run = self._runs.get(key)
            if run is None or run.broken:
                run = self._runs[key] = make()
            self._runs.move_to_end(key)
            while len(self._runs) > max(self.size // 8, 1):
                self._runs.popitem(last=False)
            return run

    def held(self, key: Hashable) -> int | None:
        """How many molecules ``key``'s set holds: all of them when it is stored (None), else its run's (0: none)."""
        with self.lock:
            if key in self.data:
                return None
            run = self._runs.get(key)
            return len(run) if run is not None else 0

    def __contains__(self, key: Hashable) -> bool:
        with self.lock:
            return key in self.data

    def put(self, key: Hashable, value: Any) -> None:
        with self.lock:
            super().put(key, value)
            self._runs.pop(key, None)  # complete: its run is not needed any more

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self._runs.clear()

    def get_or_compute(self, key: Hashable, compute: Callable[[Progress], Any], progress: Progress | None = None,
                       poll_s: float = 0.05) -> Any:
        """The stored value of ``key``; else the value of the run in flight for it (followed with ``progress``
        while it goes); else ``compute(report)`` here, stored when it succeeds. A run that failed elsewhere is
        run again here (so its error, if any, is this caller's)."""
        while True:
            with self.lock:
                if key in self.data:
                    self.data.move_to_end(key)
                    return self.data[key]
                flight = self._flights.get(key)
                owner = flight is None
                if owner:
                    flight = self._flights[key] = _Flight()
            if owner:
                return self._run(key, flight, compute, progress)
            with waiting_for_background():  # the computing thread may be a prefetch job paused for page runs
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
            with self.lock:
                self._flights.pop(key, None)
            flight.event.set()


class RunStopped(Exception):
    """A :class:`GrowingRun` stopped because it was asked to: between two batches, or within one when the run can
    rewind its generator (it can be continued, and draws the same molecules as if it had not stopped)."""


class GrowingRun:
    """One seeded run of ``n`` valid molecules, drawn in batches from ONE generator (the first of ``first``
    trajectories when given, then of ``batch``), that can stop after any batch and be continued later, by any
    thread (:meth:`grow_to`). Its batches are cut from the batches drawn so far, the molecules collected and ``n``
    only, so the first ``k`` molecules are the same however the run was staged (16 first, then the rest; or all
    at once); without ``first`` it is the set ``sample_molecules(policy, n, seed, batch_size=batch)`` gives.
    ``draw(size, on_step)`` rolls out one batch with the run's generator and returns its (state, SMILES or None)
    pairs; ``score(smiles)`` the rewards ``[k, 3]`` of a batch's valid molecules, so a
    prefix carries its rewards. One batch at a time (a lock); a run whose batch failed is ``broken`` (its
    generator is partly consumed) and must not be continued. ``rewind`` = (save, restore) of the run's generator
    state lets :meth:`grow_to`'s ``stop()`` end a batch at its next sampling step (the generator put back to where
    the batch began), so stale background work gives up the core within a step, not a batch."""

    def __init__(self, n: int, batch: int, draw: Callable[[int, OnStep | None], list],
                 score: Callable[[list], Any], max_steps: int, limit: int | None = None,
                 first: int | None = None,
                 rewind: tuple[Callable[[], Any], Callable[[Any], None]] | None = None) -> None:
        self.n, self.batch, self.draw, self.score = int(n), int(batch), draw, score
        self.rewind = rewind
        self.first = int(first) if first else self.batch
        self.max_steps = max(int(max_steps), 1)
        self.limit = limit if limit is not None else 10 * self.n + 1000
        self.smiles: list[str] = []
        self.states: list = []
        self.rewards: list = []
        self.total = self.invalid = 0
        self.seconds = self.score_seconds = 0.0
        self.marks: list[tuple[int, float, float]] = []  # (molecules, seconds, score seconds) after each batch
        self.done = 0.0  # molecules (a molecule-equivalent estimate within a batch) of the run, for waiters
        self.broken = False
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.smiles)

    def grow_to(self, k: int, progress: Progress | None = None, poll_s: float = 0.05,
                stop: Callable[[], bool] | None = None) -> None:
        """Draw batches until the run holds ``min(k, n)`` molecules (waiting, with ``progress(done, k)``, while
        another thread draws one); ``progress`` is monotone and ends at ``(k, k)``. ``stop()`` is asked before
        each batch: when it is true the run stops there with :class:`RunStopped` (intact: it can go on later)."""
        k = min(int(k), self.n)
        shown = [-1.0]

        def report(done: float) -> None:
            done = max(min(float(done), float(k)), shown[0])
            if progress is not None and done != shown[0]:
                shown[0] = done
                progress(done, k)

        report(len(self.smiles))
        while len(self.smiles) < k:
            if not self.lock.acquire(blocking=False):
                with waiting_for_background():  # another thread draws the next batch (maybe a paused prefetch)
                    got = self.lock.acquire(timeout=poll_s)
                if not got:
                    report(self.done)
                    continue
            try:
                if self.broken:
                    raise RuntimeError("this sampling run was interrupted; start a new one")
                if len(self.smiles) < k:
                    if stop is not None and stop():
                        raise RunStopped(f"stopped after {len(self.smiles)} of {self.n} molecules")
                    self._one_batch(report, stop)
            finally:
                self.lock.release()
        report(k)

    def _one_batch(self, report: Callable[[float], None], stop: Callable[[], bool] | None = None) -> None:
        from sculpt_core.errors import SculptError

        if self.total >= self.limit:
            raise SculptError(f"only {len(self.smiles)} valid molecules out of {self.total} trajectories; giving up")
        base = len(self.smiles)
        size = min(self.first if self.total == 0 else self.batch, self.n - base)
        saved = self.rewind[0]() if self.rewind is not None and stop is not None else None

        def on_step(step: int, finished: int, batch: int) -> None:
            if saved is not None and stop():
                raise RunStopped(f"stopped within a batch after {base} of {self.n} molecules")
            running = batch - finished
            self.done = base + min(finished + running * min(step / self.max_steps, 1.0), batch)
            report(self.done)

        t0 = time.perf_counter()
        try:
            pairs = self.draw(size, on_step)
        except RunStopped:
            self.rewind[1](saved)  # as if this batch had not begun: the run is whole and reproducible
            self.done = float(base)
            raise
        except BaseException:
            self.broken = True
            raise
        self.total += size
        new_smiles, new_states = [], []
        for state, smi in pairs:
            if smi is None:
                self.invalid += 1
            elif base + len(new_smiles) < self.n:
                new_smiles.append(smi)
                new_states.append(state)
        t1 = time.perf_counter()
        rewards = self.score(new_smiles) if new_smiles else None
        self.seconds += t1 - t0
        self.score_seconds += time.perf_counter() - t1
        if rewards is not None:
            self.rewards.append(rewards)
        self.states.extend(new_states)
        self.smiles.extend(new_smiles)  # last: a reader sees whole batches only
        self.marks.append((len(self.smiles), self.seconds, self.score_seconds))
        self.done = float(len(self.smiles))
        report(self.done)

    def seconds_for(self, k: int) -> tuple[float, float]:
        """(sampling, scoring) seconds the run took until it held ``k`` molecules."""
        return next(((sec, sc) for got, sec, sc in self.marks if got >= k), (self.seconds, self.score_seconds))


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


__all__ = ["CountingPolicy", "GrowingRun", "Progress", "Rates", "RunStopped", "SampleStore", "eta_text",
           "molecule_progress", "now"]
