"""How a process finds its app: an import path (``-A proj``) or a broker URL.

Worker children and the command line both start from an :class:`AppSpec`, never from a
live app object, so a child started with ``spawn`` or ``forkserver`` rebuilds the same
app a ``fork`` child inherits.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from liteq.app import LiteQ
from liteq.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class AppSpec:
    """Enough to rebuild the app in another process."""

    #: ``-A`` value: ``module``, ``module:attribute`` or ``package`` (with ``celery.py``)
    import_path: str | None = None
    #: the database path or URL given instead of ``-A``
    broker_url: str | None = None
    #: settings given on the command line (plain, picklable values)
    settings: dict[str, Any] = field(default_factory=dict)
    #: the working directory to import from (the CLI's, so children import the same)
    cwd: str | None = None
    #: False: never import a module a message names (a worker in this process on an app
    #: object knows every task it may run)
    import_tasks: bool = True

    @property
    def import_on_demand(self) -> bool:
        """Without ``-A``, workers import a task's module when they first meet it."""
        return self.import_path is None and self.import_tasks

    def load(self) -> LiteQ:
        """Import or build the app."""
        if self.cwd and self.cwd not in sys.path:
            sys.path.insert(0, self.cwd)
        if self.import_path is not None:
            app = find_app(self.import_path)
        else:
            app = LiteQ(None, broker=self.broker_url)
        if self.broker_url and self.import_path is not None:
            app.conf.broker_url = self.broker_url
        if self.settings:
            app.conf.update(self.settings)
        return app


def _apps_in(module: ModuleType) -> list[LiteQ]:
    found = []
    for name in ("app", "celery", "liteq"):
        value = getattr(module, name, None)
        if isinstance(value, LiteQ):
            return [value]
    for value in vars(module).values():
        if isinstance(value, LiteQ) and value not in found:
            found.append(value)
    return found


def find_app(path: str) -> LiteQ:
    """The app named by ``-A``: ``proj``, ``proj.module``, ``proj:app`` or ``proj.celery``.

    Like Celery: an attribute named ``app`` or ``celery`` wins; a package is searched in
    its ``celery`` (or ``liteq``) submodule; a module holding exactly one app uses it.

    Raises:
        ImproperlyConfigured: the module cannot be imported or holds no app.
    """
    if "." not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = path.partition(":")
    module = _import(module_name)
    if attribute:
        return _app_attribute(module, attribute, path)
    apps = _apps_in(module)
    if not apps and hasattr(module, "__path__"):
        apps = _apps_in_package(module_name)
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise ImproperlyConfigured(
            f"module {module_name!r} has no liteq app (expected e.g. app = LiteQ(...))"
        )
    raise ImproperlyConfigured(
        f"module {module_name!r} has several apps; name one: -A {module_name}:app"
    )


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ImproperlyConfigured(
                f"cannot import {module_name!r}: no module named {exc.name!r} "
                f"(run from the directory that contains it)"
            ) from None
        raise


def _app_attribute(module: ModuleType, attribute: str, path: str) -> LiteQ:
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part, None)
    if callable(value) and not isinstance(value, LiteQ):
        value = value()  # an app factory
    if isinstance(value, LiteQ):
        return value
    raise ImproperlyConfigured(f"{path!r} is not a liteq app")


def _apps_in_package(package: str) -> list[LiteQ]:
    for sub in ("celery", "liteq", "app", "tasks"):
        try:
            submodule = importlib.import_module(f"{package}.{sub}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{package}.{sub}":
                continue
            raise
        apps = _apps_in(submodule)
        if apps:
            return apps
    return []


__all__ = ["AppSpec", "find_app"]
