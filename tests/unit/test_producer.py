"""The app's producer without a worker: calls become messages, stored in one transaction.

The producer is a component the app owns (``app.producer``); the app's ``send_task``,
``build_message`` and ``publish`` are the same calls. Messages are read back from the
real store (``depth()``, a claim), as a worker would see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import LiteQ
from liteq.producer import Producer

QUEUE = "celery"


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[LiteQ]:
    app = LiteQ("unit", broker=f"sqlite:///{tmp_path / 'queue.db'}", set_as_current=False)
    yield app
    app.close()


def test_the_app_owns_one_producer_and_sends_through_it(app: LiteQ) -> None:
    assert isinstance(app.producer, Producer)
    result = app.send_task("unit.add", (2, 2), countdown=60)
    assert result.app is app
    assert app.broker.depth([QUEUE])[QUEUE].scheduled == 1
    assert app.broker.claim([QUEUE], 1, "unit@host:1", 60.0) == []  # not due yet


def test_routes_and_priority_limits_are_read_from_the_settings_and_follow_changes(
    app: LiteQ,
) -> None:
    app.conf.task_routes = {"unit.*": {"queue": "low"}}
    app.conf.task_queue_max_priority = 5
    message = app.producer.build_message("unit.add", (1, 1), priority=9)
    assert (message.queue, message.priority) == ("low", 5)

    app.conf.task_routes = None  # a change of the settings is seen by the next send
    assert app.producer.build_message("unit.add", (1, 1)).queue == QUEUE


def test_many_calls_are_stored_in_one_transaction_in_order(app: LiteQ) -> None:
    ids, ignored = app.producer.publish_calls("unit.add", [((n, n), {}) for n in range(5)])
    assert not ignored
    assert len(set(ids)) == 5
    claimed = app.broker.claim([QUEUE], 10, "unit@host:1", 60.0)
    assert [d.task_id for d in claimed] == ids


def test_bad_options_and_arguments_are_refused_and_store_nothing(app: LiteQ) -> None:
    with pytest.raises(TypeError, match="unexpected option"):
        app.send_task("unit.add", (1, 1), colour="red")
    with pytest.raises(TypeError, match="args must be a list or a tuple"):
        app.send_task("unit.add", 1)  # type: ignore[arg-type]
    depth = app.broker.depth([QUEUE]).get(QUEUE)
    assert depth is None or depth.total == 0


class Abort(Exception):
    """Ends the caller's transaction with a rollback."""


def test_a_transaction_hook_makes_a_send_part_of_the_callers_transaction(
    app: LiteQ,
) -> None:
    asked: list[LiteQ] = []
    with pytest.raises(Abort), app.transaction() as conn:
        app.transaction_hooks.append(lambda hooked: asked.append(hooked) or conn)
        try:
            app.send_task("unit.add", (1, 2))
        finally:
            app.transaction_hooks.clear()
        assert conn.execute("SELECT count(*) FROM liteq_messages").fetchone() == (1,)
        raise Abort
    assert asked == [app]
    depth = app.broker.depth([QUEUE]).get(QUEUE)
    assert depth is None or depth.total == 0  # rolled back with the caller's work
