"""The quickstart's tasks: one app on a SQLite file, two tasks."""

from liteq import LiteQ

app = LiteQ("tasks", broker="sqlite:///tasks.db")


@app.task
def add(x, y):
    return x + y


@app.task
def word_count(text):
    return len(text.split())
