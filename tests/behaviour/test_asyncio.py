"""The asyncio API: ``await add.adelay(...)``, ``await res.aget(...)``, ``await
group_result.aget()``, under a running event loop with a real worker process."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Any

import pytest

from liteq import EncodeError, TimeoutError, aio, group
from tests.conftest import Project

TASKS = """
import time

from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")


class Boom(Exception):
    pass


@app.task
def add(x, y):
    return x + y


@app.task
def nap(seconds, value):
    time.sleep(seconds)
    return value


@app.task
def boom(message):
    raise Boom(message)
"""


@pytest.fixture
def tasks(project: Project) -> Any:
    module = project.module(TASKS)
    project.worker("-c", "8", pool="threads")
    return module


def test_adelay_and_aget(tasks: Any) -> None:
    async def main() -> tuple[Any, ...]:
        result = await tasks.add.adelay(2, 3)
        other = await tasks.add.aapply_async((4,), {"y": 4}, countdown=0.1, priority=3)
        named = await tasks.app.asend_task(tasks.add.name, args=(1, 1))
        return (await result.aget(timeout=10), await other.aget(timeout=10),
                await named.aget(timeout=10))

    assert asyncio.run(main()) == (5, 8, 2)


def test_many_concurrent_awaits_take_no_thread_each(tasks: Any) -> None:
    async def main() -> tuple[list[int], int, int]:
        results = [await tasks.nap.adelay(0.01, i) for i in range(300)]
        before = threading.active_count()
        waits = asyncio.gather(*(result.aget(timeout=60) for result in results))
        await asyncio.sleep(0.2)
        during = threading.active_count()
        return await waits, before, during

    values, before, during = asyncio.run(main())
    assert values == list(range(300))
    assert during - before <= 4  # the loop's default executor at most, never 300


def test_awaits_are_woken_not_polled(tasks: Any) -> None:
    async def main() -> tuple[float, int, float]:
        slow = [tasks.nap.delay(1.5, i) for i in range(8)]  # one per worker thread
        hub = aio.hub_for(tasks.app.backend)
        waits = asyncio.gather(*(result.aget(timeout=30) for result in slow))
        await asyncio.sleep(0.1)
        reads_before = hub.reads
        await asyncio.sleep(1.0)  # nothing finishes meanwhile: only the interval reads
        idle_reads = hub.reads - reads_before
        await waits
        quick = await tasks.add.adelay(1, 1)
        begun = time.monotonic()
        assert await quick.aget(timeout=10, interval=5.0) == 2
        return begun, idle_reads, time.monotonic() - begun

    _, idle_reads, latency = asyncio.run(main())
    assert idle_reads <= 3  # one read per 0.5 s interval (as get()), not one per await
    assert latency < 2.0  # woken by the worker's wake-up, long before the 5 s interval


def test_group_aget_and_failures(tasks: Any) -> None:
    async def main() -> Any:
        grouped = group(tasks.add.s(i, i) for i in range(10)).apply_async()
        values = await grouped.aget(timeout=20)
        failed = await tasks.boom.adelay("no")
        with pytest.raises(Exception, match="no") as raised:
            await failed.aget(timeout=10)
        assert type(raised.value).__name__ == "Boom"
        assert isinstance(await failed.aget(timeout=10, propagate=False), Exception)
        mixed = group([tasks.add.s(1, 1), tasks.boom.s("second")]).apply_async()
        with pytest.raises(Exception, match="second"):
            await mixed.aget(timeout=20)
        return values

    assert asyncio.run(main()) == [2 * i for i in range(10)]


def test_timeouts_and_bad_arguments(tasks: Any) -> None:
    async def main() -> None:
        sleeping = await tasks.nap.adelay(2, "late")
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.3s"):
            await sleeping.aget(timeout=0.3)
        grouped = group([tasks.add.s(1, 1), tasks.nap.s(2, "late")]).apply_async()
        with pytest.raises(TimeoutError, match="1 of 2 tasks finished"):
            await grouped.aget(timeout=1)
        with pytest.raises(EncodeError):
            await tasks.add.adelay(object(), 1)
        assert await tasks.add.adelay(1, 2) is not None  # the loop goes on

    asyncio.run(main())


@pytest.mark.sqlite_only(reason="holds SQLite's write lock from another connection")
def test_a_blocked_publish_never_blocks_the_loop(tasks: Any, project: Project) -> None:
    locker = sqlite3.connect(project.db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # every writer waits until this commits

    async def main() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, locker.execute, "COMMIT")
        result = await tasks.add.adelay(20, 22)  # waits for the lock, in the executor
        ticks_while_blocked = ticks
        value = await result.aget(timeout=10)
        ticking.cancel()
        return ticks_while_blocked, value

    try:
        ticks, value = asyncio.run(main())
    finally:
        locker.close()
    assert value == 42
    assert ticks >= 20  # the loop went on for the half second the publish waited
