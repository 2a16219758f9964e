"""The Lua scripts, one method each: pack the arguments, run the script, read the reply.

Every change to liteq's data in Redis is one script, so it is atomic: Redis runs a
script to its end before serving any other command, and AOF records its effects as one
transaction. The scripts live in ``scripts/<name>.lua``; ``scripts/_lib.lua`` (shared
helpers and the calling convention) is put in front of each when they are loaded.

Key names come from :class:`~.keys.Keys`: each script starts with a prelude that
defines them as Lua constants (so no script spells a name, and a call sends only its
own arguments, which halves the bytes of a ``delay()``). Scripts therefore declare no
KEYS, except on a Redis Cluster, where each call names one key of the app (all of them
share one hash tag, so one slot) so that the client sends it to the shard holding them.

What each script does, in one line:

* ``publish``: store messages (ready, or scheduled until their eta) and wake workers;
  a publish id makes a retried publish a no-op.
* ``claim``: promote due scheduled messages, then lease the best ``limit`` ready ones
  to a holder (token, delivery count, holder deadline); a claim id makes a retried
  claim return the same messages.
* ``settle``: per message, if the token still matches: delete it, store its result and
  publish its follow-ups (or put it back uncounted, for a release); a settlement
  retried after a lost reply is recognised (and accepted) by the token it left.
* ``extend_leases``: push out the deadline of a worker's and its pool processes' leases.
* ``heartbeat``: mark the worker alive, forget long-silent workers, extend leases.
* ``reap``: requeue or fail the messages of every holder whose lease ran out.
* ``lose``: the same, now, for given leases whose process died (token-checked).
* ``release_worker``: put back, uncounted, what a dead pool process held.
* ``purge``: delete the waiting messages of some or all queues.
* ``store_state``: store an interim state, unless fenced out or a final one is stored.
* ``store_results``: store final results (when results live apart from the broker).
* ``beat_sync``: make the stored schedule match the code's.
* ``beat_fire``: compare-and-set a beat entry's next run and publish its message.
* ``revoke``: remember revoked task ids until their time is up.
* ``forget_revoked``: drop revocations past their time.
* ``take_token``: take a token from a shared rate-limit bucket, on the server's clock.
* ``chord_part``: count a chord's finished header task; the one that completed it gets
  every member's id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from liteq.messages import Envelope, stored_envelope
from liteq.transports.base import (
    COUNTS_KEPT,
    BeatEntry,
    Delivery,
    LeaseRef,
    LostTaskPolicy,
    ReapReport,
    ResultRecord,
    Revocation,
    Settlement,
    Tally,
    TaskCount,
    runtime_bucket,
)
from liteq.transports.redis.connection import ReplicaWait
from liteq.transports.redis.keys import Keys

NAMES = (
    "publish", "claim", "settle", "extend_leases", "heartbeat", "reap", "lose",
    "release_worker", "purge", "store_state", "store_results", "beat_sync", "beat_fire",
    "revoke", "forget_revoked", "take_token", "chord_part",
)


class _Script:
    """One script's source and its SHA-1 (what EVALSHA runs)."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


def _source(name: str) -> str:
    folder = resources.files(__package__).joinpath("scripts")
    return folder.joinpath(f"{name}.lua").read_text("utf-8")


def _lua_string(text: str) -> str:
    """A Lua string literal of ``text`` (any byte but letters and digits escaped)."""
    plain = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-."
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03d}" for b in text.encode()) + '"'


def prelude(keys: Keys) -> str:
    """The key names of ``keys`` as the Lua tables ``KEY`` and ``P`` (see _lib.lua)."""
    fixed = {"seq": keys.seq, "queues": keys.queues, "leases": keys.leases,
             "holders": keys.holders, "claims": keys.claims, "leased": keys.leased,
             "inflight": keys.inflight, "workers": keys.workers,
             "worker_info": keys.worker_info, "heartbeats": keys.heartbeats,
             "beat": keys.beat, "revoked": keys.revoked,
             "revoked_until": keys.revoked_until, "stats_total": keys.stats_total,
             "paused": keys.paused, "flow_due": keys.flow_due, "blocked": keys.blocked,
             "rate_overrides": keys.rate_overrides}
    families = {"message": keys.message_prefix, "ready": keys.ready_prefix,
                "scheduled": keys.scheduled_prefix, "held": keys.held_prefix,
                "result": keys.result_prefix, "published": keys.publish_prefix,
                "beat": keys.beat_prefix, "wake": keys.wake_prefix, "done": keys.done_prefix,
                "settled": keys.settled_prefix, "ratelimit": keys.ratelimit_prefix,
                "chord": keys.chord_prefix, "stats": keys.stats_prefix,
                "flow": keys.flow_prefix, "gate": keys.gate_prefix,
                "unique": keys.unique_prefix}

    def table(values: dict[str, str]) -> str:
        return "{" + ", ".join(f"{k} = {_lua_string(v)}" for k, v in values.items()) + "}"

    return (f"-- key names (keys.py)\nlocal KEY = {table(fixed)}\nlocal P = {table(families)}\n"
            f"local STATS_TTL = {int(COUNTS_KEPT)}\n")


#: Scripts made of others, run one after the other in one call (each reads its own
#: arguments in turn): the worker loop's settle-then-claim is one round trip.
COMPOSED = {"settle_and_claim": ("settle", "claim")}


def load_scripts(keys: Keys) -> dict[str, _Script]:
    """Every script, for the key names of ``keys``, with the shared library in front."""
    head = f"{prelude(keys)}{_source('_lib')}"
    scripts = {name: _Script(name, f"{head}\n-- {name}.lua\n{_source(name)}") for name in NAMES}
    for name, parts in COMPOSED.items():
        bodies = "".join(f"\nlocal function {part}_body()\n-- {part}.lua\n{_source(part)}\nend\n"
                         for part in parts)
        calls = ", ".join(f"{part}_body()" for part in parts)
        scripts[name] = _Script(name, f"{head}{bodies}\nreturn {{{calls}}}\n")
    return scripts


def _number(value: float | None) -> str:
    """A float as text that converts back to the same float ('' for None)."""
    return "" if value is None else repr(float(value))


def pack_envelope(envelope: Envelope, now: float) -> list[Any]:
    """The 14 arguments ``_lib.lua``'s ``read_envelope()`` reads.

    The message id starts with run_at in microseconds (hex, fixed width), so ids sort by
    run_at; the script appends the arrival counter.
    """
    eta = envelope.eta
    run_at = eta if eta is not None else now
    return [
        f"{max(0, int(run_at * 1_000_000)):014x}",
        str(-int(envelope.priority)),
        envelope.task_id,
        envelope.task_name,
        envelope.queue,
        str(int(envelope.priority)),
        _number(run_at),
        _number(envelope.expires),
        "1" if envelope.acks_late else "0",
        envelope.content_type,
        envelope.header,
        envelope.body,
        "1" if eta is not None and eta > now else "0",
        "" if envelope.flow is None else envelope.flow.dumps(),
    ]


def _result_fields(record: ResultRecord) -> tuple[list[Any], list[str]]:
    """Fields to set and fields to delete (None values) of a stored result.

    ``extended`` None keeps what was stored before (as the SQLite transport does);
    ``children`` None deletes the stored ones.
    """
    pairs: list[Any] = ["state", str(record.state), "content_type", record.content_type,
                        "payload", record.payload, "retries", str(int(record.retries))]
    deleted = []
    optional = {"traceback": record.traceback, "task_name": record.task_name,
                "worker": record.worker, "expires_in": _number(record.expires_in) or None,
                "children": record.children}
    for name, value in optional.items():
        if value is None:
            deleted.append(name)
        else:
            pairs += [name, value]
    if record.extended is not None:
        pairs += ["extended", record.extended]
    # Timeline: kept from an earlier record when this one does not know them.
    if record.date_received is not None:
        pairs += ["date_received", _number(record.date_received)]
    if record.date_started is not None:
        pairs += ["date_started", _number(record.date_started)]
    return pairs, deleted


def pack_result(record: ResultRecord, now: float) -> list[Any]:
    """The arguments ``_lib.lua``'s ``read_result()`` reads: the TTL counts from
    ``date_done`` (now when unset)."""
    done = record.date_done or now
    pairs, deleted = _result_fields(record)
    pairs += ["date_done", _number(done)]
    ttl = "" if record.expires_in is None else str(int((done + record.expires_in - now) * 1000))
    return [record.task_id, str(len(pairs) // 2), *pairs, str(len(deleted)), *deleted, ttl]


def pack_template(record: ResultRecord) -> list[Any]:
    """A lost-task template: the script adds the task's name and ``date_done``."""
    pairs, deleted = _result_fields(record)
    deleted = [name for name in deleted if name != "task_name"]
    ttl = "" if record.expires_in is None else str(int(record.expires_in * 1000))
    return ["", str(len(pairs) // 2), *pairs, str(len(deleted)), *deleted, ttl]


def pack_policy(policy: LostTaskPolicy) -> list[Any]:
    return [str(policy.max_deliveries), *pack_template(policy.lost),
            *pack_template(policy.exhausted)]


def _pack_tally(tally: Tally | None) -> tuple[str, str]:
    """A settlement's counter field (``name<TAB>state<TAB>bucket``; '' for none) and
    run time (see ``count_tasks`` in _lib.lua)."""
    if tally is None:
        return "", ""
    bucket = runtime_bucket(tally.runtime)
    return f"{tally.task_name}\t{tally.state}\t{bucket}", _number(tally.runtime) or "0"


def read_counts(minute: float, fields: dict[bytes, bytes]) -> list[TaskCount]:
    """A counter HASH (``P stats:<minute>`` or ``P stats:total``) as counter rows."""
    rows = []
    for field, value in fields.items():
        name, state, bucket, *runtime = _text(field).split("\t")
        if runtime:
            continue  # a run-time sum: read with its count
        total = fields.get(field + b"\tr")
        rows.append(TaskCount(minute, name, state, int(bucket), int(value),
                              float(total) if total is not None else 0.0))
    return rows


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional_float(value: Any) -> float | None:
    return None if value in (None, b"", "") else float(value)


def read_delivery(row: Sequence[Any], claimed_at: float | None = None) -> Delivery:
    """A claim reply row: id, token, deliveries, t, n, q, p, r, x, a, c, h, b, f, revoked."""
    key, token, deliveries, task_id, name, queue, priority, run_at, expires, acks_late, \
        content_type, header, body, flow, revoked = row
    return Delivery(
        key=_text(key),
        token=_text(token),
        deliveries=int(deliveries),
        envelope=stored_envelope(task_id, name, queue, priority, run_at, expires,
                                 acks_late == b"1", content_type, header, body, flow),
        revoked=revoked == b"1",
        claimed_at=claimed_at,
    )


def read_result(task_id: str, fields: dict[bytes, bytes]) -> ResultRecord | None:
    """A result HASH as a record (None when there is none)."""
    if not fields or b"state" not in fields:
        return None
    get = fields.get
    traceback, name, worker = get(b"traceback"), get(b"task_name"), get(b"worker")
    return ResultRecord(
        task_id=task_id,
        state=_text(fields[b"state"]),
        content_type=_text(get(b"content_type", b"application/json")),
        payload=get(b"payload") or b"null",
        traceback=None if traceback is None else _text(traceback),
        date_done=float(get(b"date_done") or 0.0),
        task_name=None if name is None else _text(name),
        worker=None if worker is None else _text(worker),
        retries=int(get(b"retries") or 0),
        extended=get(b"extended"),
        expires_in=_optional_float(get(b"expires_in")),
        children=get(b"children"),
        date_received=_optional_float(get(b"date_received")),
        date_started=_optional_float(get(b"date_started")),
    )


def _report(reply: Sequence[Any]) -> tuple[ReapReport, list[Envelope]]:
    """What a reap or lose did, and the envelopes of the messages it failed."""
    requeued, failed, lost = reply
    report = ReapReport(requeued=[_text(t) for t in requeued],
                        failed=[_text(t) for t in failed])
    t, n, q, p, r, x, a, c, h, b = range(10)
    envelopes = [stored_envelope(f[t], f[n], f[q], f[p], f[r], f[x], f[a] == b"1", f[c],
                                 f[h] or b"", f[b] or b"") for f in lost]
    return report, envelopes


class Scripts:
    """liteq's Lua scripts bound to one key layout; each method takes the client to
    run on (the transport's, which retries a lost connection around the call)."""

    def __init__(self, keys: Keys, cluster: bool = False,
                 wait: ReplicaWait | None = None,
                 command: Callable[..., Any] | None = None) -> None:
        self._scripts = load_scripts(keys)
        #: how a call is sent: ``command(client, *args)`` (Connection.command), or the
        #: client's own way
        self._command = command or (lambda client, *args: client.execute_command(*args))
        #: the KEYS of every call: none, or on a cluster one key in the app's slot
        self._keys: tuple[Any, ...] = (1, keys.seq) if cluster else (0,)
        #: whether writes wait for replicas (wait_for_replicas)
        self.wait = wait

    def _run(self, client: Any, name: str, args: Sequence[Any]) -> Any:
        if self.wait is not None and self.wait.active:
            return self._run_replicated(client, name, args, self.wait)
        script = self._scripts[name]
        try:
            return self._command(client, "EVALSHA", script.sha, *self._keys, *args)
        except NoScriptError:  # a restarted (or another) server: load it, once
            client.script_load(script.text)  # (a cluster client loads it on every shard)
            return self._command(client, "EVALSHA", script.sha, *self._keys, *args)

    def _run_replicated(self, client: Any, name: str, args: Sequence[Any],
                        wait: ReplicaWait) -> Any:
        """The script, then ``WAIT`` for replicas, in one round trip.

        Raises:
            ReplicasBehind: too few replicas confirmed, and this server may no longer
                be the master (the caller retries: every script is idempotent for it).
        """
        script = self._scripts[name]
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(script.sha, *self._keys, *args)
            pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
            try:
                reply, confirmed = pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                client.script_load(script.text)
                continue
            wait.confirmed(client, int(confirmed))
            return reply
        raise AssertionError("unreachable")

    # -- messages --------------------------------------------------------------------

    def publish(self, client: Any, envelopes: Sequence[Envelope], now: float,
                publish_id: str, marker_ms: int) -> list[str] | None:
        """Returns the task id each envelope stands for, None for a retried publish."""
        args: list[Any] = [publish_id, str(marker_ms), str(len(envelopes))]
        for envelope in envelopes:
            args += pack_envelope(envelope, now)
        reply = self._run(client, "publish", args)
        return [_text(task_id) for task_id in reply] if isinstance(reply, list) else None

    def claim(self, client: Any, queues: Sequence[str], limit: int, holder: str,
              lease_seconds: float, clock: float | None, now: float, claim_id: str,
              budget: int) -> list[Delivery]:
        args = self._claim_args(queues, limit, holder, lease_seconds, clock, now, claim_id,
                                budget)
        return [read_delivery(row, now) for row in self._run(client, "claim", args)]

    def settle(self, client: Any, settlements: Sequence[Settlement], now: float,
               marker_ms: int, retry: bool) -> list[bool]:
        args = self._settle_args(settlements, now, marker_ms, retry)
        return [bool(flag) for flag in self._run(client, "settle", args)]

    def settle_and_claim(self, client: Any, settlements: Sequence[Settlement], now: float,
                         marker_ms: int, retry: bool, queues: Sequence[str], limit: int,
                         holder: str, lease_seconds: float, clock: float | None,
                         claim_id: str, budget: int) -> tuple[list[bool], list[Delivery]]:
        args = [*self._settle_args(settlements, now, marker_ms, retry),
                *self._claim_args(queues, limit, holder, lease_seconds, clock, now, claim_id,
                                  budget)]
        accepted, rows = self._run(client, "settle_and_claim", args)
        return [bool(flag) for flag in accepted], [read_delivery(row, now) for row in rows]

    @staticmethod
    def _claim_args(queues: Sequence[str], limit: int, holder: str, lease_seconds: float,
                    clock: float | None, now: float, claim_id: str, budget: int) -> list[Any]:
        return [holder, str(limit), _number(lease_seconds), _number(clock), _number(now),
                claim_id, str(budget), str(len(queues)), *queues]

    @staticmethod
    def _settle_args(settlements: Sequence[Settlement], now: float, marker_ms: int,
                     retry: bool) -> list[Any]:
        args: list[Any] = [str(marker_ms), "1" if retry else "0", str(int(now // 60) * 60),
                           str(len(settlements))]
        for settlement in settlements:
            lease = settlement.delivery
            release = ("2" if settlement.redeliver else "1") if settlement.release else "0"
            args += [str(lease.key), str(lease.token), release,
                     _number(settlement.release_at) if settlement.release else "",
                     *_pack_tally(settlement.tally)]
            if settlement.result is not None and not settlement.release:
                args += ["1", *pack_result(settlement.result, now)]
            else:
                args.append("0")
            follow = () if settlement.release else settlement.publish
            args.append(str(len(follow)))
            for envelope in follow:
                args += pack_envelope(envelope, now)
        return args

    def extend_leases(self, client: Any, worker_id: str, lease_seconds: float,
                      clock: float | None) -> int:
        args = [worker_id, _number(lease_seconds), _number(clock)]
        return int(self._run(client, "extend_leases", args))

    def heartbeat(self, client: Any, worker_id: str, now: float, info: str,
                  stale_before: float, lease_seconds: float, clock: float | None) -> int:
        args = [worker_id, _number(now), info, _number(stale_before), _number(lease_seconds),
                _number(clock)]
        return int(self._run(client, "heartbeat", args))

    def reap(self, client: Any, clock: float | None, now: float,
             policy: LostTaskPolicy) -> tuple[ReapReport, list[Envelope]]:
        args = [_number(clock), _number(now), *pack_policy(policy)]
        return _report(self._run(client, "reap", args))

    def lose(self, client: Any, leases: Sequence[LeaseRef | Delivery], policy: LostTaskPolicy,
             now: float) -> tuple[ReapReport, list[Envelope]]:
        args: list[Any] = [_number(now), *pack_policy(policy), str(len(leases))]
        for lease in leases:
            args += [str(lease.key), str(lease.token)]
        return _report(self._run(client, "lose", args))

    def release_worker(self, client: Any, holder: str) -> int:
        return int(self._run(client, "release_worker", [holder]))

    def purge(self, client: Any, queues: Sequence[str]) -> int:
        return int(self._run(client, "purge", [str(len(queues)), *queues]))

    # -- results ---------------------------------------------------------------------

    def store_state(self, client: Any, record: ResultRecord, fence: Delivery | None,
                    now: float) -> bool:
        fenced = ["", ""] if fence is None else [str(fence.key), str(fence.token)]
        return bool(self._run(client, "store_state", [*fenced, *pack_result(record, now)]))

    def store_results(self, client: Any, records: Sequence[ResultRecord], now: float) -> None:
        args: list[Any] = [str(len(records))]
        for record in records:
            args += pack_result(record, now)
        self._run(client, "store_results", args)

    # -- beat ------------------------------------------------------------------------

    def beat_sync(self, client: Any, entries: Sequence[BeatEntry]) -> None:
        args: list[Any] = [str(len(entries))]
        for entry in entries:
            args += [entry.name, entry.definition, entry.schedule, _number(entry.next_run_at)]
        self._run(client, "beat_sync", args)

    def beat_fire(self, client: Any, name: str, expected_next: float, next_run_at: float,
                  fired_at: float | None, envelope: Envelope | None, now: float) -> bool:
        args: list[Any] = [name, _number(expected_next), _number(next_run_at),
                           _number(fired_at)]
        if envelope is None:
            args.append("0")
        else:
            args += ["1", *pack_envelope(envelope, now)]
        return bool(self._run(client, "beat_fire", args))


    # -- control and rate limits -----------------------------------------------------

    def revoke(self, client: Any, revocations: Sequence[Revocation], until: float | None,
               now: float) -> None:
        args: list[Any] = [_number(until), _number(now), str(len(revocations))]
        for revocation in revocations:
            args += [revocation.task_id, json.dumps([revocation.terminate, revocation.signal])]
        self._run(client, "revoke", args)

    def forget_revoked(self, client: Any, now: float) -> int:
        return int(self._run(client, "forget_revoked", [_number(now)]))

    def take_token(self, client: Any, key: str, rate: float, capacity: float,
                   clock: float | None) -> float:
        args = [key, _number(rate), _number(capacity), _number(clock)]
        return float(self._run(client, "take_token", args))

    def chord_part(self, client: Any, chord_id: str, member_id: str, index: int, size: int,
                   keep_ms: int | None) -> list[str] | None:
        args = [chord_id, member_id, str(index), str(size),
                "" if keep_ms is None else str(keep_ms)]
        members = self._run(client, "chord_part", args)
        return [_text(member) for member in members] if members else None


def read_revocation(task_id: str, value: bytes | str) -> Revocation:
    """A stored revocation (json ``[terminate, signal]``)."""
    terminate, signal = json.loads(value)
    return Revocation(task_id, bool(terminate), signal)


__all__ = ["NAMES", "Scripts", "load_scripts", "pack_envelope", "pack_result",
           "read_counts", "read_delivery", "read_result", "read_revocation"]
