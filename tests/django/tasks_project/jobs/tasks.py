from __future__ import annotations

import asyncio

try:
    from django.tasks import task
except ImportError:  # Django < 6: the backport
    from django_tasks import task


@task
def add(x, y):
    return x + y


@task(priority=10)
def record(path, value):
    with open(path, "a") as handle:
        handle.write(f"{value}\n")
    return value


@task
def fail(message):
    raise ValueError(message)


@task(takes_context=True)
def whoami(context, tag):
    return {"id": context.task_result.id, "attempt": context.attempt, "tag": tag,
            "status": str(context.task_result.status)}


@task
async def slow_double(x):
    await asyncio.sleep(0.01)
    return 2 * x


@task
def tuple_value():
    return (1, 2)


@task(queue_name="reports")
def report():
    return "reported"
