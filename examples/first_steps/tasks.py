"""Celery's "First Steps" with liteq: one app, one task, results in the same file.

Set ``BROKER_URL=redis://localhost:6379/0`` to run the same code on Redis.
"""

import os

from liteq import Celery

app = Celery("tasks", broker=os.environ.get("BROKER_URL", "sqlite:///tasks.db"))


@app.task
def add(x, y):
    return x + y


@app.task
def divide(x, y):
    return x / y
