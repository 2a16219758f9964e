from __future__ import annotations

import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The other changed line: the broker URL (tests pass it in the environment).
CELERY_BROKER_URL = os.environ.get("TEST_BROKER_URL", "sqlite:///tasks.db")
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = os.environ.get("TEST_RESULT_BACKEND") or None
CELERY_TASK_SERIALIZER = "json"

SECRET_KEY = "not-secret-test-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "demoapp",
]
MIDDLEWARE = []
ROOT_URLCONF = "proj.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(BASE_DIR, "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TIME_ZONE = "UTC"
USE_TZ = True
