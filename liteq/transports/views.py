"""What the store reads back for people and services rather than for the task path:
queue depths, workers, revocations, messages in flight and stored, control commands
and beat entries (returned by the :class:`~liteq.transports.base.Transport` contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liteq.messages import Envelope


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Messages in a queue by state."""

    ready: int = 0
    scheduled: int = 0
    leased: int = 0
    #: waiting for a concurrency slot or a rate token (flow control)
    blocked: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.leased + self.blocked


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live (or recently live) worker, as registered and heartbeated."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    pool: str
    started_at: float
    heartbeat_at: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked task id, and whether a worker running it should be killed."""

    task_id: str
    terminate: bool = False
    signal: str | None = None


@dataclass(frozen=True, slots=True)
class InFlight:
    """A claimed message, for ``inspect active``."""

    holder: str
    task_id: str
    task_name: str
    queue: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A waiting or claimed message as ``inspect`` and the event monitor see it.

    ``state`` is ``"ready"``, ``"scheduled"`` (waiting for its eta) or ``"leased"``
    (``holder`` has it); ``key`` is the transport's handle, unique while it is stored.
    """

    key: Any
    state: str
    envelope: Envelope
    holder: str | None = None


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """A remote control command for workers (``app.control.broadcast``).

    ``destination`` None reaches every worker; ``reply`` asks each worker that acts on
    it to store a reply under ``ticket``.
    """

    ticket: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    destination: tuple[str, ...] | None = None
    reply: bool = False
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class BeatEntry:
    """A periodic task as stored: its definition, and when it runs next.

    ``definition`` and ``schedule`` are json (made by the beat); times are epoch seconds.
    """

    name: str
    definition: bytes
    schedule: str
    next_run_at: float
    last_run_at: float | None = None
    total_run_count: int = 0


__all__ = ["BeatEntry", "ControlCommand", "InFlight", "QueueDepth", "Revocation",
           "StoredMessage", "WorkerInfo"]
