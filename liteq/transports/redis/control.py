"""The Redis transport's control role: revocations, what workers hold, and the flow
control an operator changes (a task's stored rate limit, paused queues).

Revocations are a hash (``P revoked``: task id -> how) with a sorted set of their
expiry (``P revoked_until``); pausing is a set (``P paused``) the claim script reads.
Resuming a queue, or changing a rate, wakes the workers of the queues concerned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from liteq._clock import wall
from liteq.transports.base import InFlight, Revocation
from liteq.transports.redis.keys import Keys
from liteq.transports.redis.scripts import Scripts, read_revocation


def _glob(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern."""
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


class ControlRole:
    """Revoking, reading revocations and leases, pausing queues, stored rate limits."""

    keys: Keys
    _scripts: Scripts

    def _run(self, operation: Any) -> Any:
        raise NotImplementedError

    # -- control ---------------------------------------------------------------------

    def revoke(self, revocations: Sequence[Revocation], expires_in: float | None) -> None:
        if not revocations:
            return
        now = wall()
        until = None if expires_in is None else now + expires_in
        self._run(lambda client: self._scripts.revoke(client, revocations, until, now))

    def revoked(self, task_ids: Sequence[str] | None = None,
                limit: int = 1000) -> list[Revocation]:
        keys, now = self.keys, wall()

        def among(client: Any) -> list[tuple[str, Any, Any]]:
            ids = list(task_ids or ())
            if not ids:
                return []
            pipe = client.pipeline(transaction=False)
            pipe.hmget(keys.revoked, ids)
            pipe.zmscore(keys.revoked_until, ids)
            values, until = pipe.execute()
            return list(zip(ids, values, until, strict=True))

        def every(client: Any) -> list[tuple[str, Any, Any]]:
            found = []
            for task_id, until in client.zscan_iter(keys.revoked_until, count=500):
                found.append((task_id.decode(), until))
                if len(found) >= limit:
                    break
            if not found:
                return []
            values = client.hmget(keys.revoked, [task_id for task_id, _ in found])
            return [(task_id, value, until)
                    for (task_id, until), value in zip(found, values, strict=True)]

        rows = self._run(among if task_ids is not None else every)
        return [read_revocation(task_id, value) for task_id, value, until in rows
                if value is not None and until is not None and float(until) >= now]

    def in_flight(self, limit: int = 1000) -> list[InFlight]:
        keys = self.keys

        def read(client: Any) -> list[InFlight]:
            holders = [h.decode() for h in client.zrange(keys.holders, 0, -1)]
            if not holders:
                return []
            pipe = client.pipeline(transaction=False)
            for holder in holders:
                pipe.smembers(keys.held(holder))
            held = [(holder, sorted(m.decode() for m in ids))
                    for holder, ids in zip(holders, pipe.execute(), strict=True)]
            wanted = [(holder, message_id) for holder, ids in held for message_id in ids]
            wanted = wanted[:limit]
            pipe = client.pipeline(transaction=False)
            for _, message_id in wanted:
                pipe.hmget(keys.message(message_id), "w", "t", "n", "q")
            found = []
            for (holder, _), fields in zip(wanted, pipe.execute(), strict=True):
                owner, task_id, name, queue = fields
                if owner is None or owner.decode() != holder:
                    continue  # settled or taken over since the holder's set was read
                found.append(InFlight(holder, task_id.decode(), name.decode(),
                                      queue.decode()))
            return found

        in_flight: list[InFlight] = self._run(read)
        return in_flight

    # -- flow control ------------------------------------------------------------------

    def set_rate_limit(self, task_name: str, rate: float | None) -> None:
        base = f"{self.keys.flow_prefix}rate:{task_name}"

        def store(client: Any) -> None:
            client.hset(self.keys.rate_overrides, task_name, repr(float(rate or 0)))
            # its blocked messages are looked at again by the next claim
            names = [base, *client.scan_iter(match=f"{_glob(base)}:*", count=1000)]
            for name in names:
                key = name.decode() if isinstance(name, bytes) else name
                client.zadd(self.keys.flow_due, {key[len(self.keys.flow_prefix):]: 0})
            for queue in client.smembers(self.keys.queues):
                client.publish(self.keys.wake(queue.decode()), "")

        self._run(store)

    def pause_queue(self, queue: str) -> bool:
        return bool(self._run(lambda client: client.sadd(self.keys.paused, queue)))

    def resume_queue(self, queue: str) -> bool:
        def resume(client: Any) -> int:
            removed = int(client.srem(self.keys.paused, queue))
            if removed:
                client.publish(self.keys.wake(queue), "")
            return removed

        return bool(self._run(resume))

    def paused_queues(self) -> list[str]:
        names = self._run(lambda client: client.smembers(self.keys.paused))
        return sorted(name.decode() if isinstance(name, bytes) else name for name in names)


__all__ = ["ControlRole"]
