"""A Flask app that sends tasks and reads their results (blocking calls are fine in
Flask's threaded server).

    liteq -A app worker -l info
    flask --app app:web run
"""

import os

from flask import Flask, jsonify, request

from liteq import LiteQ, TimeoutError

celery = LiteQ("app", broker=os.environ.get("BROKER_URL", "sqlite:///tasks.db"))


@celery.task
def word_count(text):
    return len(text.split())


web = Flask(__name__)


@web.post("/count")
def count():
    text = request.get_json(force=True).get("text", "")
    result = word_count.delay(text)
    return jsonify(task_id=result.id), 202


@web.get("/tasks/<task_id>")
def status(task_id):
    result = celery.AsyncResult(task_id)
    wait = float(request.args.get("wait", 0))
    if wait and not result.ready():
        try:
            result.get(timeout=wait, propagate=False)
        except TimeoutError:
            pass
    body = {"task_id": task_id, "state": str(result.state)}
    if result.successful():
        body["result"] = result.result
    elif result.failed():
        body["error"] = repr(result.result)
    return jsonify(body)


