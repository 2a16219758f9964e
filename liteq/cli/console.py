"""``liteq console`` (the web console) and ``liteq metrics`` (Prometheus alone)."""

from __future__ import annotations

import ipaddress
from wsgiref.simple_server import make_server

import click

from liteq.cli.base import app_option, cli, handle_errors, read_only, resolve

TOKEN_ENV = "LITEQ_CONSOLE_TOKEN"
EXTRA = 'the console needs the console extra: pip install "liteq[console]"'


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: a bind no other machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(asgi: object, host: str, port: int, what: str) -> None:
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(EXTRA) from None
    click.echo(f"liteq {what}: http://{host if ':' not in host else f'[{host}]'}:{port}/ "
               "(Ctrl-C to stop)", err=True)
    uvicorn.run(asgi, host=host, port=port, log_level="warning",  # type: ignore[arg-type]
                access_log=False)


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE|URL]")
@app_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any but a loopback one needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True)
@click.option("--token", default=None, envvar=TOKEN_ENV, show_envvar=True,
              help="Every request must carry it (required off loopback).")
@click.option("--read-only", "read_only_", is_flag=True,
              help="Show only: no retry, revoke, terminate or purge.")
@click.option("--hide", multiple=True, metavar="PATTERN",
              help="Hide the arguments and results of tasks whose name matches "
                   "(glob; repeatable; also the console_hidden_tasks setting).")
@click.pass_context
@handle_errors
@read_only
def console(ctx: click.Context, database: str | None, app_path: str | None, host: str,
            port: int, token: str | None, read_only_: bool, hide: tuple[str, ...]) -> None:
    """Serve the web console: queues, tasks, workers and beat, read from the store.

    \b
    liteq console tasks.db
    liteq console redis://localhost:6379/0 --read-only
    LITEQ_CONSOLE_TOKEN=s3cret liteq console tasks.db --host 0.0.0.0
    """
    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"binding {host} exposes the console to other machines: give a token with "
            f"--token or {TOKEN_ENV} (or bind 127.0.0.1)")
    try:
        from liteq.console import create_app
    except ImportError:
        raise click.ClickException(EXTRA) from None
    app, _ = resolve(ctx, app_path, database)
    _serve(create_app(app, token=token or None, read_only=read_only_, hidden=hide),
           host, port, "console")


@cli.command()
@click.argument("database", required=False, metavar="[DATABASE|URL]")
@app_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=9808, show_default=True)
@click.pass_context
@handle_errors
@read_only
def metrics(ctx: click.Context, database: str | None, app_path: str | None, host: str,
            port: int) -> None:
    """Serve Prometheus metrics of the store at /metrics, without the console.

    \b
    liteq metrics tasks.db --port 9808
    """
    try:
        from prometheus_client import make_wsgi_app

        from liteq.console.metrics import registry_for
    except ImportError:
        raise click.ClickException(EXTRA) from None
    app, _ = resolve(ctx, app_path, database)
    registry, _collector = registry_for(app)
    click.echo(f"liteq metrics: http://{host}:{port}/metrics (Ctrl-C to stop)", err=True)
    server = make_server(host, port, make_wsgi_app(registry))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["console", "is_loopback", "metrics"]
