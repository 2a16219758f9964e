"""``liteq doctor``: is the store healthy? One line per check, and an exit code."""

from __future__ import annotations

import json

import click

from liteq.cli.base import app_option, cli, handle_errors, read_only, resolve
from liteq.doctor import diagnose, exit_code


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE|URL]")
@app_option
@click.option("--json", "as_json", is_flag=True, help="The checks as a JSON list.")
@click.pass_context
@handle_errors
@read_only
def doctor(ctx: click.Context, database: str | None, app_path: str | None,
           as_json: bool) -> None:
    """Check the store: filesystem, WAL, schema, stale leases, queues without workers,
    overdue tasks, expired results; Redis persistence and eviction. Exit code 1 when a
    check fails (warnings alone exit 0).

    \b
    liteq doctor tasks.db
    liteq doctor redis://localhost:6379/0 --json
    """
    app, _ = resolve(ctx, app_path, database)
    checks = diagnose(app)
    if as_json:
        click.echo(json.dumps([check.as_dict() for check in checks], indent=2))
    else:
        for check in checks:
            click.echo(check.line())
    ctx.exit(exit_code(checks))


__all__ = ["doctor"]
