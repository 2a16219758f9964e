"""The project's liteq app, laid out as Celery's Django guide lays it out."""
from __future__ import annotations

import os

from liteq import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # orders/tasks.py, imported once Django is ready
