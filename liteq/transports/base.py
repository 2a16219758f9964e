"""The ``Transport`` contract: where messages, results and worker state live.

Everything above ``liteq/transports/`` talks to storage through this class and the
plain records below, never through ``sqlite3`` or ``redis``. Methods are grouped by
role: lifecycle, messages, results, groups, beat, control, rate limits, workers.
SQLite and Redis implement all of them.

The message life cycle, which every transport keeps::

    publish ──► ready ◄──────────────── release / reap (acks_late)
                │ claim: lease (token, deadline, worker, delivery count)
                ▼
              leased ── settle (token must match) ──► gone, result stored
                │ lease runs out (worker died or stopped)
                ▼
              reap: ready again (acks_late, deliveries left) or FAILURE (WorkerLostError)

A countdown/eta message waits as *scheduled* in storage until it is due; no worker
holds it in memory. Every transition out of *leased* is fenced by the lease token, so a
worker whose lease was taken over cannot ack, store a result, or renew.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from liteq.messages import Envelope
from liteq.transports.counts import (  # re-exported: part of the contract
    COUNTS_KEPT,
    LOST,
    RUNTIME_BUCKETS,
    Tally,
    TaskCount,
    runtime_bucket,
)
from liteq.transports.views import (  # re-exported: part of the contract
    BeatEntry,
    ControlCommand,
    InFlight,
    QueueDepth,
    Revocation,
    StoredMessage,
    WorkerInfo,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed message: the envelope plus the lease that holds it."""

    key: Any  #: the transport's own handle of the message
    token: Any  #: the lease token that fences every later transition
    deliveries: int  #: how many times the message was delivered, this time included
    envelope: Envelope
    revoked: bool = False  #: revoked before it was claimed: settle it REVOKED, don't run it
    claimed_at: float | None = None  #: epoch seconds of the claim (the task's "received")

    @property
    def task_id(self) -> str:
        return self.envelope.task_id

    @property
    def task_name(self) -> str:
        return self.envelope.task_name


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """Just a lease (message key and token), as a supervisor knows it."""

    key: Any
    token: Any


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A task's state and result as stored: the payload is serialized by the caller."""

    task_id: str
    state: str
    content_type: str = "application/json"
    payload: bytes = b"null"
    traceback: str | None = None
    date_done: float = 0.0  #: epoch seconds of the last state change
    task_name: str | None = None
    worker: str | None = None
    retries: int = 0
    #: json with args, kwargs, queue, ... (``result_extended``), or None
    extended: bytes | None = None
    #: seconds the record is kept after ``date_done``; None keeps it forever
    expires_in: float | None = None
    #: json list of the result tuples of the tasks this one sent while it ran (its
    #: ``children``), or None when it sent none; unlike ``extended``, a record without
    #: children clears those stored before (a retried task's earlier run)
    children: bytes | None = None
    #: epoch seconds a worker claimed the task's message (its lease began), and the
    #: task started running; None when unknown (a record stored outside a worker). A
    #: record without them keeps those stored before.
    date_received: float | None = None
    date_started: float | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a claimed message ends, applied atomically when the token still matches.

    The message is removed and, in the same transaction, ``result`` is stored and
    ``publish`` (a retry, the next step of a chain, callbacks) is published. With
    ``release`` the message goes back to the queue instead, its delivery not counted
    (a prefetched task returned at shutdown); with ``release_at`` too, it waits as
    scheduled until then (a rate-limited task). With ``redeliver`` too, the delivery
    counts: the task rejected its message with ``Reject(requeue=True)`` and sees
    ``redelivered`` when it runs again, as on AMQP.
    """

    delivery: Delivery | LeaseRef
    result: ResultRecord | None = None
    publish: tuple[Envelope, ...] = ()
    release: bool = False
    release_at: float | None = None
    redeliver: bool = False
    #: what an accepted settlement adds to the per-minute task counters (not a release)
    tally: Tally | None = None


@dataclass(frozen=True, slots=True)
class LostTaskPolicy:
    """What reaping does with a message whose lease ran out.

    ``acks_late`` messages go back to the queue until they have been delivered
    ``max_deliveries`` times; then ``exhausted`` is stored. Other messages are not run
    again (they may have had effects): ``lost`` is stored. Both records are templates
    whose ``task_id``, ``task_name`` and ``date_done`` the transport fills in.

    ``finish``, when given, is called with each message failed this way and its filled-in
    record; the transport stores the record it returns instead (the call kept, for
    ``liteq retry``) and publishes the envelopes it returns (a chord's unlock) with it:
    in the same transaction on SQLite, right after the script on Redis.
    """

    max_deliveries: int
    lost: ResultRecord
    exhausted: ResultRecord
    finish: Callable[[Envelope, ResultRecord], tuple[ResultRecord, Sequence[Envelope]]] | None \
        = None


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What one reaping pass did, by task id."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Listener(Protocol):
    """A file descriptor that becomes readable when something was published."""

    def fileno(self) -> int: ...

    def drain(self) -> None: ...

    def close(self) -> None: ...


class Waiter(Protocol):
    """Blocks a caller until a result may have been stored."""

    def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class Transport(abc.ABC):
    """The storage contract every backend implements in full.

    Transports are created from a URL and the app's settings, open lazily, and are
    safe to use from several threads (each thread gets its own connection) and after
    ``fork()`` (the child opens its own connections).
    """

    #: URL schemes this transport serves
    schemes: ClassVar[tuple[str, ...]] = ()
    #: True when producers can enqueue inside the application's own transaction
    supports_app_transactions: ClassVar[bool] = False

    @classmethod  # noqa: B027 - optional hook
    def check_store(cls, url: str) -> None:
        """Check, creating and changing nothing, that ``url`` holds a store to read.

        Commands that only read (``liteq result``, ``inspect``...) call it first, so a
        typo is an error rather than a new, empty store. A server-backed transport
        has nothing to check before it connects.

        Raises:
            StoreNotFound: nothing is there.
            StorageError: something is there, but not a store of this transport.
        """

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    # -- lifecycle -------------------------------------------------------------------

    @abc.abstractmethod
    def open(self) -> None:
        """Connect and check the storage now (otherwise it happens on first use)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files held by this process."""

    def after_fork(self) -> None:  # noqa: B027 - optional hook
        """Forget connections inherited from the parent process (never close them)."""

    def worker_mode(self) -> None:  # noqa: B027 - optional hook
        """This process runs tasks: leave storage upkeep to :meth:`maintain`, which the
        worker's housekeeping calls, so the task path never pays for it."""

    def fail_unreachable(self, failure: Callable[[Envelope, str], ResultRecord],
                         limit: int = 1000) -> list[str]:
        """Remove stored messages no claim can ever serve (rows another program wrote
        with a state or a column claims never match), storing ``failure(envelope,
        reason)`` for each; returns their task ids. Transports whose every stored message
        is claimable keep this default: none."""
        return []

    def maintain(self) -> float:
        """Storage upkeep (SQLite: checkpoint the WAL); returns seconds until the next call."""
        return 60.0

    def busy_retries(self) -> int:
        """Times this process waited for the store's lock and tried again (SQLite's
        busy retries; 0 where there is no such lock). Workers report it in their
        heartbeat info as ``sqlite_busy_retries``."""
        return 0

    def health(self) -> dict[str, Any]:
        """Facts about the storage for ``liteq doctor``, read without changing it.

        SQLite: ``filesystem``, ``network_filesystem``, ``journal_mode``,
        ``synchronous``, ``wal_bytes``, ``wal_frames``, ``schema_version``,
        ``expected_schema_version``, ``file_modes`` (path -> mode bits); Redis:
        ``version``, ``aof_enabled``, ``maxmemory_policy``. Always ``kind``.
        """
        return {"kind": type(self).__name__}

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the data lives, for messages (a file path, or a URL without password)."""

    # -- messages --------------------------------------------------------------------

    @abc.abstractmethod
    def publish(self, envelopes: Sequence[Envelope]) -> list[str] | None:
        """Store messages, all or none; eta messages wait as scheduled until due.

        Flow control (``Envelope.flow``) is decided here, in the same transaction: a
        message over its concurrency limit or out of rate tokens waits *blocked* (not
        claimable) until a slot or token is there; a unique message whose key a waiting
        or running task holds is not stored. Returns the task id each envelope stands
        for (its own, or the holder's of its unique key) when any envelope has a flow;
        None when every envelope was stored under its own id.
        """

    @abc.abstractmethod
    def claim(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready messages: priority (higher first), eta, arrival."""

    @abc.abstractmethod
    def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        """Apply settlements; each is accepted only while its lease token matches."""

    def settle_and_claim(
        self, settlements: Sequence[Settlement], queues: Sequence[str], limit: int,
        worker_id: str, lease_seconds: float,
    ) -> tuple[list[bool], list[Delivery]]:
        """Settle, then claim up to ``limit`` more: the worker loop's one round trip.

        Transports that can (SQLite) do both in one transaction.
        """
        accepted = self.settle(settlements) if settlements else []
        claimed = self.claim(queues, limit, worker_id, lease_seconds) if limit > 0 else []
        return accepted, claimed

    @abc.abstractmethod
    def extend_leases(self, worker_id: str, lease_seconds: float) -> int:
        """Renew the leases of ``worker_id`` and of its pool processes
        (``worker_id + "/N"``), one per holder; returns how many holders were renewed."""

    @abc.abstractmethod
    def reap_expired(self, policy: LostTaskPolicy) -> ReapReport:
        """Apply ``policy`` to every message whose lease has run out."""

    @abc.abstractmethod
    def lose(self, leases: Sequence[LeaseRef | Delivery], policy: LostTaskPolicy) -> ReapReport:
        """Apply ``policy`` now to leases whose process died while running them (a lease
        no longer held is skipped)."""

    @abc.abstractmethod
    def release_worker(self, worker_id: str) -> int:
        """Put back, without counting a delivery, every lease ``worker_id`` still holds
        (a pool process that died before starting them)."""

    @abc.abstractmethod
    def next_eta(self, queues: Sequence[str]) -> float | None:
        """Epoch seconds when the earliest scheduled message in ``queues`` becomes due."""

    @abc.abstractmethod
    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete waiting (ready and scheduled) messages; returns how many."""

    @abc.abstractmethod
    def depth(self, queues: Sequence[str] | None = None) -> dict[str, QueueDepth]:
        """Message counts per queue."""

    @abc.abstractmethod
    def is_leased(self, task_id: str) -> bool:
        """True while a worker holds the task's message (its state is RECEIVED)."""

    @abc.abstractmethod
    def listen(self, queues: Sequence[str]) -> Listener:
        """A listener that wakes when a message is published (for an idle worker)."""

    # -- results ---------------------------------------------------------------------

    @abc.abstractmethod
    def store_result(self, record: ResultRecord, fence: Delivery | None = None) -> bool:
        """Store a state outside settlement (STARTED, progress, RETRY...).

        A final state already stored is never overwritten by a non-final one. With
        ``fence``, nothing is written unless that lease is still held.
        """

    @abc.abstractmethod
    def store_results(self, records: Sequence[ResultRecord]) -> None:
        """Store final results (used when results live apart from the broker)."""

    @abc.abstractmethod
    def get_result(self, task_id: str) -> ResultRecord | None:
        """The stored record, or None (PENDING)."""

    @abc.abstractmethod
    def find_results(self, state: str, task_name: str | None = None,
                     limit: int = 1000) -> list[ResultRecord]:
        """Stored records in ``state`` (of ``task_name`` only, when given), oldest first,
        up to ``limit``: an administrator's search (``liteq retry --failed``), not for
        the task path."""

    @abc.abstractmethod
    def forget(self, task_ids: Sequence[str]) -> None:
        """Delete stored results."""

    @abc.abstractmethod
    def result_waiter(self, task_ids: Sequence[str]) -> Waiter:
        """Something to block on until a result for one of ``task_ids`` may be stored.

        Create it *before* reading the result, so a result stored in between still
        wakes it. Spurious wake-ups are allowed; callers read the result again.
        """

    @abc.abstractmethod
    def results_listener(self) -> Listener:
        """A listener that wakes whenever any result is stored: one file descriptor an
        event loop watches for all the results its coroutines await (``aget()``).

        Raises:
            OSError: no wake-up channel here (callers fall back to their interval).
        """

    @abc.abstractmethod
    def expire_results(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` results past their expiry (and expired saved groups);
        returns how many results."""

    @abc.abstractmethod
    def chord_part_done(self, chord_id: str, member_id: str, index: int, size: int,
                        expires_in: float | None) -> list[str] | None:
        """Count header task ``member_id`` (number ``index`` of ``size``) of chord
        ``chord_id`` as finished, once however often it is told; kept ``expires_in``
        seconds (None: for ever).

        For the one member whose count completed the chord, every member's id in header
        order, each time that member asks (so a redelivered unlock sends the body again
        rather than never); None for every other member.
        """

    # -- groups ----------------------------------------------------------------------

    @abc.abstractmethod
    def save_group(self, group_id: str, payload: bytes, expires_in: float | None) -> None:
        """Store a group's members (``GroupResult.save()``: json made by the caller),
        replacing what was saved under ``group_id``; kept ``expires_in`` seconds (None:
        for ever)."""

    @abc.abstractmethod
    def get_group(self, group_id: str) -> bytes | None:
        """What :meth:`save_group` stored, or None (never saved, deleted or expired)."""

    @abc.abstractmethod
    def forget_group(self, group_id: str) -> None:
        """Delete a saved group (its members' results stay)."""

    # -- beat ------------------------------------------------------------------------

    @abc.abstractmethod
    def beat_sync(self, entries: Sequence[BeatEntry]) -> list[BeatEntry]:
        """Make the stored schedule match ``entries`` (the code's), in one transaction.

        An entry whose definition and schedule are unchanged keeps its stored run
        times; a new or changed one takes the given ``next_run_at``; stored entries not
        in ``entries`` are retired. Returns the stored entries.
        """

    @abc.abstractmethod
    def beat_entries(self) -> list[BeatEntry]:
        """The stored schedule."""

    @abc.abstractmethod
    def beat_fire(self, name: str, expected_next: float, next_run_at: float,
                  fired_at: float, envelope: Envelope | None) -> bool:
        """Advance an entry from ``expected_next`` to ``next_run_at`` and publish its
        message, in one transaction; False (and nothing done) when another beat
        advanced it first. ``envelope`` None advances without publishing (a skipped tick).
        """

    # -- control ---------------------------------------------------------------------

    @abc.abstractmethod
    def revoke(self, revocations: Sequence[Revocation], expires_in: float | None) -> None:
        """Remember revoked task ids (for ``expires_in`` seconds, None: for ever); a
        worker that claims one settles it REVOKED instead of running it."""

    @abc.abstractmethod
    def revoked(self, task_ids: Sequence[str] | None = None,
                limit: int = 1000) -> list[Revocation]:
        """Which of ``task_ids`` are revoked (all, up to ``limit``, when None)."""

    @abc.abstractmethod
    def in_flight(self, limit: int = 1000) -> list[InFlight]:
        """Claimed messages with their holders, up to ``limit``."""

    @abc.abstractmethod
    def messages(self, *, states: Sequence[str] | None = None,
                 queues: Sequence[str] | None = None,
                 task_ids: Sequence[str] | None = None,
                 limit: int = 1000) -> list[StoredMessage]:
        """Stored messages (newest first, up to ``limit``), filtered by state
        (``"ready"``, ``"scheduled"``, ``"leased"``), queue and task id: for ``inspect``
        and the event monitor, not for the task path."""

    @abc.abstractmethod
    def results_since(self, since: float, limit: int = 1000) -> list[ResultRecord]:
        """Results whose ``date_done`` is at or after ``since`` (epoch seconds), oldest
        first, up to ``limit``: the event monitor's view of finished tasks."""

    @abc.abstractmethod
    def task_counts(self, since: float | None = None) -> list[TaskCount]:
        """The per-minute task counters written with each settlement: the rows of the
        minutes at or after ``since`` (epoch seconds); with None, every task ever
        counted, summed per task, state and bucket (``minute`` 0.0), for Prometheus.

        Counters live in the broker's store whatever ``result_backend`` says, and count
        ``ignore_result`` tasks too; per-minute rows are kept :data:`COUNTS_KEPT`
        seconds, their sums for ever."""

    @abc.abstractmethod
    def send_control(self, command: ControlCommand, expires_in: float) -> None:
        """Store a control command for the workers that read it in the next
        ``expires_in`` seconds, and wake them."""

    @abc.abstractmethod
    def control_cursor(self) -> str:
        """Where a worker starts reading control commands: after the newest one."""

    @abc.abstractmethod
    def read_control(self, cursor: str) -> tuple[list[ControlCommand], str]:
        """Commands sent after ``cursor`` (at once, never blocking); returns them and
        the cursor to read from next."""

    @abc.abstractmethod
    def listen_control(self) -> Listener:
        """A listener that wakes when a control command is sent."""

    @abc.abstractmethod
    def reply_control(self, ticket: str, hostname: str, reply: Any,
                      expires_in: float) -> None:
        """Store ``hostname``'s (json-able) reply to the command ``ticket``."""

    @abc.abstractmethod
    def control_replies(self, ticket: str) -> dict[str, Any]:
        """The replies stored for ``ticket`` so far, by hostname."""

    # -- rate limits -----------------------------------------------------------------

    @abc.abstractmethod
    def take_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        """Take a token from the bucket ``key`` (refilled at ``rate`` per second, holding
        at most ``capacity``), shared by every worker; returns 0.0 when one was taken,
        else the seconds until one will be there (nothing taken)."""

    @abc.abstractmethod
    def set_rate_limit(self, task_name: str, rate: float | None) -> None:
        """Set a task's rate (tokens per second; None: no limit) for the messages that
        carry a rate limit (``Flow.rate_key``), waiting ones included; it wins over the
        rate they were sent with (``app.control.rate_limit``)."""

    # -- paused queues ---------------------------------------------------------------

    @abc.abstractmethod
    def pause_queue(self, queue: str) -> bool:
        """Stop claims from ``queue`` (it still takes messages), until resumed; stored,
        so it holds across worker restarts. Returns False when it was paused already."""

    @abc.abstractmethod
    def resume_queue(self, queue: str) -> bool:
        """Let workers claim from ``queue`` again; False when it was not paused."""

    @abc.abstractmethod
    def paused_queues(self) -> list[str]:
        """The names of the paused queues, sorted."""

    # -- workers ---------------------------------------------------------------------

    @abc.abstractmethod
    def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker as alive."""

    @abc.abstractmethod
    def heartbeat(self, worker_id: str, lease_seconds: float, info: dict[str, Any]) -> int:
        """Mark the worker alive and renew its leases (as :meth:`extend_leases`)."""

    @abc.abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker's record."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Registered workers, most recent heartbeat first."""


__all__ = [
    "COUNTS_KEPT",
    "LOST",
    "RUNTIME_BUCKETS",
    "BeatEntry",
    "ControlCommand",
    "Delivery",
    "InFlight",
    "LeaseRef",
    "Listener",
    "LostTaskPolicy",
    "QueueDepth",
    "ReapReport",
    "ResultRecord",
    "Revocation",
    "Settlement",
    "StoredMessage",
    "Tally",
    "TaskCount",
    "Transport",
    "Waiter",
    "WorkerInfo",
    "runtime_bucket",
]
