"""``liteq multi``: start and stop workers in the background, as ``celery multi``.

Nodes are named (``w1 w2``, ``w1@%h``) or numbered: ``liteq multi start 3`` starts
``liteq1@host``, ``liteq2@host`` and ``liteq3@host`` (``--range-prefix`` changes
``liteq``; ``-n/--hostname`` the host). Worker options after the names go to every
node; ``-OPT:SPEC VALUE`` (or ``--long:SPEC=VALUE``) gives one to some nodes only, in
place of the common one, where SPEC is node numbers (``1``, ``1-3``, ``1,3``) or names
(``w1``)::

    liteq multi start 3 -A proj -c 3 -c:1 10 -Q:1-2 images,video -Q:3 data

Each node runs ``liteq worker --detach`` with a pid file (``--pidfile``, default
``%n.pid``) and a log file (``--logfile``, default ``%n%I.log``) in the current
directory. ``stop`` sends SIGTERM (a warm shutdown), ``stopwait`` also waits for the
workers to finish their running tasks, ``kill`` sends SIGKILL, ``restart`` is
``stopwait`` then ``start``, ``show`` prints the commands. Processes are found by their
pid files only, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import click
from filelock import FileLock, Timeout

from liteq import platforms
from liteq.cli.base import cli
from liteq.cli.daemon import alive, expand_path, read_pid
from liteq.cli.inspect import looks_like_store
from liteq.worker import expand_nodename

ACTIONS = ("start", "stop", "stopwait", "restart", "kill", "show")
#: ``-Q:1-3`` / ``--queues:w1`` (value follows) or ``--queues:w1=data``
_PER_NODE = re.compile(r"\A(-{1,2}[A-Za-z][\w-]*):([^=]+)(?:=(.*))?\Z", re.DOTALL)


@dataclass
class Node:
    """One node: its full name, its number (from 1) and its ``liteq worker`` arguments."""

    name: str
    index: int
    args: list[str]

    @property
    def short(self) -> str:
        return self.name.partition("@")[0]


def _worker_options() -> dict[str, tuple[str, bool]]:
    """Option string -> (the option's name, whether it takes a value), from ``worker``."""
    command = cli.commands["worker"]
    found: dict[str, tuple[str, bool]] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            takes_value = not param.is_flag and not param.count
            for opt in (*param.opts, *param.secondary_opts):
                found[opt] = (param.name or opt, takes_value)
    return found


def _split_common(tokens: list[str], options: dict[str, tuple[str, bool]]
                  ) -> list[tuple[str | None, list[str]]]:
    """Common worker arguments grouped as (option name or None, its tokens)."""
    groups: list[tuple[str | None, list[str]]] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        flag, has_value, _ = token.partition("=")
        known = options.get(flag)
        if known is not None and known[1] and not has_value and position + 1 < len(tokens):
            groups.append((known[0], [token, tokens[position + 1]]))
            position += 2
            continue
        groups.append((known[0] if known else None, [token]))
        position += 1
    return groups


def _selects(spec: str, node: Node) -> bool:
    for part in spec.split(","):
        part = part.strip()
        bounds = re.fullmatch(r"(\d+)-(\d+)", part)
        if bounds and int(bounds[1]) <= node.index <= int(bounds[2]):
            return True
        if part.isdigit() and int(part) == node.index:
            return True
        if part in (node.short, node.name):
            return True
    return False


def plan(names: Sequence[str], extra: Sequence[str], *, range_prefix: str = "liteq"
         ) -> list[Node]:
    """The nodes ``liteq multi`` names and each one's worker arguments.

    Example:
        >>> [n.args for n in plan(["2"], ["-c", "3", "-c:1", "10"])]  # doctest: +SKIP
        [['-c', '10'], ['-c', '3']]
    """
    tokens = list(extra)
    host = socket.gethostname()
    for flag in ("-n", "--hostname"):  # multi's -n is the host of generated names
        if flag in tokens:
            at = tokens.index(flag)
            if at + 1 >= len(tokens):
                raise click.UsageError(f"{flag} needs a host name")
            host = tokens[at + 1]
            del tokens[at:at + 2]
    if len(names) == 1 and names[0].isdigit():
        count = int(names[0])
        if count < 1:
            raise click.UsageError("start at least one node")
        full = [f"{range_prefix}{i}@{host}" for i in range(1, count + 1)]
    else:
        full = [name if "@" in name else f"{name}@{host}" for name in names]
    nodes = [Node(expand_nodename(name), i + 1, []) for i, name in enumerate(full)]
    per_node: list[tuple[str, str, str]] = []
    common: list[str] = []
    position = 0
    while position < len(tokens):
        match = _PER_NODE.match(tokens[position])
        if match is None:
            common.append(tokens[position])
            position += 1
            continue
        option, spec, value = match[1], match[2], match[3]
        if value is None:
            if position + 1 >= len(tokens):
                raise click.UsageError(f"{tokens[position]} needs a value")
            value = tokens[position + 1]
            position += 1
        per_node.append((option, spec, value))
        position += 1
    options = _worker_options()
    groups = _split_common(common, options)
    for node in nodes:
        own = [(option, value) for option, spec, value in per_node if _selects(spec, node)]
        replaced = {options.get(option, (option, True))[0] for option, _ in own}
        args = [token for name, group in groups if name is None or name not in replaced
                for token in group]
        for option, value in own:
            takes_value = options.get(option, (option, True))[1]
            args += [option, value] if takes_value else [option]
        node.args = args
    return nodes


def _command(node: Node, pidfile: str, logfile: str) -> list[str]:
    return [sys.executable, "-m", "liteq", "worker", "-n", node.name, "--pidfile", pidfile,
            "--logfile", logfile, "--detach", "--no-banner", *node.args]


def _start(node: Node, pidfile: str, logfile: str) -> bool:
    # The lock keeps two `multi start` runs from starting the same node twice.
    try:
        with FileLock(pidfile + ".lock", timeout=10):
            running = read_pid(pidfile)
            if running is not None:
                click.echo(f"> {node.name}: already running (pid {running})")
                return True
            done = subprocess.run(_command(node, pidfile, logfile), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, check=False)
    except Timeout:
        raise click.ClickException(f"{pidfile}.lock is held by another liteq multi") from None
    pid = read_pid(pidfile)
    if done.returncode != 0 or pid is None:
        reason = (done.stderr.strip().splitlines() or [f"see {logfile}"])[-1]
        click.echo(f"> {node.name}: FAILED: {reason}", err=True)
        return False
    click.echo(f"> {node.name}: OK (pid {pid})")
    return True


def _signal(node: Node, pidfile: str, signum: int, wait: bool) -> None:
    pid = read_pid(pidfile)
    if pid is None:
        click.echo(f"> {node.name}: not running")
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    click.echo(f"> {node.name}: {signal.Signals(signum).name} -> {pid}")
    if not wait:
        return
    while alive(pid):  # gone, not just its pid file removed
        time.sleep(0.1)
    click.echo(f"> {node.name}: stopped")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("names", nargs=-1, type=click.UNPROCESSED)
@click.option("--pidfile", default="%n.pid", show_default=True, help="Pid file per node.")
@click.option("--logfile", default="%n%I.log", show_default=True, help="Log file per node.")
@click.option("--range-prefix", default="liteq", show_default=True,
              help="Name prefix of numbered nodes (start 3: liteq1, liteq2, liteq3).")
@click.pass_context
def multi(ctx: click.Context, action: str, names: tuple[str, ...], pidfile: str,
          logfile: str, range_prefix: str) -> None:
    """Start, stop or restart workers in the background (as celery multi).

    \b
    liteq multi start w1 w2 -A proj -l info      # worker options after the names
    liteq multi start 3 -A proj -c 3 -Q:1-2 images,video -Q:3 data
    liteq multi stopwait 3
    liteq multi show 3 -A proj -c:1 10
    """
    first_option = next((i for i, token in enumerate(names) if token.startswith("-")),
                        len(names))
    given = list(names[:first_option])  # the names come first, worker options after
    extra = list(names[first_option:]) + list(ctx.args)
    stores = [name for name in given if looks_like_store(name)]
    given = [name for name in given if name not in stores]
    app_path = getattr(ctx.obj, "app_path", None)  # liteq -A proj multi ...
    if app_path and "-A" not in extra and "--app" not in extra:
        extra = ["-A", app_path, *extra]
    broker = getattr(ctx.obj, "broker", None)  # liteq -b tasks.db multi ...
    extra = [*stores, *([broker] if broker and not stores else []), *extra]
    if not given:
        raise click.UsageError("name the nodes or give their number: liteq multi start 3 "
                               "-A proj, liteq multi start w1 w2 -A proj")
    failed = False
    for node in plan(given, extra, range_prefix=range_prefix):
        pid_path = expand_path(pidfile, node.name)
        log_path = expand_path(logfile, node.name)
        if action == "show":
            click.echo(" ".join(_command(node, pid_path, log_path)))
        elif action == "start":
            failed |= not _start(node, pid_path, log_path)
        elif action == "kill":
            _signal(node, pid_path, platforms.kill_signal(), wait=False)
        elif action in ("stop", "stopwait", "restart"):
            _signal(node, pid_path, signal.SIGTERM, wait=action != "stop")
            if action == "restart":
                failed |= not _start(node, pid_path, log_path)
    if failed:
        ctx.exit(1)


__all__ = ["Node", "multi", "plan"]
