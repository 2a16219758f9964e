"""``liteq worker``."""

from __future__ import annotations

import dataclasses
import sys

import click

from liteq.cli.base import (
    app_option,
    cli,
    handle_errors,
    loglevel_type,
    resolve,
    setting_default,
)
from liteq.cli.daemon import detach as become_daemon
from liteq.cli.daemon import expand_path, holding_pidfile
from liteq.worker import Worker, WorkerOptions, expand_nodename
from liteq.worker.logs import configure_logging, redirected_stdouts
from liteq.worker.supervisor import PoolStartError


def _split(values: tuple[str, ...]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-Q", "--queues", multiple=True, metavar="QUEUES",
              help="Queues to consume, comma-separated (default: those of task_queues, else "
                   f"task_default_queue, {setting_default('task_default_queue')!r}).")
@click.option("-X", "--exclude-queues", multiple=True, metavar="QUEUES",
              help="Queues not to consume, comma-separated.")
@click.option("-n", "--hostname", default="liteq@%h", show_default=True,
              help="Node name; %h host, %n name, %d domain.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="Tasks at once (default: worker_concurrency, else the number of CPUs).")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"],
                                                case_sensitive=False), default=None,
              help=f"The pool (default: worker_pool, {setting_default('worker_pool')}).")
@click.option("-l", "--loglevel", default="WARNING", show_default=True, type=loglevel_type,
              help="debug, info, warning, error or critical (any case).")
@click.option("-f", "--logfile", default=None,
              help="Log here instead of stderr (%n, %h, %i expand; detached: %n%I.log); "
                   "print() in tasks is logged too (worker_redirect_stdouts).")
@click.option("--pidfile", default=None,
              help="Write the pid here; refuse to start if it names a live process "
                   "(%n, %h expand; detached: %n.pid).")
@click.option("-D", "--detach", is_flag=True,
              help="Run in the background (a daemon), logging to --logfile.")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), default=None,
              help="Tasks claimed ahead per pool slot (default: worker_prefetch_multiplier, "
                   f"{setting_default('worker_prefetch_multiplier')}).")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), default=None,
              help="Replace a pool process after this many tasks (default: "
                   "worker_max_tasks_per_child; none).")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), default=None,
              help="Replace a pool process once it uses this many KiB (default: "
                   "worker_max_memory_per_child; none).")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Hard time limit (seconds) for tasks sent without one (their time_limit, "
                   "or the sender's task_time_limit).")
@click.option("--soft-time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Soft time limit (seconds) for tasks sent without one (their "
                   "soft_time_limit, or the sender's task_soft_time_limit).")
@click.option("--start-method", type=click.Choice(["fork", "forkserver", "spawn"]),
              default=None, help="How prefork starts processes (default: "
                                 "worker_pool_start_method, else Python's).")
@click.option("-I", "--include", multiple=True, metavar="MODULES",
              help="Modules to import at start (comma-separated; added to the include "
                   "setting). Without -A, only these, modules in worker_import_allowlist "
                   "and task modules in this directory are imported for a task a message "
                   "names.")
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
           start_method: str | None, include: tuple[str, ...], beat: bool, banner: bool,
           detach: bool, **_celery_flags: object) -> None:
    """Run a worker: claim tasks from the database and run them.

    \b
    liteq worker tasks.db                 import task modules on first use
    liteq -A proj worker -Q videos -c 4 -n w1@%h -l info
    """
    app, spec = resolve(ctx, app_path, database)
    if include:
        modules = (*tuple(app.conf.include or ()), *_split(include))
        app.conf.include = modules
        spec = dataclasses.replace(spec, settings={**spec.settings, "include": modules})
    nodename = expand_nodename(hostname)
    if detach:
        pidfile, logfile = pidfile or "%n.pid", logfile or "%n%I.log"
    log_path = expand_path(logfile, nodename) if logfile else None
    pid_path = expand_path(pidfile, nodename) if pidfile else None
    if detach:
        assert pid_path is not None and log_path is not None
        become_daemon(pid_path, log_path)
    configure_logging(app, loglevel, log_path)
    # print() in tasks becomes log lines, as in Celery (children inherit or redo it)
    redirect_level = (str(app.conf.worker_redirect_stdouts_level)
                      if app.conf.worker_redirect_stdouts else None)
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
        logfile=log_path,
        redirect_stdouts=redirect_level,
    )
    if app.conf.worker_pool_start_method and start_method is None:
        options.start_method = app.conf.worker_pool_start_method
    with holding_pidfile(pid_path):
        try:
            with redirected_stdouts(redirect_level):
                code = Worker(app, spec, options).start()
        except PoolStartError as exc:
            raise click.ClickException(str(exc)) from None
    sys.exit(code)


__all__ = ["worker"]
