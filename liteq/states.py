"""Task states, as in Celery.

``State`` is a ``str`` enum, so ``res.state == "SUCCESS"`` and ``res.state == SUCCESS``
both hold.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    PENDING = "PENDING"  #: Unknown to the result store: waiting, or never sent.
    RECEIVED = "RECEIVED"  #: Claimed by a worker, not yet running.
    STARTED = "STARTED"  #: Running (recorded only with ``task_track_started``).
    SUCCESS = "SUCCESS"  #: Finished and returned a value.
    FAILURE = "FAILURE"  #: Finished by raising an exception, or lost with its worker.
    RETRY = "RETRY"  #: Failed and waiting to run again.
    REVOKED = "REVOKED"  #: Revoked or expired before it ran.

    def __str__(self) -> str:
        return self.value


PENDING = State.PENDING
RECEIVED = State.RECEIVED
STARTED = State.STARTED
SUCCESS = State.SUCCESS
FAILURE = State.FAILURE
RETRY = State.RETRY
REVOKED = State.REVOKED

#: States after which a task does nothing more.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States that are not final.
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
#: States whose result is an exception.
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
#: Final states that end in error.
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

ALL_STATES = frozenset(State)

__all__ = [
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "PENDING",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
    "State",
]
