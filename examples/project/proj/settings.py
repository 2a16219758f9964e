"""The project's settings, in the old upper-case names real projects still use
(seed 001 and 004): liteq reads them as Celery does."""

import os

BROKER_URL = os.environ.get("BROKER_URL", "sqlite:///proj.db")
CELERYD_MAX_TASKS_PER_CHILD = 100     # recycle a pool process after 100 tasks
CELERYD_PREFETCH_MULTIPLIER = 1       # claim one task at a time: spread work evenly
CELERY_TASK_RESULT_EXPIRES = 600      # keep results ten minutes
CELERY_TIMEZONE = "Asia/Shanghai"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ROUTES = {"proj.tasks.report": {"queue": "reports"}}
