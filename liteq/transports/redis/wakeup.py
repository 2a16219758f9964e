"""Wake-ups over Redis pub/sub: idle workers and callers waiting for results.

Scripts that publish a message ``PUBLISH`` to its queue's channel; scripts that store a
result publish to the task's channel (channel names: ``keys.py``). Subscribing is
confirmed before a listener or waiter is handed out, so nothing published after that
is missed; wake-ups are hints all the same (a sleeper also wakes on its timeout and
looks), so one lost while Redis restarts costs latency, never a task.

An idle worker selects on a file descriptor. A pub/sub socket would do, except that a
reconnect after a Redis restart gives a new socket, so :class:`WakeListener` keeps a
pipe whose read end never changes, and a small thread that reads the subscription
(reconnecting as needed) writes a byte to it per wake-up. A caller in ``get()`` blocks
on the subscription itself (:class:`ResultWaiter`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from liteq.platforms import WakePipe
from liteq.transports.redis.connection import Connection

logger = logging.getLogger("liteq.transports.redis")

#: Longest a listener's thread blocks before it looks whether it should stop (seconds).
_POLL = 1.0


def subscribe(client: redis.Redis, channels: Sequence[str], timeout: float,
              pattern: bool = False) -> Any:
    """A pub/sub connection subscribed to ``channels`` (glob patterns with
    ``pattern=True``), confirmed by the server.

    Raises:
        redis.ConnectionError: Redis did not confirm within ``timeout`` seconds.
    """
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        (pubsub.psubscribe if pattern else pubsub.subscribe)(*channels)
        confirmation = "psubscribe" if pattern else "subscribe"
        pending = set(channels)
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            message = pubsub.get_message(timeout=max(remaining, 0.0)) if remaining > 0 else None
            if message is None:
                raise redis.ConnectionError("no reply to SUBSCRIBE")
            if message["type"] == confirmation:
                channel = message["channel"]
                pending.discard(channel.decode() if isinstance(channel, bytes) else channel)
    except BaseException:
        _close(pubsub)
        raise
    return pubsub


def _close(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        pubsub.close()


class WakeListener:
    """A readable file descriptor when a message was published to some queues (or,
    with ``pattern=True``, to any channel matching one of ``channels``)."""

    def __init__(self, connection: Connection, channels: Sequence[str],
                 pattern: bool = False) -> None:
        self._connection = connection
        self._channels = list(channels)
        self._pattern = pattern
        timeout = connection.connect_timeout
        pubsub = connection.run(lambda client: subscribe(client, self._channels, timeout,
                                                         pattern))
        self._pipe = WakePipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, args=(pubsub,),
                                        name="liteq-redis-wake", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._pipe.fileno()

    def drain(self) -> None:
        """Consume pending wake-ups."""
        self._pipe.drain()

    def close(self) -> None:
        """Stop listening; the thread ends (and closes its side) within a second."""
        if self._stop.is_set():
            return
        self._stop.set()  # (the thread closes the pipe: it may be writing to it)

    def _notify(self) -> None:
        self._pipe.wake()

    def _listen(self, pubsub: Any) -> None:
        backoff = 0.05
        try:
            while not self._stop.is_set():
                try:
                    if pubsub is None:
                        pubsub = subscribe(self._connection.client, self._channels,
                                           self._connection.connect_timeout, self._pattern)
                        logger.info("listening for tasks on Redis at %s again",
                                    self._connection.location)
                        backoff = 0.05
                        self._notify()  # messages may have come while we were away
                    message = pubsub.get_message(timeout=_POLL)
                    if message is not None and message["type"] in ("message", "pmessage"):
                        self._notify()
                except Exception as exc:  # lost the connection: reconnect, with backoff
                    if pubsub is not None:
                        logger.debug("wake-up subscription lost: %s", exc)
                        _close(pubsub)
                        pubsub = None
                        self._notify()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            if pubsub is not None:
                _close(pubsub)
            self._pipe.close()


class ResultWaiter:
    """Blocks until a result for one of some tasks may have been stored."""

    def __init__(self, connection: Connection, channels: Sequence[str]) -> None:
        self._connection = connection
        self._channels = list(dict.fromkeys(channels))
        timeout = connection.connect_timeout
        self._pubsub: Any = connection.run(
            lambda client: subscribe(client, self._channels, timeout))

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when a result may have been stored."""
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            if self._pubsub is None:  # lost earlier: subscribe again (then look)
                self._pubsub = subscribe(self._connection.client, self._channels,
                                         self._connection.connect_timeout)
                return True
            while True:  # (health-check replies end get_message() early: go on)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                message = self._pubsub.get_message(timeout=remaining)
                if message is not None and message["type"] == "message":
                    return True
        except Exception as exc:  # the connection dropped: the caller reads again
            logger.debug("result subscription lost: %s", exc)
            if self._pubsub is not None:
                _close(self._pubsub)
                self._pubsub = None
            else:
                time.sleep(min(max(deadline - time.monotonic(), 0.0), 0.1))
            return True

    def close(self) -> None:
        if self._pubsub is not None:
            _close(self._pubsub)
            self._pubsub = None


__all__ = ["ResultWaiter", "WakeListener", "subscribe"]
