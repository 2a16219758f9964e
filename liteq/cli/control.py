"""``liteq control``: tell live workers to change what they do, as ``celery control``."""

from __future__ import annotations

from typing import Any

import click

from liteq.cli.base import app_option, cli, handle_errors, remote_options, resolve
from liteq.cli.inspect import print_replies, split_store

#: command -> (its arguments for the usage line, how many it takes at least, at most)
COMMANDS: dict[str, tuple[str, int, int | None]] = {
    "rate_limit": ("TASK_NAME RATE", 2, 2),
    "time_limit": ("TASK_NAME SOFT [HARD]", 2, 3),
    "add_consumer": ("QUEUE", 1, 1),
    "cancel_consumer": ("QUEUE", 1, 1),
    "shutdown": ("", 0, 0),
    "revoke": ("TASK_ID...", 1, None),
    "terminate": ("SIGNAL TASK_ID...", 2, None),
    "ping": ("", 0, 0),
    "enable_events": ("", 0, 0),
    "disable_events": ("", 0, 0),
}


def _usage() -> str:
    return "; ".join(f"{name} {spec[0]}".strip() for name, spec in COMMANDS.items())


@cli.command()
@click.argument("command", type=click.Choice(list(COMMANDS)))
@click.argument("arguments", nargs=-1, metavar="[ARGS...] [DATABASE]")
@app_option
@remote_options
@click.pass_context
@handle_errors
def control(ctx: click.Context, command: str, arguments: tuple[str, ...],
            app_path: str | None, broker: str | None, destination: str | None,
            timeout: float, as_json: bool) -> None:
    """Tell live workers what to do; they act within milliseconds and reply.

    \b
    liteq -A proj control rate_limit tasks.add 10/m
    liteq control add_consumer images tasks.db -d w1@host
    liteq control cancel_consumer images tasks.db
    liteq control shutdown tasks.db          (warm: running tasks finish)
    liteq -A proj control revoke 01a1fe2c-...

    Exits 1 when no worker replied.
    """
    _, least, most = COMMANDS[command]
    values, database = split_store(arguments, most)
    if len(values) < least or (most is not None and len(values) > most):
        raise click.UsageError(f"usage: liteq control {command} {COMMANDS[command][0]}"
                               f" [DATABASE] (commands: {_usage()})")
    app, _ = resolve(ctx, app_path, database or broker, must_exist=True)  # never creates
    nodes = [d.strip() for d in destination.split(",")] if destination else None
    options: dict[str, Any] = {"destination": nodes, "reply": True, "timeout": timeout}
    if command in ("revoke", "terminate"):
        terminate = command == "terminate"
        ids = values[1:] if terminate else values
        app.control.revoke(ids, terminate=terminate, signal=values[0] if terminate else None)
        click.echo(f"revoked {len(ids)} task{'s' if len(ids) != 1 else ''}"
                   f"{' (terminate)' if terminate else ''}")
        return
    try:
        if command == "rate_limit":
            replies = app.control.rate_limit(values[0], values[1], **options)
        elif command == "time_limit":
            limits = [_seconds(value) for value in values[1:]] + [None]
            replies = app.control.time_limit(values[0], soft=limits[0], hard=limits[1],
                                             **options)
        elif command in ("add_consumer", "cancel_consumer"):
            replies = getattr(app.control, command)(values[0], **options)
        else:
            replies = app.control.broadcast(command, **options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not print_replies(replies, as_json):
        ctx.exit(1)
    if any("error" in answer for one in replies or [] for answer in one.values()
           if isinstance(answer, dict)):
        ctx.exit(1)


def _seconds(value: str) -> float | None:
    if value.lower() in ("none", "null", "-"):
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"time limits are seconds, not {value!r}") from None


__all__ = ["control"]
