from proj.celery import app


@app.task(bind=True)
def transcode(self, name):
    return {"value": f"{name}.mp4", "worker": self.request.hostname}
