"""Percentiles, medians and the PASS/MISS verdicts the table prints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear between the two nearest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def p99(samples: Sequence[float]) -> float:
    return percentile(samples, 99)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def verdict(value: float, limit: float, *, at_most: bool = True) -> str:
    """PASS when `value` is on the right side of `limit`."""
    if math.isnan(value):
        return "n/a"
    ok = value <= limit if at_most else value >= limit
    return "PASS" if ok else "MISS"
