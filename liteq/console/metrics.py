"""Prometheus metrics, read from the store at each scrape (``/metrics``).

Everything is read from the store when Prometheus scrapes, so the exporter keeps no
state and a restart changes nothing: gauges (queue depth, oldest ready task, workers
alive, the SQLite WAL's size) from the messages and workers; counters of finished
tasks, leases taken over and the run-time histogram from the per-minute counters the
broker writes in each settle transaction (``Transport.task_counts``), summed for ever
(``ignore_result`` tasks and results past ``result_expires`` included); SQLite busy
retries from the workers' heartbeats plus this process's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from liteq.transports.base import LOST, RUNTIME_BUCKETS, TaskCount, WorkerInfo

if TYPE_CHECKING:
    from liteq.app import LiteQ

#: Run-time histogram buckets, in seconds (those the counters keep).
BUCKETS = RUNTIME_BUCKETS
#: Counted state -> the ``state`` label of ``liteq_tasks_total``.
COUNTED = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried",
           "REVOKED": "revoked", "REJECTED": "rejected", "IGNORED": "ignored"}
#: States whose run time the histogram observes.
TIMED = ("SUCCESS", "FAILURE")
ALIVE_SECONDS = 90.0


class StoreCollector:
    """A prometheus_client collector over one app's store.

    Args:
        app: the app whose broker and backend are read.
    """

    def __init__(self, app: LiteQ) -> None:
        self.app = app

    # -- the collector protocol --------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        now = time.time()
        alive = [w for w in self.app.broker.workers()
                 if now - (w.heartbeat_at or w.started_at) < ALIVE_SECONDS]
        gauge = GaugeMetricFamily("liteq_workers_alive", "Workers with a recent heartbeat.")
        gauge.add_metric([], len(alive))
        yield gauge
        yield from self._tasks(self.app.broker.task_counts())
        yield from self._sqlite(alive)

    def _tasks(self, rows: list[TaskCount]) -> Iterator[Metric]:
        tasks = CounterMetricFamily("liteq_tasks", "Tasks finished, by task name and "
                                    "outcome (counted when each settles).",
                                    labels=["task", "state"])
        totals: dict[tuple[str, str], int] = {}
        lost = 0
        runtimes: dict[str, list[int]] = {}
        sums: dict[str, float] = {}
        for row in rows:
            if row.state == LOST:
                lost += row.count
                continue
            label = COUNTED.get(row.state, row.state.lower())
            totals[(row.task_name, label)] = totals.get((row.task_name, label), 0) + row.count
            if row.state in TIMED and row.bucket >= 0:
                counts = runtimes.setdefault(row.task_name, [0] * len(BUCKETS))
                counts[min(row.bucket, len(BUCKETS) - 1)] += row.count
                sums[row.task_name] = sums.get(row.task_name, 0.0) + row.runtime
        for (name, label), count in sorted(totals.items()):
            tasks.add_metric([name, label], count)
        yield tasks
        taken = CounterMetricFamily("liteq_leases_taken_over", "Leases that ran out (their "
                                    "worker was lost or stopped): the task was queued again "
                                    "or failed.")
        taken.add_metric([], lost)
        yield taken
        runtime = HistogramMetricFamily("liteq_task_runtime_seconds", "Task run time, as "
                                        "the worker measured it (succeeded and failed).",
                                        labels=["task"])
        for name, counts in sorted(runtimes.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKETS, counts, strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            runtime.add_metric([name], buckets, sums[name])
        yield runtime

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("liteq_queue_messages", "Messages per queue and state "
                                  "(ready, scheduled, running).", labels=["queue", "state"])
        oldest = GaugeMetricFamily("liteq_queue_oldest_ready_seconds", "Age of the oldest "
                                   "ready message per queue.", labels=["queue"])
        now = time.time()
        first: dict[str, float] = {}
        for message in self.app.broker.messages(states=["ready"], limit=5000):
            envelope = message.envelope
            first[envelope.queue] = min(first.get(envelope.queue, now), envelope.eta or now)
        for queue, counts in sorted(self.app.broker.depth().items()):
            depth.add_metric([queue, "ready"], counts.ready)
            depth.add_metric([queue, "scheduled"], counts.scheduled)
            depth.add_metric([queue, "running"], counts.leased)
            oldest.add_metric([queue], now - first[queue] if queue in first else 0.0)
        yield depth
        yield oldest

    def _sqlite(self, alive: list[WorkerInfo]) -> Iterator[Metric]:
        path = getattr(self.app.broker, "path", None)
        if not isinstance(path, str):
            return
        try:
            size = os.stat(path + "-wal").st_size
        except OSError:
            size = 0
        wal = GaugeMetricFamily("liteq_sqlite_wal_bytes", "Size of the SQLite write-ahead "
                                "log file.")
        wal.add_metric([], size)
        yield wal
        busy = CounterMetricFamily("liteq_sqlite_busy_retries", "Times a process waited "
                                   "for SQLite's write lock held by another (live workers, "
                                   "as their last heartbeat reported, and this exporter).")
        busy.add_metric([], busy_retries(self.app, alive))
        yield busy


def busy_retries(app: LiteQ, alive: list[WorkerInfo]) -> int:
    """SQLite busy retries of the live workers (their heartbeats) and of this process."""
    reported = sum(_int(w.info.get("sqlite_busy_retries")) for w in alive)
    return reported + app.broker.busy_retries()


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def registry_for(app: LiteQ) -> tuple[CollectorRegistry, StoreCollector]:
    """A registry holding one :class:`StoreCollector` over ``app``."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StoreCollector(app)
    registry.register(collector)
    return registry, collector


def metrics_response(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The metrics text of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["BUCKETS", "StoreCollector", "busy_retries", "metrics_response", "registry_for"]
