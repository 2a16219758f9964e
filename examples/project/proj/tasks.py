import os
import time

from proj.celery import app


@app.task(bind=True)
def crunch(self, n):
    time.sleep(0.05)  # some real work
    return {"sum": sum(range(n)), "worker": self.request.hostname, "pid": os.getpid()}


@app.task(bind=True)
def report(self, total):
    return f"report of {total} on {self.request.hostname.partition('@')[0]}"
