"""Where outcomes are stored: the one place that decides it.

Results live in the broker's own store (SQLite file, Redis) unless
``result_backend`` names another. With the broker, a final result is stored in the
same transaction that acks its message (:class:`~liteq.transports.base.Settlement`);
elsewhere, it is stored first and the message acked after (at least once: a crash
in between stores it twice, never loses it). :class:`OutcomeStore` makes that choice
for every writer: the consumer's batches, the supervisor's killed tasks,
``liteq.testing.drain``, STARTED and ``update_state`` while a task runs, and records
written outside any message (revocations, chord bodies that cannot run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from liteq.execute import DEFERRED, Outcome
from liteq.transports.base import Delivery, LeaseRef, ResultRecord, Settlement, Tally

if TYPE_CHECKING:
    from liteq.app import LiteQ


class OutcomeStore:
    """Turns outcomes into what is stored, for one app.

    Example:
        >>> store = OutcomeStore(app)  # doctest: +SKIP
        >>> app.broker.settle(store.settlements([(delivery, outcome)]))  # doctest: +SKIP
    """

    def __init__(self, app: LiteQ) -> None:
        self.app = app

    def settlements(
        self, finished: Sequence[tuple[Delivery | LeaseRef, Outcome]],
    ) -> list[Settlement]:
        """How each finished message ends; results that live apart from the broker are
        stored now, before the caller settles (acks) the messages.

        A DEFERRED outcome (its rate limit had no token) goes back to wait as scheduled
        until ``defer_until``; ``Reject(requeue=True)`` goes back with its delivery
        counted.
        """
        with_broker = self.app.results_with_broker
        settlements, apart = [], []
        for delivery, outcome in finished:
            if outcome.state == DEFERRED:  # rate limited: wait in the queue, not here
                settlements.append(Settlement(delivery, release=True,
                                              release_at=outcome.defer_until))
                continue
            record = outcome.record
            if record is not None and not with_broker:
                apart.append(record)
                record = None
            settlements.append(Settlement(delivery, record, outcome.publish,
                                          release=outcome.requeue,
                                          redeliver=outcome.requeue,
                                          tally=None if outcome.requeue else
                                          _tally(delivery, outcome)))
        if apart:
            self.app.backend.store_results(apart)
        return settlements

    def settle(self, delivery: Delivery | LeaseRef, outcome: Outcome) -> list[bool]:
        """Store one outcome and ack its message (see :meth:`settlements`); returns
        whether the lease was still held."""
        return self.app.broker.settle(self.settlements([(delivery, outcome)]))

    def interim(self, record: ResultRecord, delivery: Delivery | None) -> None:
        """Store a state while the task runs (STARTED, ``update_state``): never over a
        final one, and, in the broker's store, only while ``delivery``'s lease is held
        (the lease fences the write only where it lives)."""
        fence = delivery if delivery is not None and self.app.results_with_broker else None
        self.app.backend.store_result(record, fence=fence)

    def store(self, records: Sequence[ResultRecord]) -> None:
        """Store final records that belong to no claimed message (a revocation, a chord
        body that will not run, an eager result)."""
        if records:
            self.app.backend.store_results(records)


def _tally(delivery: Delivery | LeaseRef, outcome: Outcome) -> Tally:
    """What the per-minute counters count for a finished task (written by the broker in
    the settle transaction, ``ignore_result`` tasks included). A supervisor's lease
    (a killed task) has no envelope: the record names the task."""
    name = delivery.envelope.task_name if isinstance(delivery, Delivery) else \
        (outcome.record.task_name if outcome.record is not None else None)
    ran = outcome.runtime > 0.0  # 0.0: ended before running (revoked, unrunnable, killed)
    return Tally(name or "unknown", outcome.state, outcome.runtime if ran else None)


__all__ = ["OutcomeStore"]
