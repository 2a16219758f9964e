"""Running in the background: ``--detach`` and ``--pidfile`` for ``worker`` and ``beat``.

As in Celery's Daemonization guide: ``-D/--detach`` forks twice, starts a new session,
keeps the working directory, points stdin at ``/dev/null`` and stdout/stderr at the log
file, and writes the pid file; the command returns once the daemon wrote it (or says why
it did not start). A pid file naming a live process refuses the start; a stale one (its
process is gone) is replaced; the daemon removes its pid file when it exits. Paths
expand ``%n`` (node name), ``%h`` (host), ``%d`` (domain), ``%p`` (full node name), ``%i``
(process index, 0 for the main process) and ``%I`` (``-index``, empty for it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import click

#: Seconds the detaching command waits for the daemon to write its pid file.
START_TIMEOUT = 30.0


def expand_path(template: str, nodename: str) -> str:
    """Expand Celery's ``%`` variables in a pid or log file name for a node.

    Example:
        >>> expand_path("/var/run/%n.pid", "w1@example.com")
        '/var/run/w1.pid'
    """
    name, _, host = nodename.partition("@")
    if not host:
        name, host = "", name
    return (template.replace("%p", nodename).replace("%n", name or host)
            .replace("%h", host).replace("%d", host.partition(".")[2])
            .replace("%I", "").replace("%i", "0").replace("%%", "%"))


def read_pid(path: str) -> int | None:
    """The pid in ``path`` if that process is alive, else None (no file, or stale)."""
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and alive(pid) else None


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, exited but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no procfs: kill() said it exists
        return True


def refuse_if_running(path: str | None) -> None:
    """Refuse to start when the pid file names a live process (not this one)."""
    if not path:
        return
    other = read_pid(path)
    if other is not None and other != os.getpid():
        raise click.ClickException(
            f"pidfile {path} belongs to running process {other}; stop it first "
            "(or remove the file if that process is not liteq)")


@contextlib.contextmanager
def holding_pidfile(path: str | None) -> Iterator[None]:
    """Write our pid to ``path`` while the block runs; refuse when another live
    process holds it. The file is removed at the end if it still names us."""
    if not path:
        yield
        return
    refuse_if_running(path)
    # Until the service installs its own handlers, SIGTERM ends the start-up cleanly
    # (the file is removed) instead of killing the process outright.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temporary, path)  # atomic: a reader never sees it half written
    try:
        yield
    finally:
        if read_pid(path) == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(path)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def detach(pidfile: str, logfile: str) -> None:
    """Become a daemon (in the grandchild); the calling process exits here.

    The caller returns from this function only in the daemon, with stdin on
    ``/dev/null`` and stdout/stderr appended to ``logfile``. The original process waits
    until the daemon wrote ``pidfile`` and exits 0 (1, naming the log file, when the
    daemon ended first).
    """
    refuse_if_running(pidfile)
    folder = os.path.dirname(os.path.abspath(pidfile))
    if not os.access(folder, os.W_OK):
        raise click.ClickException(f"cannot write the pidfile {pidfile}: {folder} is not "
                                   "a writable directory")
    with open(logfile, "ab"):  # fail here, in the foreground, if it cannot be written
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    reader, writer = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(writer)
        _wait_for_daemon(first, reader, pidfile, logfile)
    os.close(reader)
    os.setsid()
    second = os.fork()
    if second > 0:  # the session leader goes: the daemon can never get a terminal
        os.write(writer, f"{second}".encode())
        os._exit(0)
    os.close(writer)
    with open(os.devnull, "rb") as devnull:
        os.dup2(devnull.fileno(), 0)
    log_fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def _wait_for_daemon(first: int, reader: int, pidfile: str, logfile: str) -> None:
    os.waitpid(first, 0)
    with os.fdopen(reader, "rb") as pipe:
        daemon = int(pipe.read() or 0)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and daemon and alive(daemon):
        if read_pid(pidfile) == daemon:
            click.echo(f"started in the background (pid {daemon}); log: {logfile}",
                       err=True)
            os._exit(0)
        time.sleep(0.05)
    why = "exited" if not daemon or not alive(daemon) else \
        f"did not write {pidfile} within {START_TIMEOUT:g}s"
    click.echo(f"Error: the daemon {why}; see {logfile}", err=True)
    os._exit(1)


__all__ = ["alive", "detach", "expand_path", "holding_pidfile", "read_pid", "refuse_if_running"]
