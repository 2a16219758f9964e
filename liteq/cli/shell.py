"""``liteq shell``: a Python shell with the app and its tasks, as ``celery shell``."""

from __future__ import annotations

import code
import importlib
from typing import TYPE_CHECKING, Any

import click

import liteq
from liteq import canvas
from liteq.cli.base import app_option, cli, handle_errors, resolve

if TYPE_CHECKING:
    from liteq.app import LiteQ

#: Canvas names put in the shell, as Celery's shell does (those liteq has).
CANVAS_NAMES = ("signature", "subtask", "chain", "chord", "group", "chunks", "xmap",
                "xstarmap", "maybe_signature")


def namespace(app: LiteQ, with_tasks: bool = True) -> dict[str, Any]:
    """What the shell starts with: ``app`` (also as ``celery``), ``Task``, the canvas
    primitives, and every task by its short name (``add`` for ``tasks.add``)."""
    names: dict[str, Any] = {"app": app, "celery": app, "liteq": liteq, "Task": liteq.Task,
                             "AsyncResult": app.AsyncResult, "GroupResult": liteq.GroupResult}
    for name in CANVAS_NAMES:
        value = getattr(canvas, name, None)
        if value is not None:
            names[name] = value
    if with_tasks:
        app.finalize()
        for name, task in sorted(app.tasks.regular().items()):
            short = name.rpartition(".")[2]
            if short.isidentifier() and short not in names:
                names[short] = task
    return names


def _banner(names: dict[str, Any]) -> str:
    tasks = sorted(n for n, v in names.items() if isinstance(v, liteq.Task))
    return ("liteq shell: app, celery, signature, chain, group, chord"
            + (f"; tasks: {', '.join(tasks)}" if tasks else ""))


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-I", "--ipython", "force", flag_value="ipython", help="Use IPython.")
@click.option("-P", "--python", "force", flag_value="python", help="Use the plain Python shell.")
@click.option("-B", "--bpython", "force", flag_value="bpython", hidden=True)
@click.option("-T", "--without-tasks", is_flag=True, help="Don't put the tasks in the shell.")
@click.option("--eventlet", is_flag=True, hidden=True)
@click.option("--gevent", is_flag=True, hidden=True)
@click.pass_context
@handle_errors
def shell(ctx: click.Context, database: str | None, app_path: str | None, force: str | None,
          without_tasks: bool, eventlet: bool, gevent: bool) -> None:
    """Open a Python shell with the app and its tasks (IPython when installed).

    \b
    liteq -A proj shell
    >>> add.delay(2, 2).get(timeout=10)
    """
    app, _ = resolve(ctx, app_path, database)
    names = namespace(app, with_tasks=not without_tasks)
    if force in (None, "ipython"):
        try:
            ipython: Any = importlib.import_module("IPython")
        except ImportError:
            if force == "ipython":
                raise click.ClickException(
                    "IPython is not installed (pip install ipython)") from None
        else:
            ipython.start_ipython(argv=[], user_ns=names)
            return
    if force == "bpython":
        raise click.ClickException("liteq shell does not support bpython; use -P or -I")
    code.interact(banner=_banner(names), local=names, exitmsg="")


__all__ = ["namespace", "shell"]
