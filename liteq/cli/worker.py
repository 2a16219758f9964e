"""``liteq worker``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import click

from liteq.cli.base import app_option, cli, handle_errors, loglevel_type, resolve, setup_logging
from liteq.worker import Worker, WorkerOptions, expand_nodename
from liteq.worker.supervisor import PoolStartError


def _split(values: tuple[str, ...]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@contextlib.contextmanager
def holding_pidfile(path: str | None) -> Iterator[None]:
    """Write our pid to ``path``; refuse when another live process holds it."""
    if not path:
        yield
        return
    try:
        with open(path, encoding="ascii") as handle:
            other = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid():
        try:
            os.kill(other, 0)
        except ProcessLookupError:
            pass  # a stale pidfile: its process is gone
        except PermissionError:
            raise click.ClickException(
                f"pidfile {path} belongs to running process {other}"
            ) from None
        else:
            raise click.ClickException(f"pidfile {path} belongs to running process {other}")
    with open(path, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-Q", "--queues", multiple=True, metavar="QUEUES",
              help="Queues to consume, comma-separated (default: all declared, or 'celery').")
@click.option("-X", "--exclude-queues", multiple=True, metavar="QUEUES",
              help="Queues not to consume, comma-separated.")
@click.option("-n", "--hostname", default="liteq@%h", show_default=True,
              help="Node name; %h host, %n name, %d domain.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="Tasks at once (default: the number of CPUs).")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"],
                                                case_sensitive=False), default=None,
              help="prefork (default), threads or solo.")
@click.option("-l", "--loglevel", default="WARNING", show_default=True, type=loglevel_type,
              help="debug, info, warning, error or critical (any case).")
@click.option("-f", "--logfile", default=None, help="Log here instead of stderr (%n, %i expand).")
@click.option("--pidfile", default=None, help="Write the pid here (%n expands).")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), default=None,
              help="Tasks claimed ahead per pool slot (default 4).")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), default=None,
              help="Replace a pool process after this many tasks.")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), default=None,
              help="Replace a pool process once it uses this many KiB.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Hard time limit (seconds) for tasks that set none.")
@click.option("--soft-time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Soft time limit (seconds) for tasks that set none.")
@click.option("--start-method", type=click.Choice(["fork", "forkserver", "spawn"]),
              default=None, help="How prefork starts processes (default: Python's).")
@click.option("-B", "--beat", is_flag=True, help="Also run the beat (periodic tasks) here.")
@click.option("--banner/--no-banner", default=True, help="Print the start-up summary.")
@click.option("-O", "optimization", default=None, hidden=True)
@click.option("-E", "--task-events", is_flag=True, hidden=True)
@click.option("--without-heartbeat", is_flag=True, hidden=True)
@click.option("--without-gossip", is_flag=True, hidden=True)
@click.option("--without-mingle", is_flag=True, hidden=True)
@click.pass_context
@handle_errors
def worker(ctx: click.Context, /, database: str | None, app_path: str | None,
           queues: tuple[str, ...], exclude_queues: tuple[str, ...], hostname: str,
           concurrency: int | None, pool: str | None, loglevel: int, logfile: str | None,
           pidfile: str | None, prefetch_multiplier: int | None,
           max_tasks_per_child: int | None, max_memory_per_child: int | None,
           time_limit: float | None, soft_time_limit: float | None,
           start_method: str | None, beat: bool, banner: bool,
           **_celery_flags: object) -> None:
    """Run a worker: claim tasks from the database and run them.

    \b
    liteq worker tasks.db                 import task modules on first use
    liteq -A proj worker -Q videos -c 4 -n w1@%h -l info
    """
    app, spec = resolve(ctx, app_path, database)
    nodename = expand_nodename(hostname)
    setup_logging(loglevel, app.conf.worker_log_format,
                  logfile.replace("%n", nodename.partition("@")[0]).replace("%i", "0")
                  .replace("%h", nodename) if logfile else None)
    options = WorkerOptions(
        nodename=hostname,
        queues=_split(queues) or None,
        exclude_queues=_split(exclude_queues),
        concurrency=concurrency,
        pool=pool,
        prefetch_multiplier=prefetch_multiplier,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        start_method=start_method,
        loglevel=loglevel,
        banner=banner,
        beat=beat,
    )
    if app.conf.worker_pool_start_method and start_method is None:
        options.start_method = app.conf.worker_pool_start_method
    pid_path = pidfile.replace("%n", nodename.partition("@")[0]) if pidfile else None
    with holding_pidfile(pid_path):
        try:
            code = Worker(app, spec, options).start()
        except PoolStartError as exc:
            raise click.ClickException(str(exc)) from None
    sys.exit(code)


__all__ = ["worker"]
