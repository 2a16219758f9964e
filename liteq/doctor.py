"""``liteq doctor``: checks of a store's health, one line each, ok / warn / fail.

Storage facts come from :meth:`Transport.health` (SQLite: filesystem, journal mode,
synchronous, WAL, schema, file modes; Redis: version, AOF, eviction policy); the rest
from the contract every transport keeps: leases whose holder stopped heartbeating,
queues with ready tasks and no live consumer, scheduled tasks overdue, results kept
past ``result_expires``. Nothing is changed.

Example:
    >>> for check in diagnose(app):  # doctest: +SKIP
    ...     print(check.line())
    ok    journal mode: wal
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liteq.app import LiteQ

OK, WARN, FAIL = "ok", "warn", "fail"
#: A worker is alive while its last heartbeat is younger than this many leases.
STALE_LEASES = 1.0
#: A scheduled task this many seconds past its eta is overdue.
OVERDUE_SECONDS = 60.0
#: A WAL larger than this (bytes) is a warning: checkpoints are not keeping up.
WAL_WARN_BYTES = 64 * 1024 * 1024
#: Results this many seconds past their expiry mean nothing is expiring them.
EXPIRY_GRACE = 3600.0
#: Redis versions older than this get a warning (liteq refuses older than 6.2).
REDIS_RECOMMENDED = (7, 0)
#: SQLite busy retries below this many are never a warning.
BUSY_WARN = 1000
#: Messages read at most per check.
LIMIT = 10000


@dataclass(frozen=True)
class Check:
    """One check's outcome."""

    name: str
    status: str  #: "ok", "warn" or "fail"
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name}: {self.detail}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings included), 1 when a check failed."""
    return 1 if any(check.status == FAIL for check in checks) else 0


def diagnose(app: LiteQ) -> list[Check]:
    """Every check on ``app``'s broker (and on its result backend when it is apart)."""
    checks: list[Check] = []
    stores = [app.broker] if app.backend is app.broker else [app.broker, app.backend]
    for transport in stores:
        try:
            facts = transport.health()
        except Exception as exc:
            checks.append(Check("store", FAIL, f"{transport.location}: {exc}"))
            continue
        if facts.get("kind") == "sqlite":
            checks += list(_sqlite(facts))
        elif facts.get("kind") == "redis":
            checks += list(_redis(facts))
    for check in CHECKS:
        try:
            checks += list(check(app))
        except Exception as exc:
            checks.append(Check(check.__name__.strip("_").replace("_", " "), FAIL, str(exc)))
    return checks


# -- SQLite ------------------------------------------------------------------------------

def _sqlite(facts: dict[str, Any]) -> Iterator[Check]:
    if facts.get("error"):
        yield Check("database", FAIL, f"{facts['path']}: {facts['error']}")
        return
    kind = facts.get("filesystem") or "unknown"
    if facts.get("network_filesystem"):
        yield Check("filesystem", FAIL, f"{facts['path']} is on {kind}, a network "
                    "filesystem: WAL needs a local disk of one host")
    else:
        yield Check("filesystem", OK, f"{kind}, local")
    mode = facts.get("journal_mode")
    yield Check("journal mode", OK if mode == "wal" else FAIL,
                str(mode) + ("" if mode == "wal" else " (liteq needs wal: open the file with "
                                                     "a worker on a local filesystem)"))
    synchronous = facts.get("synchronous")
    yield Check("synchronous", OK if synchronous in ("NORMAL", "FULL", "EXTRA") else WARN,
                f"{synchronous}" + (" (a power loss may lose the last commits)"
                                    if synchronous == "OFF" else ""))
    wal = int(facts.get("wal_bytes") or 0)
    frames = int(facts.get("wal_frames") or 0)
    yield Check("WAL size", OK if wal < WAL_WARN_BYTES else WARN,
                f"{wal / 1048576:.1f} MiB, {frames} pages not yet checkpointed" +
                ("" if wal < WAL_WARN_BYTES else
                 " (checkpoints are starved: a long reader, or no worker running upkeep)"))
    version, expected = facts.get("schema_version"), facts.get("expected_schema_version")
    if version == expected:
        yield Check("schema version", OK, f"{version}")
    elif version is not None and expected is not None and version < expected:
        yield Check("schema version", WARN, f"{version}; this liteq migrates it to "
                    f"{expected} when a worker or producer opens it")
    else:
        yield Check("schema version", FAIL, f"{version} (this liteq knows {expected})")
    loose = {path: bits for path, bits in (facts.get("file_modes") or {}).items()
             if bits & 0o077}
    if loose:
        yield Check("file modes", WARN, ", ".join(f"{p} is {bits:o}" for p, bits in
                                                  sorted(loose.items())) +
                    " (readable by others: tasks' arguments and results are in it; chmod 600)")
    else:
        yield Check("file modes", OK, "600 (only the owner reads the store)")


# -- Redis -------------------------------------------------------------------------------

def _redis(facts: dict[str, Any]) -> Iterator[Check]:
    version = str(facts.get("version") or "?")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    yield Check("redis version", OK if parts >= REDIS_RECOMMENDED else WARN, version)
    if facts.get("aof_enabled"):
        yield Check("redis AOF", OK, "appendonly yes")
    else:
        yield Check("redis AOF", WARN, "appendonly no: a Redis restart loses the tasks sent "
                    "since the last snapshot (set appendonly yes)")
    policy = str(facts.get("maxmemory_policy") or "unknown")
    if policy == "noeviction":
        yield Check("redis maxmemory-policy", OK, policy)
    else:
        yield Check("redis maxmemory-policy", FAIL, f"{policy}: Redis may evict tasks and "
                    "results when memory is full (set maxmemory-policy noeviction)")
    if facts.get("topology") == "sentinel":
        replicas, wait = int(facts.get("connected_replicas", 0)), \
            int(facts.get("wait_for_replicas", 0))
        detail = f"{replicas} connected to the master; each write waits for {wait}"
        if wait > replicas:
            yield Check("redis replicas", WARN, f"{detail}: writes go unconfirmed (a failover "
                        "may lose them) until a replica is back")
        elif not wait:
            yield Check("redis replicas", WARN, f"{detail}: a failover may lose the last "
                        "writes (set broker_transport_options wait_for_replicas=1)")
        else:
            yield Check("redis replicas", OK, detail)
    elif facts.get("topology") == "cluster":
        yield Check("redis cluster", OK, f"every key of the app in slot {facts.get('slot')} "
                    f"on {facts.get('shard')}")


# -- what every transport stores ---------------------------------------------------------

def _live_workers(app: LiteQ) -> dict[str, Any]:
    now = time.time()
    limit = app.visibility_timeout * STALE_LEASES
    return {w.id: w for w in app.broker.workers()
            if now - (w.heartbeat_at or w.started_at) < limit}


def _stale_leases(app: LiteQ) -> Iterator[Check]:
    live = _live_workers(app)
    stale: dict[str, int] = {}
    for message in app.broker.messages(states=["leased"], limit=LIMIT):
        holder = (message.holder or "?").partition("/")[0]
        if holder not in live:
            stale[holder] = stale.get(holder, 0) + 1
    if stale:
        who = ", ".join(f"{holder} ({count})" for holder, count in sorted(stale.items()))
        yield Check("leases", FAIL, f"{sum(stale.values())} task(s) held by workers that "
                    f"stopped heartbeating: {who}; a running worker takes them over when "
                    "their lease runs out")
    else:
        yield Check("leases", OK, "every lease is held by a live worker")


def _unconsumed_queues(app: LiteQ) -> Iterator[Check]:
    consumed = {q for w in _live_workers(app).values() for q in w.queues}
    orphans = {name: depth.ready for name, depth in app.broker.depth().items()
               if depth.ready and name not in consumed}
    if orphans:
        yield Check("consumers", WARN, "ready tasks and no live worker consuming: " +
                    ", ".join(f"{q} ({n})" for q, n in sorted(orphans.items())))
    else:
        yield Check("consumers", OK, "every queue with ready tasks has a live worker")


def _overdue(app: LiteQ) -> Iterator[Check]:
    now = time.time()
    late = [m for m in app.broker.messages(states=["scheduled"], limit=LIMIT)
            if m.envelope.eta and m.envelope.eta < now - OVERDUE_SECONDS]
    if late:
        oldest = now - min(float(m.envelope.eta or now) for m in late)
        yield Check("scheduled", WARN, f"{len(late)} scheduled task(s) overdue, the oldest "
                    f"by {oldest:.0f} s (is a worker consuming their queue?)")
    else:
        yield Check("scheduled", OK, "no scheduled task is overdue")


def _expired_results(app: LiteQ) -> Iterator[Check]:
    expires = app.result_expires
    oldest = app.backend.results_since(0.0, limit=1)
    if not oldest:
        yield Check("results", OK, "no results stored")
        return
    age = time.time() - oldest[0].date_done
    if expires is None:
        yield Check("results", OK, f"kept for ever (result_expires=None); oldest "
                    f"{age / 3600:.1f} h")
    elif age > expires + EXPIRY_GRACE:
        yield Check("results", WARN, f"the oldest result is {age / 3600:.1f} h old, past "
                    f"result_expires={expires:g} s: nothing is expiring them (no worker "
                    "running?)")
    else:
        yield Check("results", OK, f"oldest {age / 3600:.1f} h, within result_expires="
                    f"{expires:g} s")


def _busy_retries(app: LiteQ) -> Iterator[Check]:
    """SQLite busy retries the live workers report in their heartbeats: waits for the
    write lock another process held (many per task: too many writers for one file)."""
    reports = [w.info for w in _live_workers(app).values() if "sqlite_busy_retries" in w.info]
    if not reports or getattr(app.broker, "path", None) is None:
        return
    busy = sum(_number(info.get("sqlite_busy_retries")) for info in reports)
    done = sum(_number(info.get("processed")) for info in reports)
    detail = f"{busy} by {len(reports)} live worker(s) over {done} task(s)"
    if busy > max(done, BUSY_WARN):
        yield Check("busy retries", WARN, detail + " (more waits for the write lock than "
                    "tasks: fewer writers, or batch sends, or Redis)")
    else:
        yield Check("busy retries", OK, detail)


def _number(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


CHECKS: tuple[Callable[[LiteQ], Iterator[Check]], ...] = (
    _stale_leases, _unconsumed_queues, _overdue, _expired_results, _busy_retries)

__all__ = ["FAIL", "OK", "WARN", "Check", "diagnose", "exit_code"]
