"""asyncio support: ``await add.adelay(2, 3)``, ``await res.aget(timeout=5)``.

Awaiting a result costs no thread. Each event loop keeps one :class:`ResultHub` per
result store; every ``aget()`` on that loop registers its task id there and awaits a
future. The hub watches one file descriptor with ``loop.add_reader``: the store's
*results listener* (``Transport.results_listener()``: the wake-up pipe workers write
after storing any result on SQLite, a pattern subscription on Redis), the same
wake-ups a blocking ``get()`` sleeps on. On a wake-up, and at the latest every
``interval`` seconds as ``get()`` does, it reads every awaited result in one call in
the loop's default executor (a store read never blocks the loop) and resolves the
futures whose task finished. A thousand concurrent ``aget()`` calls are a thousand
futures, one descriptor and one read per wake-up.

Sending (``adelay``, ``aapply_async``, ``asend_task``) runs the blocking publish in the
loop's default executor: a write can wait on a lock for a moment, and the loop must not.

Where the loop cannot watch a descriptor (Windows' proactor loop) or the store offers
no listener, the hub reads at each ``interval`` only: slower, never wrong.

Example:
    >>> async def handler():  # doctest: +SKIP
    ...     result = await add.adelay(2, 3)
    ...     return await result.aget(timeout=10)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from liteq.exceptions import TimeoutError
from liteq.states import READY_STATES
from liteq.transports.base import Listener, ResultRecord, Transport

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a hub keeps its listener open after the last await ends (a busy web app
#: awaits again soon; opening a listener costs a pipe or a subscription).
IDLE_CLOSE = 5.0

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, ResultHub]] = (
    weakref.WeakKeyDictionary()
)


async def run_blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``function(*args, **kwargs)`` in the running loop's default executor, in a
    copy of the caller's context (so ``current_app`` and the like follow it)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, function, *args, **kwargs)
    return await loop.run_in_executor(None, call)


def hub_for(backend: Transport) -> ResultHub:
    """The running loop's hub for results stored in ``backend``."""
    loop = asyncio.get_running_loop()
    hubs = _hubs.setdefault(loop, {})
    hub = hubs.get(id(backend))
    if hub is None or hub.backend is not backend:
        hub = hubs[id(backend)] = ResultHub(loop, backend)
    return hub


async def wait_for_result(backend: Transport, task_id: str, timeout: float | None,
                          interval: float = 0.5) -> ResultRecord:
    """The final record of ``task_id``, awaited without blocking the loop.

    Raises:
        TimeoutError: the task did not finish within ``timeout`` seconds.
    """
    return await hub_for(backend).wait(task_id, timeout, interval)


class ResultHub:
    """Every ``aget()`` of one event loop on one result store."""

    def __init__(self, loop: asyncio.AbstractEventLoop, backend: Transport) -> None:
        # Weakly: the loop's table of hubs must not keep the loop alive.
        self._loop = weakref.ref(loop)
        self.backend = backend
        self._pending: dict[str, dict[asyncio.Future[ResultRecord], float]] = {}
        self._listener: Listener | None = None
        self._watching = False
        self._opening: asyncio.Future[None] | None = None
        self._checking = False
        self._check_again = False
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        #: store reads so far (a test checks wake-ups, not polling, drive them)
        self.reads = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:  # pragma: no cover - only awaited on a live loop
            raise RuntimeError("the event loop of this hub is gone")
        return loop

    @property
    def waiting(self) -> int:
        """How many awaits are pending."""
        return sum(len(futures) for futures in self._pending.values())

    async def wait(self, task_id: str, timeout: float | None, interval: float) -> ResultRecord:
        future: asyncio.Future[ResultRecord] = self.loop.create_future()
        self._pending.setdefault(task_id, {})[future] = max(float(interval), 0.01)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            await self._open_listener()  # before the first read: no wake-up is missed
            self._check_soon()
            try:
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"task {task_id} did not finish within {timeout:g}s"
                ) from None
        finally:
            self._forget(task_id, future)

    # -- the listener ----------------------------------------------------------------

    async def _open_listener(self) -> None:
        if self._listener is not None or self._watching:
            return
        if self._opening is None:
            self._opening = self.loop.create_future()
            try:
                listener = await self.loop.run_in_executor(None, self.backend.results_listener)
            except Exception as exc:  # no wake-ups here: the interval still reads
                logger.debug("no results listener on %s: %s", self.backend, exc)
                listener = None
            self._watch(listener)
            self._opening.set_result(None)
            self._opening = None
        else:
            await asyncio.shield(self._opening)

    def _watch(self, listener: Listener | None) -> None:
        self._watching = True
        if listener is None:
            return
        try:
            self.loop.add_reader(listener.fileno(), self._on_wake)
        except NotImplementedError:  # the proactor loop (Windows): the interval reads
            listener.close()
            return
        self._listener = listener
        # A loop closed while the listener is open (asyncio.run() returning) frees it.
        weakref.finalize(self.loop, listener.close)

    def _on_wake(self) -> None:
        listener = self._listener
        if listener is not None:
            listener.drain()
        self._check_soon()

    def _close_listener(self) -> None:
        self._idle = None
        if self._pending:
            return
        listener, self._listener = self._listener, None
        self._watching = False
        if listener is not None:
            self.loop.remove_reader(listener.fileno())
            listener.close()

    # -- reading ---------------------------------------------------------------------

    def _check_soon(self) -> None:
        if self._checking:
            self._check_again = True
            return
        self._checking = True
        self.loop.create_task(self._check())

    async def _check(self) -> None:
        try:
            while self._pending:
                self._check_again = False
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                ids = list(self._pending)
                try:
                    records = await self.loop.run_in_executor(None, self._read, ids)
                except Exception as exc:  # the store failed: every waiter hears it
                    for futures in self._pending.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    return
                for task_id, record in zip(ids, records, strict=True):
                    if record is not None and record.state in READY_STATES:
                        for future in self._pending.get(task_id, {}):
                            if not future.done():
                                future.set_result(record)
                if not self._check_again:
                    break
        finally:
            self._checking = False
            self._arm_timer()

    def _read(self, ids: Sequence[str]) -> list[ResultRecord | None]:
        self.reads += 1
        return [self.backend.get_result(task_id) for task_id in ids]

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        intervals = [i for futures in self._pending.values() for i in futures.values()]
        if intervals:
            self._timer = self.loop.call_later(min(intervals), self._check_soon)

    def _forget(self, task_id: str, future: asyncio.Future[ResultRecord]) -> None:
        futures = self._pending.get(task_id)
        if futures is not None:
            futures.pop(future, None)
            if not futures:
                del self._pending[task_id]
        if not self._pending:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._idle is None and not self.loop.is_closed():
                self._idle = self.loop.call_later(IDLE_CLOSE, self._close_listener)


__all__ = ["ResultHub", "hub_for", "run_blocking", "wait_for_result"]
