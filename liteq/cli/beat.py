"""``liteq beat``."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from liteq.beat import Beat, check_scheduler, describe
from liteq.cli.base import app_option, cli, handle_errors, loglevel_type, resolve
from liteq.cli.daemon import detach as become_daemon
from liteq.cli.daemon import expand_path, holding_pidfile
from liteq.worker.logs import configure_logging

if TYPE_CHECKING:
    from liteq.app import LiteQ


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-l", "--loglevel", default="WARNING", show_default=True, type=loglevel_type,
              help="debug, info, warning, error or critical (any case).")
@click.option("-f", "--logfile", default=None,
              help="Log here instead of stderr (detached: celerybeat.log).")
@click.option("--pidfile", default=None,
              help="Write the pid here; refuse to start if it names a live process "
                   "(detached: celerybeat.pid).")
@click.option("-D", "--detach", is_flag=True, help="Run in the background (a daemon).")
@click.option("--show", is_flag=True, help="List the stored entries and their next run; exit.")
@click.option("--json", "as_json", is_flag=True, help="With --show: print JSON.")
@click.option("-s", "--schedule", "schedule_file", default=None, hidden=True,
              help="Accepted for Celery compatibility: the schedule lives in the database.")
@click.option("-S", "--scheduler", default=None,
              help="Celery's persistent scheduler is what liteq's beat is; any other "
                   "(e.g. django_celery_beat's) is refused (beat_scheduler).")
@click.pass_context
@handle_errors
def beat(ctx: click.Context, database: str | None, app_path: str | None, loglevel: int,
         logfile: str | None, pidfile: str | None, detach: bool, show: bool, as_json: bool,
         schedule_file: str | None, scheduler: str | None) -> None:
    """Send periodic tasks on time; several beats on one file fire each tick once.

    \b
    liteq -A proj beat              run the beat of proj's beat_schedule
    liteq beat tasks.db --show      list entries with their next run
    """
    app, _ = resolve(ctx, app_path, database, must_exist=show)  # --show only reads
    if scheduler is not None:
        app.conf.beat_scheduler = scheduler
    check_scheduler(app.conf.beat_scheduler)  # before detaching: the error reaches you
    if show:
        rows = describe(app)
        if as_json:
            click.echo(json.dumps(rows))
            return
        if not rows:
            click.echo("no periodic tasks stored (start a beat with -A to store them)")
            return
        for row in rows:
            click.echo(f"{row['name']}: {row['task']} {row['schedule']}\n"
                       f"    next {_when(row['next_run_at'])} (in {row['due_in']:.0f}s), "
                       f"last {_when(row['last_run_at'])}, ran {row['total_run_count']} times")
        return
    node = f"beat@{socket.gethostname()}"
    if detach:
        pidfile, logfile = pidfile or "celerybeat.pid", logfile or "celerybeat.log"
    log_path = expand_path(logfile, node) if logfile else None
    pid_path = expand_path(pidfile, node) if pidfile else None
    if detach:
        assert pid_path is not None and log_path is not None
        become_daemon(pid_path, log_path)
    configure_logging(app, loglevel, log_path)
    with holding_pidfile(pid_path):
        _run(app)
    sys.exit(0)


def _run(app: LiteQ) -> None:
    service = Beat(app)
    stored = service.setup()
    stop = threading.Event()
    seen: list[Any] = []

    def on_signal(signum: int, frame: Any) -> None:
        seen.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"liteq beat: {len(stored)} periodic task(s) on {app.broker.location}",
               err=True)
    service.run(stop)
    click.echo(f"liteq beat: stopped ({signal.Signals(seen[0]).name if seen else 'done'}) "
               f"after sending {service.fired} task(s)", err=True)


__all__ = ["beat"]

