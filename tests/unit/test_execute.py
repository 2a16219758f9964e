"""The execution path without a worker: ``prepare`` and ``execute`` are pure (a request
in, an outcome out), and ``run_delivery`` makes the two writes a task needs before its
outcome (the rate-limit token, STARTED). Messages are real: sent and claimed on a file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from liteq import LiteQ
from liteq.exceptions import NotRegistered
from liteq.execute import DEFERRED, Outcome, execute, prepare
from liteq.states import FAILURE, RETRY, REVOKED, STARTED, SUCCESS
from liteq.transports.base import Delivery, ResultRecord
from liteq.worker.running import run_delivery

QUEUE = "celery"
#: What the tasks below saw (reset per test).
seen: list[Any] = []


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[LiteQ]:
    app = LiteQ("unit", broker=f"sqlite:///{tmp_path / 'queue.db'}", set_as_current=False)

    @app.task(name="unit.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="unit.tracked", bind=True, track_started=True)
    def tracked(self: Any) -> str:
        record = app.backend.get_result(self.request.id)
        seen.append(record.state if record is not None else None)
        return "ran"

    @app.task(name="unit.again", bind=True, max_retries=3)
    def again(self: Any) -> None:
        raise self.retry(countdown=30)

    @app.task(name="unit.slow_rate", rate_limit="1/m")
    def slow_rate() -> str:
        return "ran"

    seen.clear()
    yield app
    app.close()


def _claim(app: LiteQ, name: str, *args: Any, **options: Any) -> Delivery:
    task_id = app.send_task(name, args, **options).id
    [delivery] = app.broker.claim([QUEUE], 10, "unit@host:1", 60.0)
    assert delivery.task_id == task_id
    return delivery


def test_prepare_gives_the_task_and_its_request(app: LiteQ) -> None:
    delivery = _claim(app, "unit.add", 2, 3)
    prepared = prepare(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert not isinstance(prepared, Outcome)
    message, task, request = prepared
    assert (message.task, task.name, request.args, request.hostname) == \
        ("unit.add", "unit.add", (2, 3), "unit@host")


def test_prepare_ends_an_unknown_task_as_a_failure_that_keeps_the_call(app: LiteQ) -> None:
    delivery = _claim(app, "unit.missing", 1)
    outcome = prepare(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert isinstance(outcome, Outcome)
    assert outcome.state == FAILURE
    assert isinstance(outcome.exception, NotRegistered)
    assert outcome.record is not None and outcome.record.extended is not None  # the call


def test_prepare_ends_an_expired_message_as_revoked(app: LiteQ) -> None:
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    delivery = _claim(app, "unit.add", 1, 1, expires=past)
    outcome = prepare(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert isinstance(outcome, Outcome)
    assert outcome.state == REVOKED
    assert "expired" in outcome.summary


def test_execute_stores_nothing_itself(app: LiteQ) -> None:
    delivery = _claim(app, "unit.add", 4, 4)
    prepared = prepare(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert not isinstance(prepared, Outcome)
    _, task, request = prepared
    outcome = execute(app, task, request)
    assert (outcome.state, outcome.value) == (SUCCESS, 8)
    assert outcome.record is not None and outcome.record.state == SUCCESS
    assert app.backend.get_result(delivery.task_id) is None  # the caller stores it


def test_execute_hands_started_to_its_caller_before_the_task_runs(app: LiteQ) -> None:
    delivery = _claim(app, "unit.tracked")
    prepared = prepare(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert not isinstance(prepared, Outcome)
    _, task, request = prepared
    started: list[ResultRecord] = []
    outcome = execute(app, task, request, on_started=started.append)
    assert outcome.state == SUCCESS
    assert [record.state for record in started] == [STARTED]
    assert seen == [None]  # handed over, not written


def test_a_retry_declares_the_message_that_runs_the_task_again(app: LiteQ) -> None:
    delivery = _claim(app, "unit.again")
    outcome = run_delivery(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert outcome.state == RETRY
    [envelope] = outcome.publish
    assert envelope.task_id == delivery.task_id
    assert envelope.eta is not None and envelope.eta > time.time() + 20
    assert outcome.exception is not None
    assert getattr(outcome.exception, "envelope", None) is envelope


def test_run_delivery_stores_started_while_the_task_runs(app: LiteQ) -> None:
    delivery = _claim(app, "unit.tracked")
    outcome = run_delivery(app, delivery, "unit@host", app.task_finder(import_on_demand=False))
    assert outcome.state == SUCCESS
    assert seen == [STARTED]


def test_a_rate_limited_task_without_a_token_is_not_claimed(app: LiteQ) -> None:
    find = app.task_finder(import_on_demand=False)
    first = run_delivery(app, _claim(app, "unit.slow_rate"), "unit@host", find)
    app.send_task("unit.slow_rate")
    assert first.state == SUCCESS
    # The claim decides: no token, no delivery (it is never claimed only to bounce).
    assert app.broker.claim([QUEUE], 10, "unit@host:1", 60.0) == []
    assert app.broker.depth([QUEUE])[QUEUE].blocked == 1


def test_run_delivery_defers_a_message_sent_without_its_rate_limit(app: LiteQ) -> None:
    # A message stored without a flow (sent before the task had its limit) takes its
    # token where it runs, as before flow control.
    find = app.task_finder(import_on_demand=False)
    for _ in range(2):
        message = app.producer.build_message("unit.slow_rate", (), {})
        app.producer.publish([dataclasses.replace(message, flow=None)])
    first, second = app.broker.claim([QUEUE], 10, "unit@host:1", 60.0)
    assert run_delivery(app, first, "unit@host", find).state == SUCCESS
    deferred = run_delivery(app, second, "unit@host", find)
    assert deferred.state == DEFERRED
    assert deferred.defer_until is not None and deferred.defer_until > time.time() + 30
