"""The ``liteq`` click group and what its commands share.

Every subcommand takes the app as ``-A module`` (before or after the subcommand name)
or the database path/URL as an argument. Exit codes: 0 ok, 1 task or command failure,
2 usage error; errors are one line on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from liteq import __version__
from liteq.exceptions import ImproperlyConfigured, LiteQError
from liteq.worker.spec import AppSpec

if TYPE_CHECKING:
    from liteq.app import LiteQ

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")


class State:
    """What the group's options say, shared with subcommands (``ctx.obj``)."""

    def __init__(self, app_path: str | None = None, broker: str | None = None,
                 app: LiteQ | None = None) -> None:
        self.app_path = app_path
        self.broker = broker
        self.app = app  # given by app.start() / app.worker_main()


def app_option(function: F) -> F:
    """``-A/--app`` accepted after the subcommand name as well as before it."""
    return click.option("-A", "--app", "app_path", metavar="MODULE", default=None,
                        help="The app: module, module:attribute, or package.")(function)


def loglevel_type(value: str) -> int:
    name = value.upper()
    if name not in LOG_LEVELS:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(LOG_LEVELS).lower()}")
    return int(logging.getLevelName("CRITICAL" if name == "FATAL" else name))


def resolve(ctx: click.Context, app_path: str | None = None,
            location: str | None = None) -> tuple[LiteQ, AppSpec]:
    """The app and its spec from ``-A``, the database argument, or ``app.start()``."""
    state: State = ctx.find_object(State) or State()
    app_path = app_path or state.app_path
    location = location or state.broker
    if state.app is not None and not app_path:
        app = state.app
        main_module = sys.modules.get("__main__")
        module = getattr(main_module, "__spec__", None)
        spec = AppSpec(import_path=None if module is None else _attr_path(app, module.name),
                       broker_url=location, cwd=os.getcwd())
        if location:
            app.conf.broker_url = location
        if spec.import_path is None:
            spec = AppSpec(broker_url=location or app.broker_url, cwd=os.getcwd())
        return app, spec
    if not app_path and not location:
        raise click.UsageError(
            "give the database (liteq worker tasks.db) or the app (liteq -A proj worker)"
        )
    spec = AppSpec(import_path=app_path, broker_url=location, cwd=os.getcwd())
    try:
        return spec.load(), spec
    except LiteQError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the user's module failed while importing
        raise click.ClickException(
            f"cannot load the app {app_path!r}: {type(exc).__name__}: {exc}{_where(exc)}"
        ) from None


def _where(exc: BaseException) -> str:
    """`` (file:line)`` of the innermost frame of ``exc``, to point at the user's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" ({last.filename}:{last.lineno})"


def _attr_path(app: LiteQ, module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    for name, value in vars(module).items() if module else ():
        if value is app:
            return f"{module_name}:{name}"
    return None


def handle_errors(function: F) -> F:
    """Turn liteq errors into one line on stderr and exit code 1."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (ImproperlyConfigured, LiteQError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(level: int, fmt: str, logfile: str | None = None) -> None:
    """Log to stderr (or ``logfile``) at ``level`` with the worker's format."""
    handler: logging.Handler
    handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="liteq")
@app_option
@click.option("-b", "--broker", default=None, metavar="URL",
              help="The database path or URL (instead of the app's broker_url).")
@click.option("--workdir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Change to this directory first.")
@click.pass_context
def cli(ctx: click.Context, app_path: str | None, broker: str | None, workdir: str | None) -> None:
    """liteq: a task queue with Celery's API on one SQLite file (or Redis).

    \b
    Start a worker on a database file:   liteq worker tasks.db
    Start a worker for an app:           liteq -A proj worker -c 4
    """
    if workdir:
        os.chdir(workdir)
    state = ctx.ensure_object(State)
    state.app_path = app_path or state.app_path
    state.broker = broker or state.broker


__all__ = ["State", "app_option", "cli", "handle_errors", "loglevel_type", "resolve",
           "setup_logging"]
