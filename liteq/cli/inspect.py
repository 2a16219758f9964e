"""``liteq status``, ``liteq queues``, ``liteq result``: read what the store holds."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import click

from liteq.cli.base import app_option, cli, handle_errors, read_only, remote_options, resolve
from liteq.states import FAILURE, READY_STATES
from liteq.transports.base import QueueDepth


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.pass_context
@handle_errors
@read_only
def status(ctx: click.Context, database: str | None, app_path: str | None) -> None:
    """List the workers that heartbeat into the store (exit 1 when there are none)."""
    app, _ = resolve(ctx, app_path, database)
    now = time.time()
    stale_after = max(3 * min(10.0, app.visibility_timeout / 6), 30.0)
    live = 0
    for info in app.broker.workers():
        age = now - info.heartbeat_at
        alive = age <= stale_after
        live += alive
        state = "OK" if alive else f"silent for {age:.0f}s"
        queues = info.info.get("queues") or info.queues  # as changed by add_consumer
        click.echo(f"{info.hostname} (pid {info.pid}, {info.pool} x{info.concurrency}, "
                   f"queues {','.join(queues)}): {state}")
    click.echo(f"{live} node{'s' if live != 1 else ''} online.")
    if not live:
        ctx.exit(1)


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-Q", "--queues", default=None, help="Only these queues, comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
@read_only
def queues(ctx: click.Context, database: str | None, app_path: str | None,
           queues: str | None, as_json: bool) -> None:
    """Show how many messages each queue holds: ready, scheduled (eta), leased, blocked
    (waiting for a concurrency slot or a rate token); paused queues are marked."""
    app, _ = resolve(ctx, app_path, database)
    wanted = [q.strip() for q in queues.split(",")] if queues else None
    depth = app.broker.depth(wanted)
    paused = set(app.broker.paused_queues())
    for name in sorted(paused - depth.keys()):
        if wanted is None or name in wanted:
            depth[name] = QueueDepth()
    depth = dict(sorted(depth.items()))
    if as_json:
        click.echo(json.dumps({name: {"ready": d.ready, "scheduled": d.scheduled,
                                      "leased": d.leased, "blocked": d.blocked,
                                      "paused": name in paused}
                               for name, d in depth.items()}))
        return
    if not depth:
        click.echo("no messages")
        return
    width = max(len("queue"), *(len(name) for name in depth))
    click.echo(f"{'queue':<{width}}  {'ready':>8}  {'scheduled':>9}  {'leased':>7}  "
               f"{'blocked':>7}")
    for name, d in depth.items():
        mark = "  paused" if name in paused else ""
        click.echo(f"{name:<{width}}  {d.ready:>8}  {d.scheduled:>9}  {d.leased:>7}  "
                   f"{d.blocked:>7}{mark}")


@cli.command()
@click.argument("task_id")
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the traceback.")
@click.pass_context
@handle_errors
@read_only
def result(ctx: click.Context, task_id: str, database: str | None, app_path: str | None,
           show_traceback: bool) -> None:
    """Print a task's state and result (exit 1 when it failed)."""
    app, _ = resolve(ctx, app_path, database)
    res = app.AsyncResult(task_id)
    state = res.state
    if state in READY_STATES or res.result is not None:
        click.echo(f"{state}: {res.result!r}")
    else:
        click.echo(str(state))
    if show_traceback and res.traceback:
        click.echo(res.traceback, err=True)
    if state == FAILURE:
        ctx.exit(1)


INSPECT_METHODS = ("active", "active_queues", "conf", "ping", "query_task", "registered",
                   "reserved", "revoked", "scheduled", "stats")
_STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def looks_like_store(value: str) -> bool:
    """True for a database URL or a path to a file that exists or ends like one."""
    return "://" in value or value.endswith(_STORE_SUFFIXES) or os.path.isfile(value)


def split_store(arguments: tuple[str, ...], wanted: int | None) -> tuple[list[str], str | None]:
    """A command's own arguments, and the database given after them (if any).

    The last argument is the database when it looks like one (a URL, a ``.db`` file,
    an existing file), or when there is one more than ``wanted`` (None: any number).
    """
    values = list(arguments)
    if values and (looks_like_store(values[-1]) or
                   (wanted is not None and len(values) > wanted)):
        return values[:-1], values[-1]
    return values, None


def print_replies(replies: dict[str, Any] | list[dict[str, Any]] | None,
                  as_json: bool) -> bool:
    """Print Celery-style ``-> node: OK`` blocks (or JSON); False when there are none."""
    if isinstance(replies, list):
        replies = {node: answer for one in replies for node, answer in one.items()}
    if not replies:
        click.echo("Error: No nodes replied within time constraint.", err=True)
        return False
    if as_json:
        click.echo(json.dumps(replies, default=str))
        return True
    for node, reply in replies.items():
        failed = isinstance(reply, dict) and "error" in reply
        click.echo(f"-> {node}: {'ERROR' if failed else 'OK'}")
        if isinstance(reply, list):
            for item in reply or ["- empty -"]:
                text = json.dumps(item, default=str) if isinstance(item, dict) else item
                click.echo(f"    * {text}")
        elif isinstance(reply, dict) and set(reply) <= {"ok", "error"}:
            click.echo(f"        {reply.get('error') or reply.get('ok')}")
        else:
            click.echo(f"    {json.dumps(reply, default=str)}")
    click.echo(f"{len(replies)} node{'s' if len(replies) != 1 else ''} online.")
    return True


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("method", type=click.Choice(INSPECT_METHODS))
@click.argument("arguments", nargs=-1, metavar="[TASK_ID...] [DATABASE]")
@app_option
@remote_options
@click.pass_context
@handle_errors
@read_only
def inspect(ctx: click.Context, method: str, arguments: tuple[str, ...], app_path: str | None,
            broker: str | None, destination: str | None, timeout: float,
            as_json: bool) -> None:
    """Ask the live workers: active, active_queues, conf, ping, query_task, registered,
    reserved, revoked, scheduled, stats.

    \b
    liteq inspect registered tasks.db
    liteq -A proj inspect query_task 01a1fe2c-... 01a1fe2d-...
    liteq -A proj inspect active_queues -d w1@host

    Exits 1 when no worker is alive.
    """
    values, database = split_store(arguments, None if method == "query_task" else 0)
    if method == "query_task" and not values:
        raise click.UsageError("query_task needs task ids: liteq inspect query_task ID...")
    if values and method != "query_task":
        raise click.UsageError(f"inspect {method} takes no arguments besides the database")
    app, _ = resolve(ctx, app_path, database or broker)
    nodes = [d.strip() for d in destination.split(",")] if destination else None
    inspector = app.control.inspect(nodes, timeout=timeout)
    replies = inspector.query_task(*values) if method == "query_task" else \
        getattr(inspector, method)()
    if not print_replies(replies, as_json):
        ctx.exit(1)


__all__ = ["inspect", "looks_like_store", "print_replies", "queues", "result", "split_store",
           "status"]
