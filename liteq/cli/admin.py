"""``liteq purge`` and ``liteq call``: change what the store holds."""

from __future__ import annotations

import json
from typing import Any

import click

from liteq.cli.base import app_option, cli, handle_errors, resolve
from liteq.exceptions import TimeoutError


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
    app, _ = resolve(ctx, app_path, database)
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
    app, _ = resolve(ctx, app_path, database)
    app.control.revoke(list(task_ids), terminate=terminate, signal=signal_name)
    click.echo(f"revoked {len(task_ids)} task{'s' if len(task_ids) != 1 else ''}"
               f"{' (terminate)' if terminate else ''}")


__all__ = ["call", "purge", "revoke"]
