from __future__ import annotations

import os

from liteq import Celery  # the one changed import

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# Settings come from Django's, every name prefixed CELERY_.
app.config_from_object("django.conf:settings", namespace="CELERY")

# Find tasks.py in every installed app.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
