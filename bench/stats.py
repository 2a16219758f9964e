"""Small statistics: percentiles of one run, and the summary of several runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile, linearly interpolated between closest ranks.

    Example:
        >>> percentile([1, 2, 3, 4], 50)
        2.5
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Median, min and max of the runs of one cell."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), len(values))


def number(value: float) -> str:
    """A figure with as many digits as a noisy benchmark deserves.

    Example:
        >>> number(12345.6), number(3.14159), number(0.01234)
        ('12,346', '3.14', '0.0123')
    """
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"
