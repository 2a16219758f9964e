"""Periodic tasks with beat (seed 003): a beat_schedule entry and add_periodic_task.

The schedule lives in the same store, so two beats never fire a tick twice.
"""

import os
from datetime import datetime, timezone

from liteq import Celery, crontab

app = Celery("tasks", broker=os.environ.get("BROKER_URL", "sqlite:///tasks.db"))
app.conf.timezone = "UTC"
app.conf.beat_schedule = {
    "tick-every-second": {
        "task": "tasks.tick",
        "schedule": 1.0,
        "args": ("beat_schedule",),
    },
    "report-every-monday-morning": {
        "task": "tasks.tick",
        "schedule": crontab(hour=7, minute=30, day_of_week=1),
        "args": ("weekly report",),
    },
}


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    sender.add_periodic_task(2.0, tick.s("add_periodic_task"), name="tick every 2s")


@app.task
def tick(source):
    line = f"{datetime.now(timezone.utc):%H:%M:%S} {source}"
    with open("ticks.log", "a") as out:
        out.write(line + "\n")
    return line
