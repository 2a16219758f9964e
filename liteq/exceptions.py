"""Every exception liteq raises, under one root: :class:`LiteQError`.

The names follow Celery's (``TimeoutError``, ``NotRegistered``, ``EncodeError``,
``Retry``, ``SoftTimeLimitExceeded``, ...) so ``except`` clauses move over unchanged.
Each class's docstring is its default message. This module imports nothing from liteq
(but names the envelope type for annotations).
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liteq.messages import Envelope


class LiteQError(Exception):
    """A liteq error."""

    def __init__(self, message: str | None = None, *args: Any) -> None:
        if message is None:
            message = (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        super().__init__(message, *args)


# -- configuration -----------------------------------------------------------------


class ImproperlyConfigured(LiteQError):
    """liteq is not configured correctly."""


ConfigurationError = ImproperlyConfigured


# -- serialization -----------------------------------------------------------------


class EncodeError(LiteQError):
    """A task's arguments or result could not be serialized."""


class DecodeError(LiteQError):
    """A message or a result could not be deserialized."""


class ContentDisallowed(DecodeError):
    """A message used a serializer that is not in ``accept_content``."""


# -- storage and transports --------------------------------------------------------


class OperationalError(LiteQError):
    """The broker or result store could not complete an operation in time."""


class StorageError(LiteQError):
    """The database file cannot be used by liteq."""


class StoreNotFound(StorageError):
    """There is no liteq store at that path (a command that only reads creates none)."""


class NetworkFilesystemError(StorageError):
    """The database file is on a network filesystem, where SQLite's WAL mode is unsafe."""


# -- tasks and results -------------------------------------------------------------


class TaskError(LiteQError):
    """A task-related error."""


class NotRegistered(KeyError, TaskError):
    """The task is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "The task is not registered."


class TimeoutError(TaskError, builtins.TimeoutError):
    """The operation timed out."""


class TaskRevokedError(TaskError):
    """The task has been revoked, so no result is available."""


class WorkerLostError(TaskError):
    """The worker running the task was lost before the task finished."""


class TimeLimitExceeded(TaskError):
    """The task ran past its hard time limit and was killed."""


class ChordError(TaskError):
    """A chord's body did not run: a task of its header failed or has no result."""


class MaxRetriesExceededError(TaskError):
    """The task was retried more times than its ``max_retries`` allows."""


class IncompleteStream(TaskError):
    """A result graph was walked past a task that has not finished (``iterdeps()``
    without ``intermediate=True``)."""


class SoftTimeLimitExceeded(Exception):
    """The task ran past its soft time limit.

    Raised inside the running task, which may catch it to clean up. It derives from
    ``Exception`` (not ``LiteQError``) as in Celery, so a task's own broad handlers see it.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "soft time limit exceeded")


# -- control flow raised by tasks --------------------------------------------------


class TaskPredicate(LiteQError):
    """Base class for exceptions that tell the worker what to do with a task."""


class Retry(TaskPredicate):
    """The task is to be retried later.

    Args:
        message: the reason shown in logs.
        exc: the exception that caused the retry, if any.
        when: seconds until the retry (or None).
        envelope: the message that runs the task again, published with the RETRY
            outcome (:meth:`Task.retry <liteq.task.Task.retry>` builds it; None: not
            retried by a message).
    """

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | None = None,
        *,
        envelope: Envelope | None = None,
        **kwargs: Any,
    ) -> None:
        self.exc = exc
        self.when = when
        self.message = message
        self.envelope = envelope
        super().__init__(message or self._describe(exc, when))

    @staticmethod
    def _describe(exc: BaseException | None, when: float | None) -> str:
        reason = f": {exc!r}" if exc is not None else ""
        delay = f" in {when:g}s" if when is not None else ""
        return f"Retry{delay}{reason}"

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.exc, self.when))


class Ignore(TaskPredicate):
    """The task's state is not to be updated."""


class Reject(TaskPredicate):
    """The task was rejected by its own code."""

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(str(reason) if reason is not None else None)


__all__ = [
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "DecodeError",
    "EncodeError",
    "Ignore",
    "ImproperlyConfigured",
    "IncompleteStream",
    "LiteQError",
    "MaxRetriesExceededError",
    "NetworkFilesystemError",
    "NotRegistered",
    "OperationalError",
    "Reject",
    "Retry",
    "SoftTimeLimitExceeded",
    "StorageError",
    "StoreNotFound",
    "TaskError",
    "TaskPredicate",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
