from proj.celery import app


@app.task(bind=True)
def add(self, x, y):
    return {"value": x + y, "worker": self.request.hostname}
