"""``liteq status``, ``liteq queues``, ``liteq result``: read what the store holds."""

from __future__ import annotations

import json
import time

import click

from liteq.cli.base import app_option, cli, handle_errors, resolve
from liteq.states import FAILURE, READY_STATES


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.pass_context
@handle_errors
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
        click.echo(f"{info.hostname} (pid {info.pid}, {info.pool} x{info.concurrency}, "
                   f"queues {','.join(info.queues)}): {state}")
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
def queues(ctx: click.Context, database: str | None, app_path: str | None,
           queues: str | None, as_json: bool) -> None:
    """Show how many messages each queue holds: ready, scheduled (eta), leased."""
    app, _ = resolve(ctx, app_path, database)
    wanted = [q.strip() for q in queues.split(",")] if queues else None
    depth = app.broker.depth(wanted)
    if as_json:
        click.echo(json.dumps({name: {"ready": d.ready, "scheduled": d.scheduled,
                                      "leased": d.leased} for name, d in depth.items()}))
        return
    if not depth:
        click.echo("no messages")
        return
    width = max(len("queue"), *(len(name) for name in depth))
    click.echo(f"{'queue':<{width}}  {'ready':>8}  {'scheduled':>9}  {'leased':>7}")
    for name, d in depth.items():
        click.echo(f"{name:<{width}}  {d.ready:>8}  {d.scheduled:>9}  {d.leased:>7}")


@cli.command()
@click.argument("task_id")
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the traceback.")
@click.pass_context
@handle_errors
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


INSPECT_METHODS = ("active", "reserved", "scheduled", "stats", "registered", "revoked", "ping")


@cli.command()
@click.argument("method", type=click.Choice(INSPECT_METHODS))
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-d", "--destination", default=None, help="Only these node names, comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def inspect(ctx: click.Context, method: str, database: str | None, app_path: str | None,
            destination: str | None, as_json: bool) -> None:
    """Ask the live workers: active, reserved, scheduled, stats, registered, revoked, ping.

    Exits 1 when no worker is alive.
    """
    app, _ = resolve(ctx, app_path, database)
    nodes = [d.strip() for d in destination.split(",")] if destination else None
    replies = getattr(app.control.inspect(nodes), method)()
    if replies is None:
        click.echo("Error: No nodes replied.", err=True)
        ctx.exit(1)
    if as_json:
        click.echo(json.dumps(replies, default=str))
        return
    for node, reply in replies.items():
        click.echo(f"-> {node}: OK")
        if isinstance(reply, list):
            for item in reply or ["- empty -"]:
                text = json.dumps(item, default=str) if isinstance(item, dict) else item
                click.echo(f"    * {text}")
        else:
            click.echo(f"    {json.dumps(reply, default=str)}")


__all__ = ["inspect", "queues", "result", "status"]
