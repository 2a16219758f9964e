"""Queues, exchanges and routes as in seed 000 §3 (kombu's names come from liteq)."""

import os

from liteq import Celery, Exchange, Queue

app = Celery("proj", broker=os.environ.get("BROKER_URL", "sqlite:///proj.db"),
             include=["proj.tasks", "proj.videos", "proj.images"])
app.conf.task_default_queue = "default"
app.conf.task_queues = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("videos", Exchange("media"), routing_key="media.video"),
    Queue("images", Exchange("media"), routing_key="media.image"),
)
app.conf.task_routes = {
    "proj.tasks.*": {"queue": "default"},
    "proj.videos.*": {"queue": "videos"},
    "proj.images.*": {"queue": "images"},
}
