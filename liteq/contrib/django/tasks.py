"""A backend for Django's tasks framework that runs tasks on liteq workers.

``django.tasks`` (Django 6.0+) or, on older Django, the ``django-tasks`` backport::

    TASKS = {
        "default": {
            "BACKEND": "liteq.contrib.django.tasks.LiteQBackend",
            "QUEUES": ["default", "emails"],           # optional, as for any backend
            "OPTIONS": {"app": "proj.celery:app"},     # optional: the liteq app to use
        }
    }

Without ``OPTIONS["app"]`` the backend has its own app (``liteq.contrib.django.tasks:app``)
configured from the ``CELERY_*`` settings, its broker ``CELERY_BROKER_URL`` or else
``django://default`` (Django's own SQLite file). ``python manage.py liteq worker``
runs the tasks.

How the framework maps onto liteq:

- ``enqueue()`` / ``aenqueue()`` send one liteq message whose id is the result's id;
  inside ``transaction.atomic()`` on the broker's file it joins the transaction.
- ``priority`` (-100..100, higher first) is the message's priority (liteq runs higher
  first too); ``run_after`` is its eta; ``queue_name`` its queue, except that Django's
  ``"default"`` queue is the app's default queue (``task_default_queue``).
- ``get_result()`` / ``refresh()``: READY until a worker starts the task, RUNNING while
  it runs, then SUCCESSFUL (``return_value``, JSON-normalized) or FAILED (``errors``
  holds the exception's class path and traceback; a revoked task, or one whose worker
  was lost, is FAILED too). ``worker_ids`` holds one worker node name per attempt
  (``attempts``), ``enqueued_at``/``started_at``/``last_attempted_at``/``finished_at``
  are stored. An unknown id raises ``TaskResultDoesNotExist``.
- ``takes_context=True`` tasks get a ``TaskContext`` (``context.attempt``,
  ``context.task_result``); async task functions run; the framework's
  ``task_enqueued``/``task_started``/``task_finished`` signals are sent.
- Results expire with the app's ``result_expires`` (default one day).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import threading
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from liteq.app import LiteQ
from liteq.config import load_object
from liteq.messages import new_id
from liteq.states import FAILURE, PENDING, REVOKED, STARTED, SUCCESS
from liteq.task import Task as LiteQTask
from liteq.task import shared_tasks
from liteq.task_factory import make_task
from liteq.transports.base import ResultRecord

#: The framework: Django's own (6.0+) or the django-tasks backport.
FRAMEWORK = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"


def _framework_name(name: str) -> Any:
    for module in ("", ".base", ".task", ".backends.base", ".exceptions", ".signals"):
        if importlib.util.find_spec(FRAMEWORK + module) is None:
            continue
        found = getattr(importlib.import_module(FRAMEWORK + module), name, None)
        if found is not None:
            return found
    raise ImportError(f"{FRAMEWORK} has no {name}")


BaseTaskBackend = _framework_name("BaseTaskBackend")
TaskContext = _framework_name("TaskContext")
TaskError = _framework_name("TaskError")
TaskResult = _framework_name("TaskResult")
TaskResultStatus = _framework_name("TaskResultStatus")
TaskResultDoesNotExist = _framework_name("TaskResultDoesNotExist")
task_backends = _framework_name("task_backends")
_framework_signals = importlib.import_module(FRAMEWORK + ".signals")
DEFAULT_QUEUE = "default"

#: The liteq task that runs a framework task on a worker.
RUNNER = "liteq.django_task"
#: Suffix of the id under which a task's framework fields are stored.
META = ":django-task"

#: liteq states -> the framework's statuses (anything else: READY)
_STATUS: dict[str, str] = {SUCCESS: "SUCCESSFUL", FAILURE: "FAILED", REVOKED: "FAILED",
                           STARTED: "RUNNING"}

_default_app: LiteQ | None = None
_default_lock = threading.Lock()


def default_app() -> LiteQ:
    """The backend's own app: ``CELERY_*`` settings, broker ``django://default`` unless
    ``CELERY_BROKER_URL`` names one."""
    global _default_app
    with _default_lock:
        if _default_app is None:
            app = LiteQ("django_tasks", set_as_current=False)
            app.config_from_object("django.conf:settings", namespace="CELERY")
            if not app.conf.broker_url:
                app.conf.broker_url = "django://default"
            _default_app = app
        return _default_app


def __getattr__(name: str) -> Any:  # ``liteq.contrib.django.tasks:app`` for -A
    if name == "app":
        return default_app()
    raise AttributeError(name)


def backend_app_path() -> str | None:
    """The ``-A`` path of the app of the first liteq backend in ``TASKS``, if any."""
    for entry in (getattr(settings, "TASKS", None) or {}).values():
        backend = import_string(entry.get("BACKEND", "")) if entry.get("BACKEND") else None
        if isinstance(backend, type) and issubclass(backend, LiteQBackend):
            path = (entry.get("OPTIONS") or {}).get("app")
            return str(path) if path else f"{__name__}:app"
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LiteQBackend(BaseTaskBackend):  # type: ignore[misc,valid-type]
    """Runs Django's tasks on liteq workers (see the module's docstring)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = params.get("OPTIONS") or {}
        unknown = set(options) - {"app"}
        if unknown:
            raise TypeError(f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) "
                            f"{', '.join(sorted(unknown))} (liteq takes 'app')")
        self._app_path: str | None = options.get("app")
        self._app: LiteQ | None = None

    @property
    def app(self) -> LiteQ:
        """The liteq app the tasks are sent with."""
        if self._app is None:
            app = load_object(self._app_path) if self._app_path else default_app()
            if not isinstance(app, LiteQ):
                raise TypeError(f"OPTIONS['app'] = {self._app_path!r} is not a liteq app")
            self._app = app
        return self._app

    # -- sending ---------------------------------------------------------------------

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        result = TaskResult(
            task=task, id=new_id(), status=TaskResultStatus.READY, enqueued_at=_now(),
            started_at=None, finished_at=None, last_attempted_at=None, args=list(args),
            kwargs=dict(kwargs), backend=self.alias, errors=[], worker_ids=[],
        )
        app = self.app
        message = app.producer.build_message(
            RUNNER, (task.module_path, result.args, result.kwargs, self.alias,
                     task.takes_context),
            task_id=result.id, priority=task.priority, eta=task.run_after,
            queue=(app.conf.task_default_queue if task.queue_name == DEFAULT_QUEUE
                   else task.queue_name),
        )
        record = self._meta_record(result, task, {"worker_ids": [], "started_at": None})
        self._send(app, record, message)
        _framework_signals.task_enqueued.send(type(self), task_result=result)
        return result

    def _send(self, app: LiteQ, record: ResultRecord, message: Any) -> None:
        """Store the task's fields and its message together (all or nothing)."""
        joined = next((c for c in (hook(app) for hook in app.transaction_hooks) if c), None)
        if joined is not None:  # inside Django's transaction on the broker's file
            app.backend.store_result_on(joined, record)  # type: ignore[attr-defined]
            app.producer.publish([message], connection=joined)
        elif app.results_with_broker and app.broker.supports_app_transactions:
            with app.transaction():
                app.backend.store_result(record)
                app.producer.publish([message])
        else:
            app.backend.store_result(record)
            try:
                app.producer.publish([message])
            except BaseException:
                app.backend.forget([record.task_id])
                raise

    def _meta_record(self, result: Any, task: Any, progress: dict[str, Any]) -> ResultRecord:
        app = self.app
        fields = {
            "task": task.module_path, "priority": task.priority, "queue": task.queue_name,
            "run_after": _iso(task.run_after), "enqueued_at": _iso(result.enqueued_at),
            "args": result.args, "kwargs": result.kwargs, **progress,
        }
        expires = app.result_expires
        if expires and task.run_after is not None:
            expires += max(0.0, (task.run_after - _now()).total_seconds())
        return ResultRecord(
            task_id=result.id + META, state=PENDING, payload=json.dumps(fields).encode(),
            date_done=_now().timestamp(), task_name=RUNNER, expires_in=expires,
        )

    # -- results ---------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        backend = self.app.backend
        meta_record = backend.get_result(str(result_id) + META)
        if meta_record is None:
            raise TaskResultDoesNotExist(result_id)
        fields = json.loads(meta_record.payload)
        task = import_string(fields["task"])
        changes = {"priority": fields["priority"], "queue_name": fields["queue"]}
        if fields.get("run_after"):
            changes["run_after"] = _when(fields["run_after"])
        task = task.using(**changes)
        record = backend.get_result(str(result_id))
        state = str(record.state) if record is not None else str(PENDING)
        status = _STATUS.get(state, "READY")
        errors = []
        if status == "FAILED" and record is not None:
            errors.append(_task_error(self.app, record))
        result = TaskResult(
            task=task, id=str(result_id), status=TaskResultStatus(status),
            enqueued_at=_when(fields["enqueued_at"]), started_at=_when(fields["started_at"]),
            finished_at=(datetime.fromtimestamp(record.date_done, timezone.utc)
                         if record is not None and status in ("SUCCESSFUL", "FAILED")
                         else None),
            last_attempted_at=_when(fields.get("last_attempted_at")),
            args=fields["args"], kwargs=fields["kwargs"], backend=self.alias,
            errors=errors, worker_ids=list(fields["worker_ids"]),
        )
        if status == "SUCCESSFUL" and record is not None:
            object.__setattr__(result, "_return_value", self.app.AsyncResult(result.id).result)
        return result

    def check(self, **kwargs: Any) -> Any:
        return []


def _task_error(app: LiteQ, record: ResultRecord) -> Any:
    try:
        info = json.loads(record.payload)
    except ValueError:
        info = {}
    if isinstance(info, dict) and info.get("exc_type"):
        path = f"{info.get('exc_module') or 'builtins'}.{info['exc_type']}"
    else:
        path = "liteq.exceptions.TaskRevokedError" if record.state == REVOKED else \
            "builtins.Exception"
    return TaskError(exception_class_path=path,
                     traceback=record.traceback or f"{record.state}: {info}")


# -- the worker side -----------------------------------------------------------------


def run_django_task(self: LiteQTask[Any, Any], module_path: str, args: list[Any],
                    kwargs: dict[str, Any], alias: str, takes_context: bool) -> Any:
    """Run a framework task on a worker: record the attempt, call it, send signals."""
    backend = task_backends[alias]
    app = backend.app
    meta_id = f"{self.request.id}{META}"
    stored = app.backend.get_result(meta_id)
    fields: dict[str, Any] = json.loads(stored.payload) if stored is not None else {
        "task": module_path, "priority": 0, "queue": DEFAULT_QUEUE, "run_after": None,
        "enqueued_at": None, "args": args, "kwargs": kwargs, "worker_ids": [],
    }
    started = _now()
    fields["worker_ids"] = [*fields.get("worker_ids", []), self.request.hostname or "liteq"]
    fields["last_attempted_at"] = _iso(started)
    fields["started_at"] = fields.get("started_at") or _iso(started)
    app.backend.store_result(dataclasses.replace(
        stored if stored is not None else ResultRecord(task_id=meta_id, state=PENDING),
        payload=json.dumps(fields).encode(), date_done=started.timestamp(),
        expires_in=app.result_expires,
    ))
    task = import_string(module_path)
    result = backend.get_result(self.request.id)
    _framework_signals.task_started.send(sender=type(backend), task_result=result)
    try:
        if takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = _normalize(value)
    except BaseException:
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        _framework_signals.task_finished.send(sender=type(backend), task_result=result)
        raise
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    _framework_signals.task_finished.send(sender=type(backend), task_result=result)
    return value


def _normalize(value: Any) -> Any:
    normalize = getattr(importlib.import_module(FRAMEWORK + ".utils"), "normalize_json", None)
    if normalize is None:  # Django 6.0 keeps it in django.utils.json
        normalize = import_string("django.utils.json.normalize_json")
    return normalize(value)


shared_tasks[RUNNER] = make_task(run_django_task, app=None, name=RUNNER, bind=True,
                                 track_started=True)

__all__ = ["FRAMEWORK", "RUNNER", "LiteQBackend", "backend_app_path", "default_app"]
