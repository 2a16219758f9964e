"""A Django project using Django's tasks framework (the django-tasks backport on
Django < 6) with liteq as the backend; no Celery-style app module."""
from __future__ import annotations

import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "not-secret-test-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_tasks",
    "liteq.contrib.django",
    "jobs",
]
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(BASE_DIR, "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# The broker: Django's own database file unless the test names another store.
CELERY_BROKER_URL = os.environ.get("TEST_BROKER_URL", "django://default")

TASKS = {
    "default": {
        "BACKEND": "liteq.contrib.django.tasks.LiteQBackend",
        "QUEUES": ["default", "reports"],
    }
}
