"""Prometheus metrics, read from the store at each scrape (``/metrics``).

Gauges (queue depth, oldest ready task, workers alive, the SQLite WAL's size) are read
from the store when Prometheus scrapes. Counters of finished tasks per task name and
the run-time histogram come from :class:`liteq.events.EventMonitor`: the exporter
starts from every result the store holds (so a restart does not reset them to what
happened since), then follows events; nothing is written on the task path for them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from liteq.events import EventMonitor

if TYPE_CHECKING:
    from liteq.app import LiteQ

#: Run-time histogram buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0, float("inf"))
#: Event type -> the ``state`` label of ``liteq_tasks_total``.
COUNTED = {"task-succeeded": "succeeded", "task-failed": "failed",
           "task-retried": "retried", "task-revoked": "revoked"}
ALIVE_SECONDS = 90.0
#: Seconds between reads of the store for events: run times are measured from the
#: first read that sees a task held by a worker (or STARTED), so to about this much,
#: and a task that starts and ends between two reads is counted but not timed.
FOLLOW_INTERVAL = 0.25

logger = logging.getLogger(__name__)


class StoreCollector:
    """A prometheus_client collector over one app's store.

    Args:
        app: the app whose broker and backend are read.
    """

    def __init__(self, app: LiteQ) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._monitor: EventMonitor | None = None
        self._counts: Counter[tuple[str, str]] = Counter()
        self._taken_over = 0
        self._began: dict[str, float] = {}
        self._received: set[str] = set()
        self._names: dict[str, str] = {}
        self._runtimes: dict[str, list[int]] = {}
        self._runtime_sums: dict[str, float] = {}

    # -- counters from events ----------------------------------------------------------

    def update(self) -> None:
        """Read the events since the last call (the first reads every stored result)."""
        with self._lock:
            if self._monitor is None:
                self._monitor = EventMonitor(self.app, replay=True)
            events = self._monitor.poll()
            for event in events:  # a revoke's record has no name: its message has
                if event.get("name"):
                    self._names[event["uuid"]] = event["name"]
            for event in events:
                self._count(event)
            if len(self._names) > 100_000:
                self._names.clear()

    def _count(self, event: dict[str, Any]) -> None:
        kind, uuid = event["type"], event["uuid"]
        name = event.get("name") or self._names.get(uuid) or "unknown"
        if kind == "task-received":
            if uuid in self._received:
                self._taken_over += 1  # delivered again: its lease was taken over
            self._received.add(uuid)
            self._began.setdefault(uuid, event["timestamp"])
        elif kind == "task-started":
            self._began[uuid] = event["timestamp"]
        state = COUNTED.get(kind)
        if state is None:
            return
        self._counts[(name, state)] += 1
        if "WorkerLostError" in str(event.get("exception") or ""):
            self._taken_over += 1
        began = self._began.pop(uuid, None)
        if kind != "task-retried":
            self._received.discard(uuid)
        if began is not None and kind in ("task-succeeded", "task-failed"):
            self._observe(name, max(0.0, event["timestamp"] - began))

    def _observe(self, name: str, seconds: float) -> None:
        counts = self._runtimes.setdefault(name, [0] * len(BUCKETS))
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[index] += 1
        self._runtime_sums[name] = self._runtime_sums.get(name, 0.0) + seconds

    def follow(self, interval: float = FOLLOW_INTERVAL) -> threading.Event:
        """Read events every ``interval`` seconds in a daemon thread (so run times are
        measured between scrapes); set the returned event to stop it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.update()
                except Exception:  # the store may be briefly unreachable: next time
                    logger.warning("liteq metrics: cannot read the store", exc_info=True)

        threading.Thread(target=loop, name="liteq-metrics", daemon=True).start()
        return stop

    # -- the collector protocol --------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        self.update()
        yield from self._queues()
        yield from self._workers()
        with self._lock:
            tasks = CounterMetricFamily("liteq_tasks", "Tasks finished, by task name and "
                                        "outcome (from the store's results and events).",
                                        labels=["task", "state"])
            for (name, state), count in sorted(self._counts.items()):
                tasks.add_metric([name, state], count)
            yield tasks
            lost = CounterMetricFamily("liteq_leases_taken_over", "Tasks whose lease ran "
                                       "out (worker lost) and were taken over or failed.")
            lost.add_metric([], self._taken_over)
            yield lost
            runtime = HistogramMetricFamily("liteq_task_runtime_seconds", "Task run time "
                                            "(received or started to finished).",
                                            labels=["task"])
            for name, counts in sorted(self._runtimes.items()):
                buckets = [(_bound(b), c) for b, c in zip(BUCKETS, counts, strict=True)]
                runtime.add_metric([name], buckets, self._runtime_sums[name])
            yield runtime
        yield from self._sqlite()

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

    def _workers(self) -> Iterator[Metric]:
        now = time.time()
        alive = sum(1 for w in self.app.broker.workers()
                    if now - (w.heartbeat_at or w.started_at) < ALIVE_SECONDS)
        gauge = GaugeMetricFamily("liteq_workers_alive", "Workers with a recent heartbeat.")
        gauge.add_metric([], alive)
        yield gauge

    def _sqlite(self) -> Iterator[Metric]:
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


__all__ = ["BUCKETS", "StoreCollector", "metrics_response", "registry_for"]
