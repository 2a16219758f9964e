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
import warnings
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from liteq import __version__
from liteq.config import OPTIONS, result_store
from liteq.exceptions import ImproperlyConfigured, LiteQError, StoreNotFound
from liteq.transports import check_store, scheme_of
from liteq.worker.spec import AppSpec

if TYPE_CHECKING:
    from liteq.app import LiteQ

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")

#: ``ctx.meta`` key set by :func:`read_only`.
EXISTING_STORE = "liteq.existing_store"

#: File name endings that say "a database" (a new file with one may be created).
DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3", ".liteq")


class StoreArgumentError(click.ClickException):
    """The database argument names no store: a usage error (exit code 2), one line."""

    exit_code = 2


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


def remote_options(function: F) -> F:
    """The options of commands that talk to live workers (``inspect``, ``control``):
    ``-b`` store, ``-d`` nodes, ``-t`` reply timeout, ``-j`` JSON output."""
    for option in reversed((
        click.option("-b", "--broker", "broker", default=None, metavar="DATABASE",
                     help="The database path or URL (instead of -A)."),
        click.option("-d", "--destination", default=None,
                     help="Only these node names, comma-separated."),
        click.option("-t", "--timeout", type=click.FloatRange(min=0), default=1.0,
                     show_default=True, help="Seconds to wait for the workers' replies."),
        click.option("-j", "--json", "as_json", is_flag=True, help="Print the replies as JSON."),
    )):
        function = option(function)
    return function


def setting_default(setting: str) -> Any:
    """A setting's default from the settings table, for option help texts (so the help
    cannot drift from what the code does)."""
    return OPTIONS[setting].default


def loglevel_type(value: str) -> int:
    name = value.upper()
    if name not in LOG_LEVELS:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(LOG_LEVELS).lower()}")
    return int(logging.getLevelName("CRITICAL" if name == "FATAL" else name))


def read_only(function: F) -> F:
    """Declare a command that only reads the store (``result``, ``inspect``, ``queues``,
    ``status``, ``events``): it never creates one.

    :func:`resolve` then checks, creating and changing nothing, that the store exists
    and is liteq's: a missing path is one line on stderr and exit code 2 (1 when the
    path is the app's ``broker_url``), a file that is not a liteq store exit code 1.

    Example:
        >>> @cli.command()  # doctest: +SKIP
        ... @click.argument("database", required=False)
        ... @click.pass_context
        ... @handle_errors
        ... @read_only
        ... def events(ctx, database): ...
    """

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        click.get_current_context().meta[EXISTING_STORE] = True
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def resolve(ctx: click.Context, app_path: str | None = None,
            location: str | None = None, *, must_exist: bool | None = None
            ) -> tuple[LiteQ, AppSpec]:
    """The app and its spec from ``-A``, the database argument, or ``app.start()``.

    Args:
        ctx: the command's context.
        app_path: ``-A`` given after the command name (else the group's).
        location: the database argument (else the group's ``-b``).
        must_exist: the store must exist already (default: the command is
            :func:`read_only`); commands that write may create it.

    Raises:
        click.UsageError: neither an app nor a database.
        StoreArgumentError: the database argument is no store (a module name, a stray
            word next to ``-A``, a directory, a missing path where one must exist).
        click.ClickException: the app cannot be loaded, or its store is no liteq store.
    """
    state: State = ctx.find_object(State) or State()
    app_path = app_path or state.app_path
    location = location or state.broker
    if must_exist is None:
        must_exist = bool(ctx.meta.get(EXISTING_STORE))
    if location:
        _check_location(ctx, location, bool(app_path) or state.app is not None, must_exist)
    app, spec = _load(state, app_path, location)
    if must_exist:
        _check_stores(app, from_command_line=bool(location))
    return app, spec


def _load(state: State, app_path: str | None, location: str | None) -> tuple[LiteQ, AppSpec]:
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


def _check_location(ctx: click.Context, location: str, with_app: bool,
                    must_exist: bool) -> None:
    """Refuse a database argument that is plainly no store, before anything opens it."""
    if scheme_of(location):
        return  # a URL: its store is checked when opened (or by _check_stores)
    path = location.partition("?")[0]
    if path.endswith(".py") and os.path.isfile(path):
        name = os.path.splitext(os.path.basename(path))[0]
        raise StoreArgumentError(
            f"{location!r} is a Python file, not a database file; the app goes with -A: "
            f"liteq -A {name} {ctx.info_name or 'worker'}"
        )
    module = _module_named(path)
    if module is not None:
        command = ctx.info_name or "worker"
        if with_app:
            raise StoreArgumentError(
                f"{location!r} is a Python module, not a database file: the app comes from "
                f"-A and uses its broker_url; drop {location!r}, or name a database file"
            )
        raise StoreArgumentError(
            f"{location!r} is a Python module, not a database file; to use its app: "
            f"liteq -A {module} {command}"
        )
    if os.path.isdir(path):
        raise StoreArgumentError(f"{location} is a directory, not a database file")
    if os.path.exists(path) or must_exist:
        return  # a missing store is reported by _check_stores, creating nothing
    if with_app and not path.lower().endswith(DATABASE_SUFFIXES):
        raise StoreArgumentError(
            f"{location!r} is not a database (no such file); with -A the app's broker_url "
            f"is used: drop {location!r}, or name a database file (such as {path}.db) or "
            f"a URL (sqlite:///{path}.db) to use another store"
        )


def _module_named(path: str) -> str | None:
    """The module ``path`` names in the current directory (``proj``, ``proj.tasks``)."""
    if os.sep in path or "/" in path or path.lower().endswith(DATABASE_SUFFIXES):
        return None
    parts = path.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    top = os.path.join(os.getcwd(), parts[0])
    if os.path.isfile(top + ".py") or os.path.isfile(os.path.join(top, "__init__.py")):
        return parts[0]
    return None


def _check_stores(app: LiteQ, from_command_line: bool) -> None:
    """The app's stores exist and are liteq's, checked creating and changing nothing."""
    broker_url = app.broker_url
    with warnings.catch_warnings():  # said once, when the backend opens
        warnings.simplefilter("ignore")
        try:
            backend_url = result_store(app.conf.result_backend)
        except LiteQError as exc:
            raise click.ClickException(str(exc)) from None
    stores = [("broker_url", broker_url)]
    if backend_url is not None and backend_url != broker_url:
        stores.append(("result_backend", backend_url))
    for setting, url in stores:
        try:
            check_store(url, setting)
        except StoreNotFound as exc:
            if from_command_line and setting == "broker_url":
                raise StoreArgumentError(str(exc)) from None
            raise click.ClickException(str(exc)) from None
        except LiteQError as exc:
            raise click.ClickException(str(exc)) from None


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


__all__ = ["State", "StoreArgumentError", "app_option", "cli", "handle_errors",
           "loglevel_type", "read_only", "resolve", "setting_default"]
