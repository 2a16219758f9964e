"""``liteq events``: task events, read from the store, printed as they happen."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime
from typing import Any

import click

from liteq.cli.base import app_option, cli, handle_errors, read_only, resolve
from liteq.events import EventMonitor

#: Fields shown after the task for each event type (in this order).
_SHOWN = ("args", "kwargs", "queue", "eta", "result", "exception", "retries")


def format_event(event: dict[str, Any]) -> str:
    """One line, as ``celery events --dump`` writes it:
    ``w1@host [2026-11-26 08:00:00.123] task succeeded: tasks.add(id) result=4``."""
    when = datetime.fromtimestamp(event["timestamp"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    host = event.get("hostname") or "-"
    fields = []
    for name in _SHOWN:
        value = event.get(name)
        if value is None or (name == "retries" and not value):
            continue
        if name in ("args", "kwargs") and not value:
            continue
        fields.append(f"{name}={value if isinstance(value, str) else json.dumps(value)}")
    kind = str(event["type"]).replace("-", " ")
    task = f"{event.get('name') or '?'}({event['uuid']})"
    tail = (" " + ", ".join(fields)) if fields else ""
    return f"{host} [{when}] {kind}: {task}{tail}"


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("--dump", is_flag=True,
              help="Print an event for everything the store holds now, then exit.")
@click.option("-j", "--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="Seconds between reads of the store.")
@click.option("-c", "--camera", hidden=True, default=None)
@click.option("-F", "--frequency", "--freq", hidden=True, type=float, default=None)
@click.pass_context
@handle_errors
@read_only
def events(ctx: click.Context, database: str | None, app_path: str | None, dump: bool,
           as_json: bool, interval: float, camera: str | None,
           frequency: float | None) -> None:
    """Print task events (sent, received, started, succeeded, failed, retried,
    revoked) as they happen, until Ctrl-C; read from the store, so workers need no -E.

    \b
    liteq events tasks.db
    liteq -A proj events --json
    liteq events tasks.db --dump     what the store holds now, then exit
    """
    if camera:
        raise click.UsageError("liteq events has no cameras (--camera); read the events "
                               "with liteq.events.EventMonitor instead")
    app, _ = resolve(ctx, app_path, database)
    monitor = EventMonitor(app, replay=dump)

    def show(event: dict[str, Any]) -> None:
        # flushed line by line: a pipe or file reader sees each event as it happens
        click.echo(json.dumps(event, default=str) if as_json else format_event(event))
        sys.stdout.flush()

    if dump:
        for event in monitor.poll():
            show(event)
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"liteq events: watching {app.broker.location} (Ctrl-C to stop)", err=True)
    for event in monitor.follow(stop, frequency or interval):
        show(event)


__all__ = ["events", "format_event"]
