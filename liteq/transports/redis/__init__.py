"""The Redis transport: messages, results, schedule and workers in one Redis, for
workers on many hosts.

``broker="redis://host:6379/0"`` (or ``rediss://`` with TLS, or ``unix://``) keeps the
SQLite transport's semantics with Redis primitives:

* **Queues** are sorted sets, one per queue, scored ``-priority`` over message ids that
  sort by run_at and arrival, so a claim pops the best messages in O(log n): priority
  (higher first), then eta, then arrival. Countdown/eta messages wait in a per-queue
  sorted set scored by eta and become ready inside the claim that finds them due.
* **Leases** are per holder (a worker process): ``leases`` maps each holder to one
  deadline for everything it holds, taken on the Redis server's clock (``TIME``), so
  hosts with skewed clocks agree. A heartbeat renews a worker's and its pool processes'
  leases in one script; any worker reaps holders whose deadline passed (run again with
  ``acks_late`` while deliveries are left, else FAILURE with ``WorkerLostError``).
* **Fencing**: a claim gives each message a fresh random token; settling (delete the
  message, store its result, publish retries and callbacks) is one Lua script that
  first checks the token. A worker whose lease expired and was taken over holds a
  stale token, so its late ack, result or release changes nothing. (Redis streams'
  ``XACK`` takes no owner, which is why liteq does not use them.)
* **Results** are hashes with a TTL from ``result_expires`` (Redis deletes them: the
  worker's expiry pass has nothing to do); interim states never replace a final one.
* **Wake-ups** are pub/sub messages: idle workers and ``get()`` callers block on them.
* **Beat** entries are hashes advanced by compare-and-set in the script that publishes
  the tick's message, so any number of beats on any hosts fire each tick once.
* **Etas and expiry** are epoch seconds from the producer's clock, as with SQLite.
* **Retries are safe**: a call whose reply was lost (Redis died after applying it) is
  retried; a publish id makes a retried publish a no-op, a claim id replays the same
  claim (nothing is left leased to a worker that does not know it), and a settled
  token lets a retried settle be accepted instead of reported as a lost lease.

Every change is one Lua script (``scripts.py``); key names live in ``keys.py`` under a
prefix (``"liteq:"``; ``broker_transport_options={"global_keyprefix": "app1:"}`` lets
apps share one Redis); connecting, retrying and forking are ``connection.py``'s. Redis
6.2 or newer. ``sentinel://`` URLs follow a Sentinel-managed master through failovers
(each script's writes wait for a replica, ``wait_for_replicas``, so none that returned
is lost: ``connection.ReplicaWait``), and ``redis+cluster://`` URLs put every key of
an app in one Cluster slot (``topology.py``).
Durability is Redis's: run it with ``appendonly yes`` (liteq warns when it is off).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Any

from liteq._clock import wall
from liteq.exceptions import ImproperlyConfigured
from liteq.messages import Envelope
from liteq.transports.base import (
    BeatEntry,
    Delivery,
    LeaseRef,
    Listener,
    LostTaskPolicy,
    QueueDepth,
    ReapReport,
    ResultRecord,
    Settlement,
    Transport,
    Waiter,
    WorkerInfo,
)
from liteq.transports.redis.connection import Connection, ReplicaWait, redacted
from liteq.transports.redis.control import ControlRole
from liteq.transports.redis.health import redis_health
from liteq.transports.redis.keys import DEFAULT_PREFIX, Keys, hash_tagged
from liteq.transports.redis.monitor import MonitorRole
from liteq.transports.redis.scripts import Scripts, read_result
from liteq.transports.redis.wakeup import ResultWaiter, WakeListener

logger = logging.getLogger("liteq.transports.redis")

#: Oldest Redis liteq runs on (ZADD GT, ZRANGE BYLEX and scripts as used here).
MIN_REDIS_VERSION = (6, 2)
#: Worker records silent for this many leases are removed.
_STALE_WORKER_LEASES = 10
#: Scheduled messages a claim promotes per queue at most (the rest: next claims).
PROMOTE_BUDGET = 1000
#: Locations already warned about (AOF off), so a process warns once per Redis.
_WARNED: set[str] = set()


def lease_clock() -> float | None:
    """The clock leases are measured on: None, the Redis server's own (``TIME``).

    Tests replace this with a fake clock (as ``liteq._clock.lease_clock`` for SQLite).
    """
    return None


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


class RedisTransport(ControlRole, MonitorRole, Transport):
    """Messages, results, beat and workers in Redis.

    Example:
        >>> transport = RedisTransport("redis://127.0.0.1:6379/0", {})  # doctest: +SKIP
        >>> transport.depth()  # doctest: +SKIP
        {}
    """

    schemes = ("redis", "rediss", "unix", "sentinel", "redis+cluster", "rediss+cluster")
    supports_app_transactions = False

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        prefix = options.get("global_keyprefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str):
            raise ImproperlyConfigured(f"global_keyprefix must be a string, not {prefix!r}")
        self._conn = Connection(url, options)
        self.keys = Keys(hash_tagged(prefix) if self._conn.cluster else prefix)
        self._scripts = Scripts(self.keys, cluster=self._conn.cluster,
                                wait=self._replica_wait(options), command=self._conn.command)
        # Publish ids and settled tokens outlive every retry of their call.
        self._marker_ms = int((self._conn.timeout + 10.0) * 1000)
        self._opened = False
        self._open_lock = threading.Lock()

    def _replica_wait(self, options: dict[str, Any]) -> ReplicaWait | None:
        sentinel = self._conn.servers.kind == "sentinel"
        replicas = options.get("wait_for_replicas", 1 if sentinel else 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ImproperlyConfigured(
                f"wait_for_replicas must be a number of replicas (0, 1, ...), not {replicas!r}")
        timeout = options.get("wait_for_replicas_timeout", 0.5)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ImproperlyConfigured(
                f"wait_for_replicas_timeout must be a number of seconds, not {timeout!r}")
        if not replicas:
            return None
        servers = self._conn.servers
        replica_kwargs = {"password": servers.password, "username": servers.username,
                          "socket_timeout": float(timeout),
                          "socket_connect_timeout": float(timeout)}
        return ReplicaWait(replicas, float(timeout), sentinel, redacted(self.url),
                           replica_kwargs)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def location(self) -> str:
        return redacted(self.url)

    def open(self) -> None:
        """Connect and check the server now; a worker (which calls this at start-up)
        also warns when Redis runs without append-only persistence."""
        self._connect()
        self._check_persistence()

    def _connect(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            server = self._conn.run(lambda client: client.info("server"))
            version = str(server.get("redis_version", "0"))
            if _version(version) < MIN_REDIS_VERSION:
                raise ImproperlyConfigured(
                    f"Redis at {self.location} is version {version}; liteq needs Redis "
                    f"{'.'.join(map(str, MIN_REDIS_VERSION))} or newer"
                )
            self._opened = True

    def _check_persistence(self) -> None:
        """Warn (once) when Redis would lose acknowledged tasks on a restart."""
        if self.location in _WARNED:
            return
        try:
            config: Any = self._conn.run(lambda client: client.config_get("appendonly"))
        except Exception:  # CONFIG may be renamed or denied (managed Redis): no warning
            return
        _WARNED.add(self.location)
        if config.get(b"appendonly", config.get("appendonly")) in (b"no", "no"):
            logger.warning(
                "Redis at %s runs without append-only persistence: a Redis restart loses "
                "the tasks sent since its last snapshot (set appendonly yes)", self.location,
            )

    def health(self) -> dict[str, Any]:
        wait = self._scripts.wait
        return redis_health(self._conn, self.location, wait.replicas if wait else 0,
                            self.keys.seq)

    def _ensure_open(self) -> None:
        if not self._opened:
            self._connect()

    def close(self) -> None:
        self._conn.close()

    def after_fork(self) -> None:
        self._conn.forget()

    def _run(self, operation: Any) -> Any:
        self._ensure_open()
        return self._conn.run(operation)

    # -- messages --------------------------------------------------------------------

    def publish(self, envelopes: Sequence[Envelope]) -> list[str] | None:
        if not envelopes:
            return None
        now, publish_id = wall(), secrets.token_hex(8)
        ids: list[str] | None = self._run(lambda client: self._scripts.publish(
            client, envelopes, now, publish_id, self._marker_ms))
        if ids is None or all(envelope.flow is None for envelope in envelopes):
            return None
        return ids

    def claim(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Delivery]:
        if limit <= 0 or not queues:
            return []
        wanted = list(dict.fromkeys(queues))
        claim_id = secrets.token_hex(8)
        deliveries: list[Delivery] = self._run(lambda client: self._scripts.claim(
            client, wanted, limit, worker_id, lease_seconds, lease_clock(), wall(), claim_id,
            PROMOTE_BUDGET))
        return deliveries

    def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        if not settlements:
            return []
        calls = itertools.count()  # a retried call may find its own earlier effect
        accepted: list[bool] = self._run(lambda client: self._scripts.settle(
            client, settlements, wall(), self._marker_ms, next(calls) > 0))
        return accepted

    def settle_and_claim(
        self, settlements: Sequence[Settlement], queues: Sequence[str], limit: int,
        worker_id: str, lease_seconds: float,
    ) -> tuple[list[bool], list[Delivery]]:
        if not settlements or limit <= 0 or not queues:
            return super().settle_and_claim(settlements, queues, limit, worker_id,
                                            lease_seconds)
        wanted = list(dict.fromkeys(queues))
        calls, claim_id = itertools.count(), secrets.token_hex(8)
        result: tuple[list[bool], list[Delivery]] = self._run(
            lambda client: self._scripts.settle_and_claim(
                client, settlements, wall(), self._marker_ms, next(calls) > 0, wanted, limit,
                worker_id, lease_seconds, lease_clock(), claim_id, PROMOTE_BUDGET))
        return result

    def extend_leases(self, worker_id: str, lease_seconds: float) -> int:
        return int(self._run(lambda client: self._scripts.extend_leases(
            client, worker_id, lease_seconds, lease_clock())))

    def reap_expired(self, policy: LostTaskPolicy) -> ReapReport:
        now = wall()
        report, lost = self._run(
            lambda client: self._scripts.reap(client, lease_clock(), now, policy))
        self._finish_lost(policy, lost, now)
        return report  # type: ignore[no-any-return]

    def lose(self, leases: Sequence[LeaseRef | Delivery], policy: LostTaskPolicy) -> ReapReport:
        if not leases:
            return ReapReport()
        now = wall()
        report, lost = self._run(lambda client: self._scripts.lose(client, leases, policy, now))
        self._finish_lost(policy, lost, now)
        return report  # type: ignore[no-any-return]

    def _finish_lost(self, policy: LostTaskPolicy, lost: Sequence[Envelope], now: float) -> None:
        """Store the policy's full record of each message the script failed (it stored
        the template), and publish what goes with it (a chord's unlock)."""
        if policy.finish is None or not lost:
            return
        records: list[ResultRecord] = []
        publish: list[Envelope] = []
        for envelope in lost:
            template = policy.lost if not envelope.acks_late else policy.exhausted
            record, extra = policy.finish(envelope, dataclasses.replace(
                template, task_id=envelope.task_id, task_name=envelope.task_name,
                date_done=now))
            records.append(record)
            publish.extend(extra)
        self.publish(publish)
        self.store_results(records)

    def release_worker(self, worker_id: str) -> int:
        return int(self._run(lambda client: self._scripts.release_worker(client, worker_id)))

    def next_eta(self, queues: Sequence[str]) -> float | None:
        def earliest(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                pipe.zrange(self.keys.scheduled(queue), 0, 0, withscores=True)
            pipe.zrange(self.keys.flow_due, 0, 0, withscores=True)  # a rate token, blocked
            return list(pipe.execute())

        found = [rows[0][1] for rows in self._run(earliest) if rows]
        return float(min(found)) if found else None

    def purge(self, queues: Sequence[str] | None = None) -> int:
        return int(self._run(lambda client: self._scripts.purge(client, list(queues or ()))))

    def depth(self, queues: Sequence[str] | None = None) -> dict[str, QueueDepth]:
        def counts(client: Any) -> tuple[list[str], list[Any]]:
            names = list(queues) if queues else sorted(
                member.decode() for member in client.smembers(self.keys.queues))
            pipe = client.pipeline(transaction=True)
            for queue in names:
                pipe.zcard(self.keys.ready(queue))
                pipe.zcard(self.keys.scheduled(queue))
                pipe.hget(self.keys.leased, queue)
                pipe.hget(self.keys.blocked, queue)
            return names, list(pipe.execute())

        names, replies = self._run(counts)
        depths = {}
        for index, queue in enumerate(names):
            ready, scheduled, leased, blocked = replies[4 * index:4 * index + 4]
            depth = QueueDepth(ready=int(ready), scheduled=int(scheduled),
                               leased=max(0, int(leased or 0)),
                               blocked=max(0, int(blocked or 0)))
            if queues or depth.total:
                depths[queue] = depth
        return dict(sorted(depths.items()))

    def is_leased(self, task_id: str) -> bool:
        return bool(self._run(lambda client: client.hexists(self.keys.inflight, task_id)))

    def listen(self, queues: Sequence[str]) -> Listener:
        self._ensure_open()
        return WakeListener(self._conn, [self.keys.wake(queue) for queue in queues])

    # -- results ---------------------------------------------------------------------

    def store_result(self, record: ResultRecord, fence: Delivery | None = None) -> bool:
        return bool(self._run(
            lambda client: self._scripts.store_state(client, record, fence, wall())))

    def store_results(self, records: Sequence[ResultRecord]) -> None:
        if records:
            self._run(lambda client: self._scripts.store_results(client, records, wall()))

    def get_result(self, task_id: str) -> ResultRecord | None:
        fields = self._run(lambda client: client.hgetall(self.keys.result(task_id)))
        return read_result(task_id, fields)

    def find_results(self, state: str, task_name: str | None = None,
                     limit: int = 1000) -> list[ResultRecord]:
        prefix = self.keys.result_prefix
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"

        def scan(client: Any) -> list[ResultRecord]:
            found: list[ResultRecord] = []
            names = [name.decode() for name in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(names), 500):
                batch = names[start:start + 500]
                pipe = client.pipeline(transaction=False)
                for name in batch:
                    pipe.hgetall(name)
                for name, fields in zip(batch, pipe.execute(), strict=True):
                    record = read_result(name[len(prefix):], fields)
                    if record is not None and record.state == state and \
                            (task_name is None or record.task_name == task_name):
                        found.append(record)
            found.sort(key=lambda record: record.date_done)
            return found[:limit]

        return self._run(scan)  # type: ignore[no-any-return]

    def forget(self, task_ids: Sequence[str]) -> None:
        if task_ids:
            names = [self.keys.result(task_id) for task_id in task_ids]
            self._run(lambda client: client.delete(*names))

    def result_waiter(self, task_ids: Sequence[str]) -> Waiter:
        self._ensure_open()
        return ResultWaiter(self._conn, [self.keys.done(task_id) for task_id in task_ids])

    def results_listener(self) -> Listener:
        self._ensure_open()
        return WakeListener(self._conn, [self.keys.any_done()], pattern=True)

    def expire_results(self, limit: int = 1000) -> int:
        # Every result carries its own TTL (Redis deletes it); what is left to expire
        # here are revocations.
        self._run(lambda client: self._scripts.forget_revoked(client, wall()))
        return 0

    def chord_part_done(self, chord_id: str, member_id: str, index: int, size: int,
                        expires_in: float | None) -> list[str] | None:
        keep_ms = None if expires_in is None else max(1, int(expires_in * 1000))
        return self._run(lambda client: self._scripts.chord_part(  # type: ignore[no-any-return]
            client, chord_id, member_id, index, size, keep_ms))

    # -- groups ----------------------------------------------------------------------

    def save_group(self, group_id: str, payload: bytes, expires_in: float | None) -> None:
        # One SET (with its expiry) replaces the whole value: atomic without a script.
        keep_ms = None if expires_in is None else max(1, int(expires_in * 1000))
        key = self.keys.group(group_id)
        self._run(lambda client: client.set(key, payload, px=keep_ms))

    def get_group(self, group_id: str) -> bytes | None:
        value = self._run(lambda client: client.get(self.keys.group(group_id)))
        return None if value is None else bytes(value)

    def forget_group(self, group_id: str) -> None:
        self._run(lambda client: client.delete(self.keys.group(group_id)))

    # -- beat ------------------------------------------------------------------------

    def beat_sync(self, entries: Sequence[BeatEntry]) -> list[BeatEntry]:
        self._run(lambda client: self._scripts.beat_sync(client, entries))
        return self.beat_entries()

    def beat_entries(self) -> list[BeatEntry]:
        def read(client: Any) -> list[tuple[str, dict[bytes, bytes]]]:
            names = sorted(name.decode() for name in client.smembers(self.keys.beat))
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self.keys.beat_entry(name))
            return list(zip(names, pipe.execute(), strict=True))

        entries = []
        for name, fields in self._run(read):
            if not fields:
                continue
            last = fields.get(b"last_run_at")
            entries.append(BeatEntry(
                name=name, definition=bytes(fields[b"definition"]),
                schedule=fields[b"schedule"].decode(),
                next_run_at=float(fields[b"next_run_at"]),
                last_run_at=None if last is None else float(last),
                total_run_count=int(fields.get(b"total_run_count") or 0),
            ))
        entries.sort(key=lambda entry: entry.next_run_at)
        return entries

    def beat_fire(self, name: str, expected_next: float, next_run_at: float,
                  fired_at: float, envelope: Envelope | None) -> bool:
        fired = fired_at if envelope is not None else None
        return bool(self._run(lambda client: self._scripts.beat_fire(
            client, name, expected_next, next_run_at, fired, envelope, wall())))

    # -- rate limits -----------------------------------------------------------------

    def take_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        return float(self._run(lambda client: self._scripts.take_token(
            client, key, rate, capacity, lease_clock())))

    # -- workers ---------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        record = json.dumps({
            "hostname": info.hostname, "pid": info.pid, "queues": list(info.queues),
            "concurrency": info.concurrency, "pool": info.pool, "started_at": info.started_at,
        })
        keys = self.keys

        def register(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hset(keys.workers, info.id, record)
            pipe.hset(keys.worker_info, info.id, json.dumps(info.info))
            pipe.zadd(keys.heartbeats, {info.id: wall()})
            pipe.execute()

        self._run(register)

    def heartbeat(self, worker_id: str, lease_seconds: float, info: dict[str, Any]) -> int:
        now = wall()
        stale_before = now - max(lease_seconds * _STALE_WORKER_LEASES, 60.0)
        return int(self._run(lambda client: self._scripts.heartbeat(
            client, worker_id, now, json.dumps(info), stale_before, lease_seconds,
            lease_clock())))

    def unregister_worker(self, worker_id: str) -> None:
        keys = self.keys

        def unregister(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hdel(keys.workers, worker_id)
            pipe.hdel(keys.worker_info, worker_id)
            pipe.zrem(keys.heartbeats, worker_id)
            pipe.execute()

        self._run(unregister)

    def workers(self) -> list[WorkerInfo]:
        keys = self.keys

        def read(client: Any) -> tuple[list[Any], list[Any], list[Any]]:
            beats = client.zrevrange(keys.heartbeats, 0, -1, withscores=True)
            ids = [worker_id for worker_id, _ in beats]
            if not ids:
                return [], [], []
            pipe = client.pipeline(transaction=False)
            pipe.hmget(keys.workers, ids)
            pipe.hmget(keys.worker_info, ids)
            records, infos = pipe.execute()
            return beats, records, infos

        beats, records, infos = self._run(read)
        found = []
        for (worker_id, heartbeat_at), record, info in zip(beats, records, infos, strict=True):
            if record is None:
                continue
            data = json.loads(record)
            found.append(WorkerInfo(
                id=worker_id.decode(), hostname=data["hostname"], pid=int(data["pid"]),
                queues=tuple(data["queues"]), concurrency=int(data["concurrency"]),
                pool=data["pool"], started_at=float(data["started_at"]),
                heartbeat_at=float(heartbeat_at), info=json.loads(info or "{}"),
            ))
        return found


__all__ = ["MIN_REDIS_VERSION", "RedisTransport", "lease_clock"]
