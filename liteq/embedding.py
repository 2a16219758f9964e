"""How an app reaches the worker layer that sits above it: ``app.Worker`` and
``app.run_worker``.

Imports flow one way (``app`` below ``worker/``), so ``app.py`` cannot import the
worker. The worker layer registers its embedded worker here when it is imported, and
``liteq/__init__.py`` imports it, so every program that imports liteq has it. Nothing
else is kept here.

Example:
    >>> worker = app.Worker(pool="threads", concurrency=4).start()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from liteq.exceptions import ImproperlyConfigured

_worker: Callable[..., Any] | None = None
_run_worker: Callable[..., Any] | None = None


def register(worker: Callable[..., Any], run_worker: Callable[..., Any]) -> None:
    """Called once by ``liteq.worker.background``: the class of a worker inside the
    application, and its context manager."""
    global _worker, _run_worker
    _worker, _run_worker = worker, run_worker


def worker() -> Callable[..., Any]:
    """The embedded worker class, ``(app, **options)``.

    Raises:
        ImproperlyConfigured: the worker layer was never imported (it is, by
            ``import liteq``).
    """
    if _worker is None:
        raise ImproperlyConfigured("liteq.worker is not loaded: import liteq first")
    return _worker


def run_worker() -> Callable[..., Any]:
    """The context manager running an embedded worker, ``(app, **options)``."""
    if _run_worker is None:
        raise ImproperlyConfigured("liteq.worker is not loaded: import liteq first")
    return _run_worker


__all__ = ["register", "run_worker", "worker"]
