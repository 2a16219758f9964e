"""The worker's logging: one handler (stderr or ``-f`` file), and ``print()`` in tasks
sent to it as log lines, as Celery's ``worker_redirect_stdouts`` does.

With ``worker_redirect_stdouts`` on (the default), ``sys.stdout`` and ``sys.stderr`` of
every process that runs tasks (the worker itself, and each prefork child) are replaced
by a :class:`LoggingProxy` that logs each line written at
``worker_redirect_stdouts_level`` (default WARNING) on the ``liteq.redirected`` logger.
The worker's own banner and shutdown notices still go to the terminal
(:func:`terminal`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from liteq.exceptions import ImproperlyConfigured
from liteq.utils.log import LoggingProxy

#: The logger ``print()`` in a task is logged on.
REDIRECTED = "liteq.redirected"


def level_number(level: int | str, setting: str = "worker_redirect_stdouts_level") -> int:
    """A log level given as a number or a name in any case (``"warning"``, ``"WARN"``).

    Raises:
        ImproperlyConfigured: an unknown level name.
    """
    if isinstance(level, int):
        return level
    name = str(level).strip().upper()
    number = logging.getLevelName("CRITICAL" if name == "FATAL" else name)
    if not isinstance(number, int):
        raise ImproperlyConfigured(
            f"{setting} must be a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), "
            f"not {level!r}"
        )
    return number


def terminal(stream: Any) -> Any:
    """The real stream behind ``stream`` (itself unless it is a :class:`LoggingProxy`)."""
    return stream.original if isinstance(stream, LoggingProxy) else stream


def setup_logging(level: int, fmt: str, logfile: str | None = None) -> None:
    """Log to stderr (or ``logfile``) at ``level`` with the worker's format."""
    handler: logging.Handler
    if logfile:
        handler = logging.FileHandler(logfile)
    else:
        handler = logging.StreamHandler(terminal(sys.stderr))
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


def redirect_stdouts(level: int | str) -> None:
    """Log what this process writes to ``sys.stdout``/``sys.stderr`` at ``level``
    (done once; a forked child keeps its parent's redirection)."""
    number = level_number(level)
    logger = logging.getLogger(REDIRECTED)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, LoggingProxy):
            continue
        stream.flush()
        setattr(sys, name, LoggingProxy(logger, number, stream))


@contextmanager
def redirected_stdouts(level: int | str | None) -> Iterator[None]:
    """:func:`redirect_stdouts` for the block (None: leave them alone); the streams are
    put back after it, so an error that ends the worker reaches the terminal as itself.
    """
    if level is None:
        yield
        return
    saved = sys.stdout, sys.stderr
    redirect_stdouts(level)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


__all__ = ["REDIRECTED", "LoggingProxy", "level_number", "redirect_stdouts",
           "redirected_stdouts", "setup_logging", "terminal"]
