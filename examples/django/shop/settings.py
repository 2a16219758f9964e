"""Settings of the example shop: one Django app (orders) and liteq on Django's own
SQLite file."""
from __future__ import annotations

import os

import django

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "example-only-change-me"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "liteq.contrib.django",  # python manage.py liteq worker|beat|status|...
    "orders",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", os.path.join(BASE_DIR, "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
if django.VERSION >= (5, 1):
    # Take the write lock when a transaction starts: workers write to this file too.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# liteq: messages, results and the beat schedule live in Django's own database file,
# so a task sent inside transaction.atomic() exists if and only if it commits.
CELERY_BROKER_URL = "django://default"
CELERY_TASK_TRACK_STARTED = True
CELERY_BEAT_SCHEDULE = {
    "fulfil-waiting-orders": {
        "task": "orders.tasks.fulfil_waiting_orders",
        "schedule": float(os.environ.get("SHOP_SWEEP_SECONDS", "30")),
    },
}
