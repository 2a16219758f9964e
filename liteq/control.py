"""``app.control``: revoke, purge, ping and inspect, over the transport's control role.

There is no broadcast bus: workers and their state live in the store, so control reads
and writes it. A revoked task that no worker holds is recorded REVOKED at once (and
skipped by the worker that later claims it); a running one is killed by its worker
within about a second when ``terminate=True`` (prefork pool only, as in Celery).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from liteq.exceptions import TaskRevokedError
from liteq.result import exception_info
from liteq.states import REVOKED
from liteq.transports.base import Revocation

if TYPE_CHECKING:
    from collections.abc import Sequence

    from liteq.app import LiteQ

#: How long revocations are remembered when results never expire (seconds).
DEFAULT_REVOKE_TTL = 86400.0


class Control:
    """``app.control``.

    Example:
        >>> app.control.revoke(res.id)  # doctest: +SKIP
        >>> app.control.revoke(res.id, terminate=True)  # kill it if it runs  # doctest: +SKIP
        >>> app.control.inspect().active()  # doctest: +SKIP
        {'w1@host': [{'id': '...', 'name': 'tasks.add', ...}]}
    """

    def __init__(self, app: LiteQ) -> None:
        self.app = app

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str | None = None, **_unused: Any) -> None:
        """Revoke tasks: they will not run; with ``terminate``, a running one is killed."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        app = self.app
        broker = app.broker
        ttl = app.result_expires or DEFAULT_REVOKE_TTL
        broker.revoke([Revocation(i, terminate, signal) for i in ids], ttl)
        error = TaskRevokedError("revoked")
        for one in ids:
            if not broker.is_leased(one):  # not running: it is REVOKED from now on
                record = app.make_record(one, REVOKED, exception_info(error))
                app.backend.store_result(record)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every waiting message; returns how many."""
        return self.app.broker.purge(queues)

    def ping(self, timeout: float | None = None, **_unused: Any) -> list[dict[str, Any]]:
        """The live workers, as ``[{"w1@host": {"ok": "pong"}}]``."""
        return [{info["hostname"]: {"ok": "pong"}} for info in _live(self.app)]

    def inspect(self, destination: Sequence[str] | None = None, **_unused: Any) -> Inspect:
        """What workers do: ``active``, ``reserved``, ``scheduled``, ``stats``,
        ``registered``, ``revoked``."""
        return Inspect(self.app, destination)


def _live(app: LiteQ) -> list[dict[str, Any]]:
    now = time.time()
    stale = max(30.0, 3 * min(10.0, app.visibility_timeout / 6))
    return [
        {"id": info.id, "hostname": info.hostname, "pid": info.pid, "queues": info.queues,
         "concurrency": info.concurrency, "pool": info.pool, "started_at": info.started_at,
         "info": info.info}
        for info in app.broker.workers() if now - info.heartbeat_at <= stale
    ]


class Inspect:
    """Celery's ``inspect()`` answers, read from the store (None when no worker lives)."""

    def __init__(self, app: LiteQ, destination: Sequence[str] | None = None) -> None:
        self.app = app
        self.destination = set(destination) if destination else None

    def _workers(self) -> list[dict[str, Any]]:
        workers = _live(self.app)
        if self.destination is not None:
            workers = [w for w in workers if w["hostname"] in self.destination]
        return workers

    def _per_worker(self, value: Any) -> dict[str, Any] | None:
        workers = self._workers()
        return {w["hostname"]: value(w) for w in workers} if workers else None

    def active(self) -> dict[str, list[dict[str, Any]]] | None:
        """Tasks each worker holds (running or about to run)."""
        held: dict[str, list[dict[str, Any]]] = {}
        for task in self.app.broker.in_flight():
            owner = task.holder.partition("/")[0]
            held.setdefault(owner, []).append(
                {"id": task.task_id, "name": task.task_name,
                 "delivery_info": {"routing_key": task.queue}}
            )
        return self._per_worker(lambda w: held.get(w["id"], []))

    reserved = active

    def scheduled(self) -> dict[str, list[dict[str, Any]]] | None:
        """Tasks with an eta wait in the store, not in a worker: always empty lists."""
        return self._per_worker(lambda w: [])

    def stats(self) -> dict[str, dict[str, Any]] | None:
        """Each worker's pid, pool, concurrency, uptime and counters."""
        now = time.time()
        return self._per_worker(lambda w: {
            "pid": w["pid"], "pool": {"implementation": w["pool"],
                                      "max-concurrency": w["concurrency"]},
            "uptime": now - w["started_at"], "queues": list(w["queues"]), **w["info"],
        })

    def registered(self) -> dict[str, list[str]] | None:
        """The tasks each worker knows (a worker started on a path imports on demand)."""
        return self._per_worker(lambda w: sorted(w["info"].get("registered", [])))

    def revoked(self) -> dict[str, list[str]] | None:
        """The revoked task ids (shared by all workers)."""
        ids = [r.task_id for r in self.app.broker.revoked()]
        return self._per_worker(lambda w: ids)

    def ping(self) -> dict[str, dict[str, str]] | None:
        return self._per_worker(lambda w: {"ok": "pong"})


__all__ = ["Control", "Inspect"]
