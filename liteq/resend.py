"""Sending a failed task again from its stored result (``liteq retry``, the console).

A task that failed in a worker keeps its call with its FAILURE or REVOKED record (the
``call`` of the record's extended fields: priority, headers, links). :func:`send_again`
sends that call under a new id and marks the old record with it, so it is retried once.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from liteq import serialization
from liteq.states import FAILURE, REVOKED
from liteq.transports.base import ResultRecord

if TYPE_CHECKING:
    from liteq.app import LiteQ


def extended_fields(record: ResultRecord) -> dict[str, Any]:
    """The record's extended fields (args, kwargs, queue, the kept call...), or {}."""
    if not record.extended:
        return {}
    try:
        data = serialization.json_loads(record.extended)
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


def recorded_call(record: ResultRecord) -> dict[str, Any] | None:
    """The call kept with a failure (None: it cannot be sent again)."""
    call = extended_fields(record).get("call")
    return call if isinstance(call, dict) else None


def not_retriable(record: ResultRecord) -> str | None:
    """Why the task of ``record`` cannot be sent again, or None when it can."""
    if record.state not in (FAILURE, REVOKED):
        return f"is {record.state}; only FAILURE and REVOKED tasks can be retried"
    if "retried_as" in extended_fields(record):
        return f"was retried already, as {extended_fields(record)['retried_as']}"
    if recorded_call(record) is None or not record.task_name:
        return ("its call was not kept: only tasks that failed in a worker can be sent "
                "again (not ones lost with their worker, killed by a time limit, or whose "
                "arguments json cannot hold)")
    return None


def send_again(app: LiteQ, record: ResultRecord) -> str:
    """Send the recorded call under a new id, then mark the old record with it; returns
    the new task id (check :func:`not_retriable` first)."""
    data = extended_fields(record)
    call = data["call"]
    result = app.send_task(
        str(record.task_name), data.get("args") or [], data.get("kwargs") or {},
        queue=data.get("queue"), priority=call.get("priority"),
        headers={**(call.get("headers") or {}), "retried_from": record.task_id},
        parent_id=data.get("parent_id"), root_id=data.get("root_id"),
        **(call.get("options") or {}),
    )
    marked = serialization.json_dumps({**data, "retried_as": result.id})
    app.outcome_store.store([dataclasses.replace(record, extended=marked)])
    return result.id


__all__ = ["extended_fields", "not_retriable", "recorded_call", "send_again"]
