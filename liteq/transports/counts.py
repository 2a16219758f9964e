"""The per-minute task counters every transport keeps (``Transport.task_counts``):
what one finished task counts as (:class:`Tally`), a counter row (:class:`TaskCount`),
and the run-time buckets of the histogram they feed.

The broker writes them in the same transaction (SQLite) or script (Redis) as the
settle, so they cover tasks with ``ignore_result`` and history past ``result_expires``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

#: Upper bounds (seconds) of the run-time buckets the task counters keep; the last is
#: infinite. A counter row's ``bucket`` is an index into this tuple.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0, float("inf"))


#: The counters' pseudo-state of a lease that ran out and was taken over (its task
#: queued again or failed).
LOST = "LOST"

#: Seconds the per-minute task counters are kept (older ones are summed into one row).
COUNTS_KEPT = 8 * 86400.0


def runtime_bucket(seconds: float | None) -> int:
    """The index in :data:`RUNTIME_BUCKETS` of the first bound at or above ``seconds``;
    -1 for a task that did not run (revoked before it started, lost)."""
    if seconds is None:
        return -1
    return bisect.bisect_left(RUNTIME_BUCKETS, seconds)


@dataclass(frozen=True, slots=True)
class Tally:
    """One finished task as the per-minute counters count it (see ``task_counts``):
    its name, the state it reached, and how long it ran (None: it did not run)."""

    task_name: str
    state: str
    runtime: float | None = None


@dataclass(frozen=True, slots=True)
class TaskCount:
    """A counter row: tasks named ``task_name`` that reached ``state`` in the minute
    starting at ``minute`` (epoch seconds; 0.0 for everything older than the per-minute
    rows kept), ran for a time in run-time bucket ``bucket`` (-1: did not run), how many
    and their total run time."""

    minute: float
    task_name: str
    state: str
    bucket: int
    count: int
    runtime: float = 0.0


__all__ = ["COUNTS_KEPT", "LOST", "RUNTIME_BUCKETS", "Tally", "TaskCount", "runtime_bucket"]
