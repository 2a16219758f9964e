"""``"liteq.contrib.django"`` in ``INSTALLED_APPS``: the ``liteq`` management command,
task discovery as soon as Django's app registry is ready, and liteq's tables created
by ``manage.py migrate`` when the broker is a Django database's file."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db import connections
from django.db.models.signals import post_migrate

from liteq.config import load_object
from liteq.contrib.django import fixups
from liteq.contrib.django.transactions import broker_path, sqlite_path
from liteq.exceptions import LiteQError

logger = logging.getLogger(__name__)


class LiteQConfig(AppConfig):  # type: ignore[misc]
    """liteq's Django app (no models)."""

    name = "liteq.contrib.django"
    label = "liteq"
    verbose_name = "liteq"

    def ready(self) -> None:
        for installed in list(fixups.installed):
            installed.discover()  # models are loaded: task modules may use them
        # every app with models sends it (this one has none): opening is idempotent
        post_migrate.connect(create_liteq_tables,
                             dispatch_uid="liteq.contrib.django.create_liteq_tables")


def create_liteq_tables(using: str = "default", **_: Any) -> None:
    """After ``migrate``: create liteq's tables in the migrated database if it is the
    broker's file (of an app with the fix-up, or of the ``django.tasks`` backend), so a
    first task sent inside a transaction never waits for them."""
    path = sqlite_path(connections[using].settings_dict)
    if path is None:
        return
    apps = [installed.app for installed in list(fixups.installed)] + _tasks_backend_apps()
    for app in apps:
        try:
            if broker_path(app) == path:
                app.broker.open()
        except LiteQError as exc:
            logger.warning("liteq's tables not created in %s: %s", path, exc)


def _tasks_backend_apps() -> list[Any]:
    """The app of the project's ``django.tasks`` liteq backend, if it has one."""
    if not getattr(settings, "TASKS", None) or not (
            importlib.util.find_spec("django.tasks") or importlib.util.find_spec("django_tasks")):
        return []
    # Imported here: the tasks framework is optional (Django 6 or the backport).
    tasks = importlib.import_module("liteq.contrib.django.tasks")
    path = tasks.backend_app_path()
    return [load_object(path)] if path else []


__all__ = ["LiteQConfig", "create_liteq_tables"]
