"""The Django fix-up: what a liteq app does differently inside a Django project.

Installed by :func:`liteq.contrib.django.fixup` when an app is created with
``DJANGO_SETTINGS_MODULE`` set. Behaviour follows Celery's Django fix-up:

- The app's default task class becomes :class:`~liteq.contrib.django.task.DjangoTask`
  (``delay_on_commit``), unless the app was given its own ``task_cls``.
- ``autodiscover_tasks()`` waits for Django's app registry: it runs when the app is
  finalized (a worker, a prefork child or beat starts: ``django.setup()`` is called
  first), when ``autodiscover_tasks()`` is called after the registry is ready, or at
  the first request a Django server handles.
- Shared tasks found by discovery are registered on the app, so the worker's banner
  and ``inspect registered`` list them.
- Workers close stale or broken database connections before and after each task
  (``close_old_connections``, as Django does around each request; ``CONN_MAX_AGE``
  is honoured) and close Django's caches after each; the worker's main process closes
  its connections before it forks, and a forked child drops (never closes, never
  uses) any connection it inherited.
- ``delay()`` inside ``transaction.atomic()`` joins Django's transaction when the
  broker is the same SQLite file (:mod:`liteq.contrib.django.transactions`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any

import django
from django.apps import apps as django_apps
from django.core.cache import close_caches
from django.core.signals import request_started
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

from liteq import signals
from liteq.contrib.django.task import DjangoTask
from liteq.contrib.django.transactions import django_transaction, open_broker_with
from liteq.exceptions import ImproperlyConfigured
from liteq.task import Task, shared_tasks

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger(__name__)

#: The fix-ups installed in this process (``LiteQConfig.ready`` runs their discovery).
installed: weakref.WeakSet[DjangoFixup] = weakref.WeakSet()

#: Connections inherited across fork(): kept referenced so they are never closed (a
#: collected connection closes itself, which would disturb the parent's).
_inherited: list[Any] = []


class DjangoFixup:
    """Adapts one app to the Django project of this process."""

    def __init__(self, app: LiteQ) -> None:
        self.app = app
        self._worker_installed = False

    def install(self) -> DjangoFixup:
        app = self.app
        # The project directory comes first on the path, as with manage.py.
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        if app.task_cls is Task:
            app.task_cls = DjangoTask
        app.transaction_hooks.append(django_transaction)
        # Django holds these receivers weakly: they go with the app and its fix-up.
        connection_created.connect(self._on_connection_created)
        request_started.connect(self._on_request_started)
        installed.add(self)
        return self

    # -- task discovery --------------------------------------------------------------

    def on_discovery_requested(self) -> None:
        """``autodiscover_tasks()`` was called: run it now if Django is ready."""
        if django_apps.ready:
            self.discover()

    def discover(self) -> None:
        """Import the waiting task modules and register the shared tasks found."""
        self.app.discover_pending()
        for name, task in list(shared_tasks.items()):
            self.app.tasks.setdefault(name, task)

    def _on_connection_created(self, sender: Any = None, connection: Any = None,
                               **_: Any) -> None:
        open_broker_with(self.app, connection)

    def _on_request_started(self, **_: Any) -> None:
        if self.app.pending_discovery:
            self.discover()

    def on_finalize(self) -> None:
        """The app is being finalized (a worker, a prefork child or beat starts): set
        Django up first, then discover the tasks.

        Raises:
            ImproperlyConfigured: Django cannot be set up, or a task module fails to
                import (one line naming the error, for the command line).
        """
        try:
            django.setup()
        except Exception as exc:
            raise ImproperlyConfigured(
                f"Django could not be set up ({os.environ.get('DJANGO_SETTINGS_MODULE')}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.app.set_current()  # the worker's app, for shared tasks (set_as_current=False)
        try:
            self.discover()
        except Exception as exc:
            raise ImproperlyConfigured(
                f"autodiscover_tasks() failed: {type(exc).__name__}: {exc}"
            ) from exc
        if importlib.util.find_spec("django.tasks") or importlib.util.find_spec("django_tasks"):
            # the runner of Django's tasks framework (LiteQBackend), for this worker
            importlib.import_module("liteq.contrib.django.tasks")
        self._install_worker()

    # -- database connections in workers ---------------------------------------------

    def _install_worker(self) -> None:
        if self._worker_installed:
            return
        self._worker_installed = True
        # One receiver each per process, however many apps have the fix-up.
        signals.task_prerun.connect(_on_task_prerun, dispatch_uid=_on_task_prerun)
        signals.task_postrun.connect(_on_task_postrun, dispatch_uid=_on_task_postrun)
        signals.worker_process_init.connect(_on_worker_process_init,
                                            dispatch_uid=_on_worker_process_init)
        _close_all()  # before the pool forks: no connection to share


def _close_all() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.in_atomic_block:
            connection.close()
    close_caches()


def _on_worker_process_init(**_: Any) -> None:
    """In a prefork child: forget connections the parent may have had open."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None
    close_caches()


def _on_task_prerun(sender: Any = None, **_: Any) -> None:
    if not _is_eager(sender):
        close_old_connections()


def _on_task_postrun(sender: Any = None, **_: Any) -> None:
    if not _is_eager(sender):
        close_old_connections()
        close_caches()


def _is_eager(task: Any) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))


__all__ = ["DjangoFixup", "installed"]
