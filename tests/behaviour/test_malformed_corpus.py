"""The malformed-message corpus as a hypothesis strategy over the envelope: any field
of the wrong type, huge or deeply nested values, names of modules and builtins. Written
straight into the store; the worker survives and every message ends in a final state."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.chaos.raw import good_columns, write
from liteq.testing import wait_for
from tests.conftest import Project

FINAL = ("SUCCESS", "FAILURE", "REVOKED")
HEADER_FIELDS = ("retries", "root_id", "parent_id", "group", "origin", "ignore_result",
                 "exchange", "routing_key", "eta", "timelimit", "headers", "options")
OPTION_FIELDS = ("link", "link_error", "chain", "chord", "group_index", "argsrepr",
                 "kwargsrepr")
NAMES = ("os.system", "builtins.eval", "subprocess.run", "__import__", "liteq.app",
         "", "no.such.task", "tasks..add", "../etc/passwd")


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8) | st.integers(10, 400).map(_deep)  # deeper: test_hostile_messages


@st.composite
def malformed(draw: st.DrawFn, task_name: str) -> dict[str, Any]:
    """The columns of one message with some fields replaced by hostile values."""
    header: dict[str, Any] = {"v": 1}
    for name in draw(st.lists(st.sampled_from(HEADER_FIELDS), unique=True, max_size=4)):
        header[name] = draw(values)
    if draw(st.booleans()):
        header["options"] = {name: draw(values) for name in draw(
            st.lists(st.sampled_from(OPTION_FIELDS), unique=True, min_size=1, max_size=3))}
    columns = good_columns(str(uuid.uuid4()), task_name, [1, 2])
    columns["header"] = json.dumps(header, allow_nan=True).encode()
    if draw(st.booleans()):
        columns["task_name"] = draw(st.sampled_from(NAMES))
    if draw(st.booleans()):
        columns["body"] = json.dumps([draw(values), draw(values)], allow_nan=True).encode()
    if draw(st.integers(0, 5)) == 0:
        columns["priority"] = draw(st.one_of(st.text(max_size=5), st.floats()))
    if draw(st.integers(0, 5)) == 0:
        columns["expires"] = draw(st.one_of(st.text(max_size=5), st.just(time.time() - 60)))
    if draw(st.integers(0, 8)) == 0:
        columns["content_type"] = draw(st.sampled_from(
            ["application/x-python-serialize", "text/plain", "", "application/json; x"]))
    return columns


def test_every_malformed_message_ends_and_the_worker_survives(project: Project) -> None:
    tasks = project.module()
    tasks.app.broker.depth()
    name = f"{tasks.__name__}.add"
    location = str(project.db) if project.transport == "sqlite" else project.broker_url
    worker = project.worker("-c", "2", pool="prefork")

    @settings(max_examples=3, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],  # a failure is shown as found
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(malformed(name), min_size=10, max_size=25))
    def batch(messages: list[dict[str, Any]]) -> None:
        write(location, messages)
        if project.transport == "sqlite":  # a raw SQLite write wakes no worker by itself
            tasks.app.broker.notify_workers()
        for columns in messages:
            res = tasks.app.AsyncResult(columns["task_id"])
            try:
                wait_for(lambda res=res: res.state in FINAL, timeout=30)
            except TimeoutError:
                raise AssertionError(f"{columns} did not end:\n{worker.output()}") from None
        assert worker.returncode is None, worker.output()

    batch()
    assert tasks.add.delay(20, 22).get(timeout=15) == 42
    log = worker.output()
    assert "lost its worker process" not in log and "was killed" not in log, log
