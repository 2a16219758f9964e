"""``liteq multi``: start and stop named workers in the background, as ``celery multi``.

Each node runs ``liteq worker -n <name>@<host>`` detached, with a pid file
(``--pidfile``, default ``%n.pid``) and a log file (``--logfile``, default ``%n%I.log``)
in the current directory. ``stop`` sends SIGTERM (a warm shutdown), ``stopwait`` waits
for the workers to finish their running tasks, ``kill`` sends SIGKILL, ``restart`` is
``stopwait`` then ``start``, ``show`` prints the commands. Processes are found by their
pid files only, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import click
from filelock import FileLock, Timeout

from liteq.cli.base import cli

ACTIONS = ("start", "stop", "stopwait", "restart", "kill", "show")


def _expand(template: str, node: str, host: str) -> str:
    name = node.partition("@")[0]
    return (template.replace("%n", name).replace("%h", host).replace("%I", "")
            .replace("%i", "0").replace("%d", host.partition(".")[2]))


def _node(name: str, host: str) -> str:
    return name if "@" in name else f"{name}@{host}"


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _command(node: str, pidfile: str, logfile: str, extra: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "liteq", "worker", "-n", node, "--pidfile", pidfile,
            "--logfile", logfile, "--no-banner", *extra]


def _start(node: str, pidfile: str, logfile: str, extra: Sequence[str]) -> None:
    # The lock keeps two `multi start` runs from starting the same node twice.
    try:
        with FileLock(pidfile + ".lock", timeout=10):
            running = _read_pid(pidfile)
            if running is not None:
                click.echo(f"> {node}: already running (pid {running})")
                return
            with open(os.devnull, "rb") as devnull:
                process = subprocess.Popen(
                    _command(node, pidfile, logfile, extra), stdin=devnull,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _read_pid(pidfile) is None:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
    except Timeout:
        raise click.ClickException(f"{pidfile}.lock is held by another liteq multi") from None
    if _read_pid(pidfile) is None:
        raise click.ClickException(f"{node} did not start; see {logfile}")
    click.echo(f"> {node}: OK (pid {_read_pid(pidfile)})")


def _signal(node: str, pidfile: str, signum: int, wait: bool) -> bool:
    pid = _read_pid(pidfile)
    if pid is None:
        click.echo(f"> {node}: not running")
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    click.echo(f"> {node}: {signal.Signals(signum).name} -> {pid}")
    if not wait:
        return True
    while _read_pid(pidfile) == pid:
        time.sleep(0.1)
    click.echo(f"> {node}: stopped")
    return True


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("names", nargs=-1, type=click.UNPROCESSED)
@click.option("--pidfile", default="%n.pid", show_default=True, help="Pid file per node.")
@click.option("--logfile", default="%n%I.log", show_default=True, help="Log file per node.")
@click.pass_context
def multi(ctx: click.Context, action: str, names: tuple[str, ...], pidfile: str,
          logfile: str) -> None:
    """Start, stop or restart named workers in the background (as celery multi).

    \b
    liteq multi start w1 w2 -A proj -l info      # worker options after the names
    liteq multi stopwait w1 w2
    liteq multi show w1 -A proj
    """
    host = socket.gethostname()
    first_option = next((i for i, token in enumerate(names) if token.startswith("-")),
                        len(names))
    nodes = list(names[:first_option])  # the names come first, worker options after
    extra = list(names[first_option:]) + list(ctx.args)
    app_path = getattr(ctx.obj, "app_path", None)  # liteq -A proj multi ...
    if app_path and "-A" not in extra and "--app" not in extra:
        extra = ["-A", app_path, *extra]
    if not nodes:
        raise click.UsageError("name at least one node: liteq multi start w1 -A proj")
    for name in nodes:
        node = _node(name, host)
        pid_path = _expand(pidfile, node, host)
        log_path = _expand(logfile, node, host)
        if action == "show":
            click.echo(" ".join(_command(node, pid_path, log_path, extra)))
        elif action == "start":
            _start(node, pid_path, log_path, extra)
        elif action == "kill":
            _signal(node, pid_path, signal.SIGKILL, wait=False)
        elif action in ("stop", "stopwait", "restart"):
            _signal(node, pid_path, signal.SIGTERM, wait=action != "stop")
            if action == "restart":
                _start(node, pid_path, log_path, extra)


__all__ = ["multi"]
