"""Messages written straight into the store by an attacker or a broken producer: each
ends FAILURE at once with a DecodeError naming the bad field, no pool process dies, and
the worker goes on."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import liteq
from bench.chaos.raw import good_columns, write
from liteq.testing import wait_for
from tests.conftest import Project

#: (case, column overrides, what the failure names)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("retries-text", {"header": b'{"v":1,"retries":"x"}'}, "'retries'"),
    ("retries-huge", {"header": b'{"v":1,"retries":' + b"9" * 30 + b"}"}, "'retries'"),
    ("headers-number", {"header": b'{"v":1,"headers":5}'}, "'headers'"),
    ("options-list", {"header": b'{"v":1,"options":[1]}'}, "'options'"),
    ("options-chain", {"header": b'{"v":1,"options":{"chain":5}}'}, "'options.chain'"),
    ("options-chord", {"header": b'{"v":1,"options":{"chord":"x"}}'}, "'options.chord'"),
    ("timelimit-text", {"header": b'{"v":1,"timelimit":"10"}'}, "'timelimit'"),
    ("timelimit-items", {"header": b'{"v":1,"timelimit":["a", 1]}'}, "'timelimit'"),
    ("eta-text", {"header": b'{"v":1,"eta":"tomorrow"}'}, "'eta'"),
    ("root-number", {"header": b'{"v":1,"root_id":5}'}, "'root_id'"),
    ("expires-text", {"expires": "soon"}, "'expires'"),
    ("priority-text", {"priority": "high"}, "'priority'"),
    ("huge-int-body", {"body": b"[[" + b"9" * 5000 + b"], {}]"}, "4300 digits"),
    ("deep-body", {"body": b"[[" + b"[" * 50_000 + b"]" * 50_000 + b"], {}]"},
     "recursion"),
    ("lone-surrogate", {"body": b'[["\\udb59"], {}]'}, "lone surrogate"),
    ("kwargs-names", {"body": b"[[], {\"1\": 1, \"\": 2}]"}, "unexpected keyword"),
]


def _final(app: liteq.LiteQ, task_id: str) -> Any:
    res = app.AsyncResult(task_id)
    return res if res.state in ("SUCCESS", "FAILURE", "REVOKED") else None


def test_malformed_fields_fail_at_once_naming_the_field(project: Project) -> None:
    tasks = project.module()
    tasks.app.broker.depth()  # the store exists (its tables) before the raw writes
    name = f"{tasks.__name__}.add"
    ids = {case: str(uuid.uuid4()) for case, _, _ in CASES}
    messages = []
    for case, overrides, _ in CASES:
        columns = {**good_columns(ids[case], name, [1, 2]), **overrides}
        messages.append(columns)
    write(str(project.db) if project.transport == "sqlite" else project.broker_url, messages)
    worker = project.worker("-c", "2", pool="prefork")
    for case, _, named in CASES:
        res = wait_for(lambda task_id=ids[case]: _final(tasks.app, task_id), timeout=30,
                       message=case)
        assert res.state == "FAILURE", case
        error = res.get(propagate=False)
        assert named in str(error), (case, error)
    assert tasks.add.delay(20, 22).get(timeout=15) == 42  # the worker went on
    log = worker.output()
    assert "WorkerLostError" not in log and "lost its worker process" not in log, log
    assert "was killed" not in log and "exited with code" not in log, log


def test_a_text_priority_is_failed_not_left_waiting(project: Project) -> None:
    tasks = project.module()
    tasks.app.broker.depth()
    task_id = str(uuid.uuid4())
    columns = {**good_columns(task_id, f"{tasks.__name__}.add", [1, 2]), "priority": "high"}
    write(str(project.db) if project.transport == "sqlite" else project.broker_url, [columns])
    project.worker()
    res = wait_for(lambda: _final(tasks.app, task_id), timeout=30)
    assert res.state == "FAILURE"
    assert "priority" in str(res.get(propagate=False))
    wait_for(lambda: not any(d.total for d in tasks.app.broker.depth().values()), timeout=10)
    assert tasks.add.delay(1, 1).get(timeout=15) == 2


@pytest.mark.sqlite_only(reason="rows in states and types only a SQLite writer can leave")
def test_unreachable_rows_are_shown_by_doctor_and_failed_with_a_reason(
        project: Project) -> None:
    tasks = project.module()
    tasks.app.broker.depth()
    name = f"{tasks.__name__}.add"
    cases = {
        "unknown state": {"state": 7},
        "text eta": {"state": 2, "run_at": "tomorrow"},
        "leased without holder": {"state": 1},
        "blob queue": {"queue": b"celery"},
    }
    ids = {case: str(uuid.uuid4()) for case in cases}
    write(str(project.db), [{**good_columns(ids[case], name, [1, 2]), **overrides}
                            for case, overrides in cases.items()])
    shown = project.liteq("doctor", project.location)
    assert shown.returncode == 1
    assert "fail  unreachable: 4 stored message(s) no worker can claim" in shown.stdout, \
        shown.stdout
    project.worker()
    for case, task_id in ids.items():
        res = wait_for(lambda task_id=task_id: _final(tasks.app, task_id), timeout=30,
                       message=case)
        assert res.state == "FAILURE", case
        error = str(res.get(propagate=False))
        # a lease without holder may be reaped as lost first (no live leases then)
        assert "can never be claimed" in error or (
            case == "leased without holder" and "acks_late is off" in error), (case, error)
    assert tasks.add.delay(1, 1).get(timeout=15) == 2
    after = project.liteq("doctor", project.location)
    assert "ok    unreachable: every stored message can be claimed" in after.stdout, \
        after.stdout
