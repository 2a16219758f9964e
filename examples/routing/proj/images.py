from proj.celery import app


@app.task(bind=True)
def thumbnail(self, name):
    return {"value": f"{name}-small.png", "worker": self.request.hostname}
