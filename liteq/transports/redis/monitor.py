"""The Redis transport's monitoring and remote-control roles.

*Monitoring* reads what Redis holds for ``inspect`` and the event monitor: messages
by state (queue sorted sets and the holders' sets), and results changed since a time
(a ``SCAN`` of the result hashes: for monitors, never the task path).

*Remote control* is a stream (``P control``, capped at about a thousand entries):
``app.control`` adds a command with ``XADD``; each worker reads after its own cursor
with a blocking ``XREAD``, so it is woken at once. Replies are a hash per command
(``P reply:<ticket>``, kept a minute), announced on the ticket's ``done`` channel so a
caller waiting for replies wakes like one waiting for a result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from liteq.messages import stored_envelope
from liteq.transports.base import (
    ControlCommand,
    Listener,
    ResultRecord,
    StoredMessage,
    TaskCount,
)
from liteq.transports.redis.connection import Connection
from liteq.transports.redis.keys import Keys
from liteq.transports.redis.scripts import read_counts, read_result
from liteq.transports.redis.wakeup import WakeListener

#: Commands the control stream keeps (older ones are trimmed).
CONTROL_STREAM_LENGTH = 1000
_FIELDS = ("t", "n", "q", "p", "r", "x", "a", "c", "h", "b", "w")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MonitorRole:
    """Messages and results for monitors; the control stream for workers."""

    keys: Keys
    _conn: Connection

    def _run(self, operation: Any) -> Any:
        raise NotImplementedError

    # -- monitoring ------------------------------------------------------------------

    def messages(self, *, states: Sequence[str] | None = None,
                 queues: Sequence[str] | None = None,
                 task_ids: Sequence[str] | None = None,
                 limit: int = 1000) -> list[StoredMessage]:
        keys = self.keys
        wanted_states = set(states or ("ready", "scheduled", "leased"))
        wanted_ids = None if task_ids is None else set(task_ids)

        def read(client: Any) -> list[StoredMessage]:
            names = list(queues) if queues is not None else sorted(
                _text(member) for member in client.smembers(keys.queues))
            found: list[tuple[str, str, str | None]] = []
            waiting = [(state, zset) for state, zset in (("ready", keys.ready),
                                                          ("scheduled", keys.scheduled))
                       if state in wanted_states]
            pipe = client.pipeline(transaction=False)
            for queue in names:  # the last entries: the newest (for equal priorities)
                for _, zset in waiting:
                    pipe.zrevrange(zset(queue), 0, limit - 1)
            replies = iter(pipe.execute())
            for _queue in names:
                for state, _ in waiting:
                    found += [(_text(m), state, None) for m in next(replies)]
            if "leased" in wanted_states:
                holders = [_text(h) for h in client.zrange(keys.holders, 0, -1)]
                pipe = client.pipeline(transaction=False)
                for holder in holders:
                    pipe.smembers(keys.held(holder))
                for holder, held in zip(holders, pipe.execute(), strict=True):
                    found += [(_text(m), "leased", holder) for m in held]
            # The reads are not one snapshot: a message claimed (or promoted) between
            # them is seen twice; the later read is its newer state.
            latest = {item[0]: item for item in found}
            found = sorted(latest.values(), key=lambda item: item[0], reverse=True)
            return self._read_messages(client, found, queues, wanted_ids, limit)

        messages: list[StoredMessage] = self._run(read)
        return messages

    def _read_messages(self, client: Any, found: list[tuple[str, str, str | None]],
                       queues: Sequence[str] | None, wanted_ids: set[str] | None,
                       limit: int) -> list[StoredMessage]:
        messages: list[StoredMessage] = []
        for start in range(0, len(found), 500):
            batch = found[start:start + 500]
            pipe = client.pipeline(transaction=False)
            for message_id, _, _ in batch:
                pipe.hmget(self.keys.message(message_id), *_FIELDS)
            for (message_id, state, holder), fields in zip(batch, pipe.execute(),
                                                           strict=True):
                task_id, name, queue, priority, run_at, expires, acks_late, content_type, \
                    header, body, owner = fields
                if task_id is None:
                    continue  # settled since the ids were read
                if state == "leased" and (owner is None or _text(owner) != holder):
                    continue
                if wanted_ids is not None and _text(task_id) not in wanted_ids:
                    continue
                if queues is not None and _text(queue) not in queues:
                    continue
                messages.append(StoredMessage(
                    key=message_id, state=state, holder=holder,
                    envelope=stored_envelope(
                        task_id, name, queue, priority or 0, run_at or 0, expires,
                        acks_late == b"1", content_type, header or b"{}", body or b"",
                    ),
                ))
                if len(messages) >= limit:
                    return messages
        return messages

    def results_since(self, since: float, limit: int = 1000) -> list[ResultRecord]:
        prefix = self.keys.result_prefix
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"

        def scan(client: Any) -> list[ResultRecord]:
            names = [_text(name) for name in client.scan_iter(match=pattern, count=1000)]
            recent: list[str] = []
            for start in range(0, len(names), 1000):
                batch = names[start:start + 1000]
                pipe = client.pipeline(transaction=False)
                for name in batch:
                    pipe.hget(name, "date_done")
                for name, done in zip(batch, pipe.execute(), strict=True):
                    if done is not None and float(done) >= since:
                        recent.append(name)
            pipe = client.pipeline(transaction=False)
            for name in recent:
                pipe.hgetall(name)
            records = [read_result(name[len(prefix):], fields)
                       for name, fields in zip(recent, pipe.execute(), strict=True)]
            found = [record for record in records if record is not None]
            found.sort(key=lambda record: record.date_done)
            return found[:limit]

        records: list[ResultRecord] = self._run(scan)
        return records

    def task_counts(self, since: float | None = None) -> list[TaskCount]:
        keys = self.keys
        if since is None:
            fields = self._run(lambda client: client.hgetall(keys.stats_total))
            return read_counts(0.0, fields)
        first = int(since // 60) * 60 + (60 if since % 60 else 0)
        minutes = list(range(first, int(time.time()) + 60, 60))

        def read(client: Any) -> list[TaskCount]:
            pipe = client.pipeline(transaction=False)
            for minute in minutes:
                pipe.hgetall(keys.stats(minute))
            rows: list[TaskCount] = []
            for minute, fields in zip(minutes, pipe.execute(), strict=True):
                rows += read_counts(float(minute), fields)
            return rows

        counts: list[TaskCount] = self._run(read)
        return counts

    # -- remote control --------------------------------------------------------------

    @property
    def _control_stream(self) -> str:
        return self.keys.control

    def _reply_key(self, ticket: str) -> str:
        return self.keys.reply(ticket)

    def send_control(self, command: ControlCommand, expires_in: float) -> None:
        fields = {
            "ticket": command.ticket, "name": command.name,
            "arguments": json.dumps(command.arguments),
            "destination": json.dumps(None if command.destination is None
                                      else list(command.destination)),
            "reply": "1" if command.reply else "0", "expires_in": repr(expires_in),
        }

        def send(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.xadd(self._control_stream, fields, maxlen=CONTROL_STREAM_LENGTH,
                      approximate=True)
            pipe.publish(self.keys.control_wake, "")
            pipe.execute()

        self._run(send)

    def control_cursor(self) -> str:
        newest = self._run(lambda client: client.xrevrange(self._control_stream, count=1))
        return _text(newest[0][0]) if newest else "0-0"

    def read_control(self, cursor: str) -> tuple[list[ControlCommand], str]:
        reply = self._run(lambda client: client.xread({self._control_stream: cursor},
                                                      count=100))
        commands = []
        now = None
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                cursor = _text(entry_id)
                get = {_text(k): _text(v) for k, v in fields.items()}.get
                sent_at = int(cursor.partition("-")[0]) / 1000.0  # the server's clock
                now = self._now() if now is None else now
                if sent_at + float(get("expires_in") or 60) < now:
                    continue  # stale: it was for the workers alive when it was sent
                destination = json.loads(get("destination") or "null")
                commands.append(ControlCommand(
                    ticket=get("ticket") or "", name=get("name") or "",
                    arguments=json.loads(get("arguments") or "{}"),
                    destination=None if destination is None else tuple(destination),
                    reply=get("reply") == "1", sent_at=sent_at,
                ))
        return commands, cursor

    def listen_control(self) -> Listener:
        return WakeListener(self._conn, [self.keys.control_wake])

    def _now(self) -> float:
        seconds, micros = self._run(lambda client: client.time())
        return float(seconds) + float(micros) / 1e6

    def reply_control(self, ticket: str, hostname: str, reply: Any,
                      expires_in: float) -> None:
        key = self._reply_key(ticket)

        def store(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hset(key, hostname, json.dumps(reply, default=str))
            pipe.pexpire(key, max(1, int(expires_in * 1000)))
            pipe.publish(self.keys.done(ticket), "")
            pipe.execute()

        self._run(store)

    def control_replies(self, ticket: str) -> dict[str, Any]:
        fields = self._run(lambda client: client.hgetall(self._reply_key(ticket)))
        return {_text(host): json.loads(value) for host, value in fields.items()}


__all__ = ["CONTROL_STREAM_LENGTH", "MonitorRole"]
