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
from typing import TYPE_CHECKING, Any

from liteq import signals
from liteq.exceptions import ImproperlyConfigured
from liteq.utils.log import LoggingProxy, setup_task_loggers, task_logger

if TYPE_CHECKING:
    from liteq.app import LiteQ

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


def setup_logging(level: int, fmt: str, logfile: str | None = None, *,
                  hijack: bool = True) -> None:
    """Log to stderr (or ``logfile``) at ``level`` with the worker's format.

    ``hijack`` (``worker_hijack_root_logger``, on by default) first removes the root
    logger's handlers; without it, a root logger that has handlers already (the
    application configured logging) keeps them and gets no handler of ours.
    """
    root = logging.getLogger()
    if hijack:
        for existing in list(root.handlers):
            root.removeHandler(existing)
    if not any(not isinstance(h, logging.NullHandler) for h in root.handlers):
        handler: logging.Handler
        if logfile:
            handler = logging.FileHandler(logfile)
        else:
            handler = logging.StreamHandler(terminal(sys.stderr))
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    root.setLevel(level)


def configure_logging(app: LiteQ, level: int, logfile: str | None = None) -> None:
    """The log set-up of ``liteq worker`` and ``liteq beat``, as Celery does it.

    When a receiver is connected to :data:`liteq.signals.setup_logging` (the common
    ``@setup_logging.connect`` that calls ``dictConfig(settings.LOGGING)``), liteq
    leaves logging to it. Otherwise :func:`setup_logging` runs (honouring
    ``worker_hijack_root_logger``) and :data:`~liteq.signals.after_setup_logger` is
    sent with the root logger.
    """
    fmt = str(app.conf.worker_log_format)
    if signals.setup_logging.send(sender=None, loglevel=level, logfile=logfile,
                                  format=fmt, colorize=False):
        return
    setup_logging(level, fmt, logfile, hijack=bool(app.conf.worker_hijack_root_logger))
    signals.after_setup_logger.send(sender=None, logger=logging.getLogger(), loglevel=level,
                                    logfile=logfile, format=fmt, colorize=False)


def configure_child_logging(app: LiteQ, level: int, logfile: str | None) -> None:
    """In a pool process started by spawn or forkserver, once the application is
    imported: a ``setup_logging`` receiver configures logging here too, as in the
    worker (fork children inherit the worker's set-up)."""
    if signals.setup_logging.receivers:
        configure_logging(app, level, logfile)


def configure_task_loggers(app: LiteQ) -> None:
    """Give task loggers' records the task format (unless a ``setup_logging`` receiver
    owns logging), then send :data:`~liteq.signals.after_setup_task_logger`."""
    if signals.setup_logging.receivers:
        return
    setup_task_loggers(str(app.conf.worker_task_log_format))
    signals.after_setup_task_logger.send(sender=None, logger=task_logger,
                                         loglevel=logging.getLogger().level, logfile=None,
                                         format=app.conf.worker_task_log_format,
                                         colorize=False)


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


__all__ = ["REDIRECTED", "LoggingProxy", "configure_child_logging", "configure_logging",
           "configure_task_loggers",
           "level_number", "redirect_stdouts", "redirected_stdouts", "setup_logging",
           "terminal"]
