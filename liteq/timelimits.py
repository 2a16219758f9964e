"""Time limits for a running task: ``soft_time_limit`` raises
:class:`SoftTimeLimitExceeded` inside it, ``time_limit`` raises
:class:`TimeLimitExceeded` (prefork children leave the hard limit to their main
process, which kills them).
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from liteq import platforms
from liteq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded


def _async_raise(thread_id: int, exc_type: type[BaseException] | None) -> None:
    # Deliver an exception into another thread at its next bytecode (threads pool);
    # None clears one still pending.
    target = ctypes.py_object(exc_type) if exc_type is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


@contextmanager
def time_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    """Raise :class:`SoftTimeLimitExceeded` inside the task after ``soft`` seconds and
    :class:`TimeLimitExceeded` after ``hard`` seconds.

    In a process's main thread this uses ``SIGALRM``; in other threads (and where there
    is no ``SIGALRM``: Windows) the exception is
    injected into the thread (it lands at the next Python bytecode, so a task blocked in
    C code sees it when it returns to Python). Prefork children pass ``hard=None``: their
    main process kills them instead, which also stops code stuck in C.
    """
    stages: list[tuple[float, type[BaseException]]] = []
    if soft and soft > 0:
        stages.append((soft, SoftTimeLimitExceeded))
    if hard and hard > 0 and (not stages or hard > stages[0][0]):
        stages.append((hard, TimeLimitExceeded))
    if not stages:
        yield
        return
    if threading.current_thread() is not threading.main_thread() or not platforms.has_alarm():
        ident = threading.get_ident()
        lock = threading.Lock()
        running = [True]

        def fire(kind: type[BaseException]) -> None:
            with lock:
                if running[0]:
                    _async_raise(ident, kind)

        timers = [threading.Timer(at, fire, (kind,)) for at, kind in stages]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            with lock:
                running[0] = False
                for timer in timers:
                    timer.cancel()
                _async_raise(ident, None)
        return
    started = time.monotonic()

    def arm() -> None:
        at = stages[0][0]
        signal.setitimer(signal.ITIMER_REAL, max(at - (time.monotonic() - started), 0.001))

    def on_alarm(signum: int, frame: Any) -> None:
        _, kind = stages.pop(0)
        if stages:
            arm()
        raise kind()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    arm()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


__all__ = ["time_limits"]
