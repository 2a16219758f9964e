"""Settings in a module of their own, as Celery's tutorial writes them (seed 000 §1.4).

Only the broker line differs: a SQLite file (or ``BROKER_URL``) instead of RabbitMQ.
"""

import os

broker_url = os.environ.get("BROKER_URL", "sqlite:///tasks.db")
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "Europe/Oslo"
enable_utc = True
task_routes = {
    "tasks.add": "low-priority",
}
task_annotations = {
    "tasks.add": {"rate_limit": "10/s"},
}
