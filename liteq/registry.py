"""The task registry: task name -> task, with import on demand.

A worker started on a database path alone (``liteq worker tasks.db``, no ``-A``)
imports a task's module the first time it meets the task: for ``tasks.add`` it imports
``tasks`` and takes its ``add`` attribute, which must be a liteq task. Nothing else is
ever called or imported from a message.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from typing import Any

from liteq.exceptions import NotRegistered

logger = logging.getLogger(__name__)

_MODULE_PATH = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")


class TaskRegistry(dict[str, Any]):
    """Registered tasks by name; a missing name raises :class:`NotRegistered`."""

    def __missing__(self, name: str) -> Any:
        raise NotRegistered(f"task {name!r} is not registered")

    def register(self, task: Any) -> Any:
        self[task.name] = task
        return task

    def unregister(self, name: str) -> None:
        self.pop(name, None)

    def regular(self) -> dict[str, Any]:
        """User tasks (not liteq's own)."""
        return {name: task for name, task in self.items() if not name.startswith("liteq.")}


class TaskFinder:
    """Finds the task for a name: the registry first, then (optionally) by importing.

    Example:
        >>> finder = TaskFinder(app.tasks, import_on_demand=True)  # doctest: +SKIP
        >>> finder("tasks.add")  # imports module "tasks" once  # doctest: +SKIP
        <@task: tasks.add>
    """

    def __init__(self, registry: TaskRegistry, *, import_on_demand: bool,
                 others: Any = None) -> None:
        self.registry = registry
        self.import_on_demand = import_on_demand
        #: a callable returning further registries to search (other apps, shared tasks)
        self.others = others
        self._lock = threading.Lock()
        self._failed: set[str] = set()

    def __call__(self, name: str) -> Any:
        task = self.registry.get(name)
        if task is not None:
            return task
        task = self._search_others(name)
        if task is None and self.import_on_demand:
            task = self._import(name)
        if task is None:
            hint = "" if self.import_on_demand else \
                " (start the worker with the app that defines it: -A module)"
            raise NotRegistered(f"task {name!r} is not registered{hint}")
        self.registry[name] = task
        return task

    def _search_others(self, name: str) -> Any:
        for registry in self.others() if self.others else ():
            task = registry.get(name)
            if task is not None:
                return task
        return None

    def _import(self, name: str) -> Any:
        if not _MODULE_PATH.match(name):
            return None
        module_name, _, attribute = name.rpartition(".")
        with self._lock:
            if module_name in self._failed:
                return None
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                self._failed.add(module_name)
                logger.error("cannot import module %r for task %r: %s", module_name, name, exc)
                return None
        candidate = getattr(module, attribute, None)
        if candidate is not None and getattr(candidate, "name", None) == name and \
                callable(getattr(candidate, "run", None)):
            return candidate
        return self._search_others(name)


__all__ = ["TaskFinder", "TaskRegistry"]
