"""``liteq purge``, ``call``, ``revoke`` and ``retry``: change what the store holds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from liteq.cli.base import app_option, cli, handle_errors, resolve
from liteq.exceptions import TimeoutError
from liteq.resend import extended_fields, not_retriable, recorded_call, send_again
from liteq.states import FAILURE

if TYPE_CHECKING:
    pass


def _json_option(value: str | None, kind: type, what: str) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} must be JSON: {exc}") from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"{what} must be a JSON {'list' if kind is list else 'object'}")
    return parsed


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-Q", "--queues", default=None, help="Only these queues, comma-separated.")
@click.option("-f", "--force", is_flag=True, help="Don't ask for confirmation.")
@click.pass_context
@handle_errors
def purge(ctx: click.Context, database: str | None, app_path: str | None,
          queues: str | None, force: bool) -> None:
    """Delete every waiting message (ready and scheduled); running tasks are untouched."""
    app, _ = resolve(ctx, app_path, database, must_exist=True)  # never creates one
    wanted = [q.strip() for q in queues.split(",")] if queues else None
    where = f"queue(s) {', '.join(wanted)}" if wanted else "all queues"
    if not force:
        click.confirm(f"Delete all waiting messages in {where}?", abort=True, err=True)
    removed = app.broker.purge(wanted)
    click.echo(f"Purged {removed} message{'s' if removed != 1 else ''} from {where}.")


@cli.command()
@click.argument("name")
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.option("-a", "--args", "args_json", default=None, help="Positional arguments as JSON.")
@click.option("-k", "--kwargs", "kwargs_json", default=None, help="Keyword arguments as JSON.")
@click.option("--countdown", type=float, default=None, help="Run in this many seconds.")
@click.option("--expires", type=float, default=None, help="Expire after this many seconds.")
@click.option("--queue", default=None, help="The queue to send to.")
@click.option("--priority", type=int, default=None, help="Priority (higher runs first).")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait with --wait.")
@click.pass_context
@handle_errors
def call(ctx: click.Context, name: str, database: str | None, app_path: str | None,
         args_json: str | None, kwargs_json: str | None, countdown: float | None,
         expires: float | None, queue: str | None, priority: int | None, wait: bool,
         timeout: float | None) -> None:
    """Send a task by name and print its id (or, with --wait, its result).

    \b
    liteq call tasks.add tasks.db --args '[2, 2]' --wait
    """
    app, _ = resolve(ctx, app_path, database)
    args = _json_option(args_json, list, "--args")
    kwargs = _json_option(kwargs_json, dict, "--kwargs")
    options = {k: v for k, v in (("countdown", countdown), ("expires", expires),
                                 ("queue", queue), ("priority", priority)) if v is not None}
    res = app.send_task(name, args, kwargs, **options)
    if not wait:
        click.echo(res.id)
        return
    try:
        value = res.get(timeout=timeout, propagate=False)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None
    if res.failed():
        click.echo(f"{res.state}: {value!r}", err=True)
        ctx.exit(1)
    click.echo(json.dumps(value) if _is_json(value) else repr(value))


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True




@cli.command()
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK_ID...")
@click.option("-b", "--broker", "database", default=None, metavar="DATABASE",
              help="The database path or URL (instead of -A).")
@app_option
@click.option("--terminate", is_flag=True, help="Kill the task if a worker runs it (prefork).")
@click.option("--signal", "signal_name", default=None,
              help="The signal for --terminate (default SIGKILL).")
@click.pass_context
@handle_errors
def revoke(ctx: click.Context, task_ids: tuple[str, ...], database: str | None,
           app_path: str | None, terminate: bool, signal_name: str | None) -> None:
    """Revoke tasks: they will not run (with --terminate, a running one is killed).

    \b
    liteq revoke 01a1fe2c-... -b tasks.db
    liteq -A proj revoke ID1 ID2 --terminate
    """
    app, _ = resolve(ctx, app_path, database, must_exist=True)  # never creates one
    app.control.revoke(list(task_ids), terminate=terminate, signal=signal_name)
    click.echo(f"revoked {len(task_ids)} task{'s' if len(task_ids) != 1 else ''}"
               f"{' (terminate)' if terminate else ''}")


@cli.command()
@click.argument("task_ids", nargs=-1, metavar="[TASK_ID...]")
@click.option("-b", "--broker", "database", default=None, metavar="DATABASE",
              help="The database path or URL (instead of -A).")
@app_option
@click.option("--failed", is_flag=True, help="Every failed task not retried yet.")
@click.option("--task", "task_name", default=None, help="With --failed: only this task.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --failed: at most this many.")
@click.pass_context
@handle_errors
def retry(ctx: click.Context, task_ids: tuple[str, ...], database: str | None,
          app_path: str | None, failed: bool, task_name: str | None, limit: int) -> None:
    """Send failed (or revoked) tasks again, with their arguments, as new tasks.

    Each is sent under a new id, printed beside the old one; the old record is kept
    and marked, so it is not retried twice by --failed.

    \b
    liteq retry 01a1fe2c-... -b tasks.db
    liteq retry --failed --task tasks.fetch -b tasks.db
    """
    if failed == bool(task_ids):
        raise click.UsageError("give task ids or --failed (not both)")
    if task_name and not failed:
        raise click.UsageError("--task goes with --failed")
    app, _ = resolve(ctx, app_path, database, must_exist=True)  # never creates one
    backend = app.backend
    if failed:
        records = [record for record in backend.find_results(FAILURE, task_name, limit)
                   if recorded_call(record) is not None
                   and "retried_as" not in extended_fields(record)]
    else:
        records = []
        for task_id in task_ids:
            record = backend.get_result(task_id)
            if record is None:
                click.echo(f"{task_id}: no such task result (PENDING or expired)", err=True)
            else:
                records.append(record)
    problems = len(task_ids) - len(records) if not failed else 0
    retried = 0
    for record in records:
        reason = not_retriable(record)
        if reason:
            click.echo(f"{record.task_id}: {reason}", err=True)
            problems += 1
            continue
        new_id = send_again(app, record)
        click.echo(f"{record.task_id} {record.task_name}: retried as {new_id}")
        retried += 1
    if failed:
        click.echo(f"Retried {retried} failed task{'s' if retried != 1 else ''}.")
    if problems:
        ctx.exit(1)


@cli.group()
def queue() -> None:
    """Pause or resume a queue: ``liteq queue pause videos``."""


@queue.command("pause")
@click.argument("name")
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.pass_context
@handle_errors
def pause(ctx: click.Context, name: str, database: str | None, app_path: str | None) -> None:
    """Stop workers claiming from queue NAME (it keeps taking tasks; stored, so it holds
    across worker restarts)."""
    app, _ = resolve(ctx, app_path, database, must_exist=True)
    if app.control.pause_queue(name):
        click.echo(f"Paused queue {name}.")
    else:
        click.echo(f"Queue {name} was paused already.")


@queue.command("resume")
@click.argument("name")
@click.argument("database", required=False, metavar="[DATABASE]")
@app_option
@click.pass_context
@handle_errors
def resume(ctx: click.Context, name: str, database: str | None, app_path: str | None) -> None:
    """Let workers claim from queue NAME again."""
    app, _ = resolve(ctx, app_path, database, must_exist=True)
    if app.control.resume_queue(name):
        click.echo(f"Resumed queue {name}.")
    else:
        click.echo(f"Queue {name} was not paused.")


__all__ = ["call", "pause", "purge", "queue", "resume", "retry", "revoke"]
