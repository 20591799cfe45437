"""Percentiles and latency summaries shared by the bench scripts (nearest-rank on the sorted sample)."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0 ≤ q ≤ 1) by nearest rank: no interpolation, so it is always an observed value."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latency_summary(values_s: list[float]) -> dict:
    """p50 / p95 in milliseconds and the sample size, for one JSON field."""
    ms = [v * 1000 for v in values_s]
    return {"p50_ms": round(percentile(ms, 0.5), 1), "p95_ms": round(percentile(ms, 0.95), 1), "n": len(ms)}
