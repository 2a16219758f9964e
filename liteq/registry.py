"""The task registry: task name -> task, with import on demand.

A worker started on a database path alone (``liteq worker tasks.db``, no ``-A``)
imports a task's module the first time it meets the task: for ``tasks.add`` it imports
``tasks`` and takes its ``add`` attribute, which must be a liteq task. Only modules the
user allowed are imported (:class:`ImportPolicy`): those named by
``worker_import_allowlist``, ``imports`` or ``include`` (packages with their
submodules), modules already imported, and by default a module in the worker's
directory whose source defines tasks. A message naming any other module (a script such
as ``cleanup.py``, a module of the standard library) fails as :class:`NotRegistered`
without running anything. Nothing else is ever called or imported from a message.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any

from liteq.exceptions import NotRegistered

logger = logging.getLogger(__name__)

_MODULE_PATH = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
#: What a module that defines tasks says: ``@app.task``, ``@shared_task``, ``app.task(f)``.
_DEFINES_TASKS = re.compile(rb"@\s*[\w.]*\b(?:task|shared_task)\b|\.task\s*\(")
#: ``worker_import_allowlist`` entry allowing any module (as before 0.x: unsafe).
ANY_MODULE = "*"
#: Bytes of a module's source read to see whether it defines tasks.
_SOURCE_LIMIT = 1 << 20


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


def _within(module: str, entry: str) -> bool:
    """``module`` is ``entry`` or one of its submodules."""
    return module == entry or module.startswith(entry + ".")


class ImportPolicy:
    """Which modules a worker may import to find a task a message names.

    Example:
        >>> policy = ImportPolicy(["proj"], directory=None)
        >>> policy.allows("proj.tasks"), policy.allows("cleanup")
        (True, False)
    """

    def __init__(self, allowlist: Iterable[str] | None, include: Iterable[str] = (),
                 directory: str | None = None) -> None:
        #: None: the default (task modules in ``directory``); else the allowed names
        self.allowlist = None if allowlist is None else tuple(allowlist)
        self.include = tuple(include)
        self.directory = directory

    def allows(self, module: str) -> bool:
        if module in sys.modules:  # imported already: importing runs nothing
            return True
        if any(_within(module, entry) for entry in self.include):
            return True
        if self.allowlist is not None:
            return ANY_MODULE in self.allowlist or \
                any(_within(module, entry) for entry in self.allowlist)
        return self.directory is not None and defines_tasks(self.directory, module)

    def refusal(self, module: str) -> str:
        """Why ``module`` is not imported (for the NotRegistered message)."""
        if self.allowlist is not None:
            return (f"module {module!r} is not in worker_import_allowlist, imports or "
                    "include")
        return (f"module {module!r} is not a module defining tasks in the worker's "
                "directory, and not in worker_import_allowlist, imports or include")


def defines_tasks(directory: str, module: str) -> bool:
    """``module`` is a file under ``directory`` (``a/b.py`` or ``a/b/__init__.py``)
    whose source defines tasks; read, never run."""
    base = os.path.join(directory, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        try:
            with open(path, "rb") as handle:
                return bool(_DEFINES_TASKS.search(handle.read(_SOURCE_LIMIT)))
        except OSError:
            continue
    return False


class TaskFinder:
    """Finds the task for a name: the registry first, then (optionally) by importing.

    Example:
        >>> finder = TaskFinder(app.tasks, import_on_demand=True)  # doctest: +SKIP
        >>> finder("tasks.add")  # imports module "tasks" once  # doctest: +SKIP
        <@task: tasks.add>
    """

    def __init__(self, registry: TaskRegistry, *, import_on_demand: bool,
                 others: Any = None, policy: ImportPolicy | None = None) -> None:
        self.registry = registry
        self.import_on_demand = import_on_demand
        #: which modules may be imported on demand (None: any)
        self.policy = policy
        #: a callable returning further registries to search (other apps, shared tasks)
        self.others = others
        self._lock = threading.Lock()
        self._failed: set[str] = set()
        self._refused: dict[str, str] = {}

    def __call__(self, name: str) -> Any:
        task = self.registry.get(name)
        if task is not None:
            return task
        task = self._search_others(name)
        if task is None and self.import_on_demand:
            task = self._import(name)
        if task is None:
            refused = self._refused.get(name.rpartition(".")[0])
            if refused is not None:
                hint = f" ({refused}: not imported)"
            elif self.import_on_demand:
                hint = ""
            else:
                hint = " (start the worker with the app that defines it: -A module)"
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
            if module_name in self._failed or module_name in self._refused:
                return None
            if self.policy is not None and not self.policy.allows(module_name):
                reason = self.policy.refusal(module_name)
                self._refused[module_name] = reason
                logger.error("task %r: %s; not imported (allow it with "
                             "worker_import_allowlist, or start the worker with -A)",
                             name, reason)
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


__all__ = ["ANY_MODULE", "ImportPolicy", "TaskFinder", "TaskRegistry", "defines_tasks"]
