"""An app configured from ``celeryconfig.py``: routes and a rate limit."""

from liteq import Celery

app = Celery("tasks")
app.config_from_object("celeryconfig")


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y
