"""Everything that differs between Linux, macOS and Windows, in one module.

The rest of liteq asks here instead of testing ``sys.platform`` or reaching for a
POSIX-only call itself:

- **Start method** of prefork children: ``spawn`` where ``fork`` is unsafe (macOS,
  whose system libraries are not fork-safe) or absent (Windows); Python's default
  elsewhere. ``worker_pool_start_method`` / ``--start-method`` choose another, and the
  environment variable ``LITEQ_START_METHOD`` overrides the default for a whole run
  (the test suite's spawn run uses it).
- **Signals**: a cold shutdown also listens to ``SIGQUIT`` where it exists; killing a
  child uses ``Process.kill()`` (SIGKILL on POSIX, ``TerminateProcess`` on Windows);
  a revoke's ``terminate`` signal falls back to that kill where the named signal does
  not exist.
- **Wake-ups**: :class:`WakePipe` (a pipe on POSIX, a socket pair on Windows, where
  ``select()`` takes sockets only) wakes a loop within the process; between processes
  on a SQLite file, :func:`wakeup_kind` picks named pipes (FIFOs) beside the database
  where the OS has them, else loopback UDP datagrams (``LITEQ_WAKEUPS=udp`` forces
  those, so Linux CI tests the portable path).
- **Process facts**: dying with the parent (Linux ``prctl``), resident memory.

``platforms.C_FORCE_ROOT = True`` is harmless here: liteq's default serializer is json
and pickle is accepted only when listed, so running as root needs no permission (a
worker started as root logs a warning, nothing more).

Tested where: Linux runs every test with fork (Python's default there), the behaviour
suite once more with ``LITEQ_START_METHOD=spawn`` (the macOS and Windows default), and
the wake-up tests with both FIFOs and UDP. macOS and Windows themselves are not run in
CI.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
from types import ModuleType
from typing import Any

from liteq.exceptions import ImproperlyConfigured

try:  # POSIX only
    import resource as _posix_resource
except ImportError:  # pragma: no cover - Windows
    _posix_resource = None  # type: ignore[assignment]
_resource: ModuleType | None = _posix_resource

#: Accepted for Celery compatibility; liteq never refuses to run as root.
C_FORCE_ROOT = False

IS_WINDOWS = sys.platform == "win32"
IS_MACOS = sys.platform == "darwin"
IS_LINUX = sys.platform.startswith("linux")

START_METHOD_ENV = "LITEQ_START_METHOD"
WAKEUPS_ENV = "LITEQ_WAKEUPS"
_START_METHODS = ("fork", "forkserver", "spawn")


def default_start_method() -> str | None:
    """The start method prefork children use unless a setting names one.

    ``LITEQ_START_METHOD`` when set; ``spawn`` on macOS and Windows; else None
    (Python's default: ``fork`` on Linux before Python 3.14).

    Raises:
        ImproperlyConfigured: ``LITEQ_START_METHOD`` names no start method.
    """
    chosen = os.environ.get(START_METHOD_ENV, "").strip().lower()
    if chosen:
        if chosen not in _START_METHODS:
            raise ImproperlyConfigured(
                f"{START_METHOD_ENV}={chosen!r}: choose fork, forkserver or spawn")
        return chosen
    if IS_MACOS or IS_WINDOWS:
        return "spawn"
    return None


def start_method(configured: str | None) -> str:
    """The start method children will really use (``configured`` wins)."""
    method = configured or default_start_method()
    return method or multiprocessing.get_start_method(allow_none=False)


def has_alarm() -> bool:
    """True where ``SIGALRM`` and interval timers exist (not on Windows): the main
    thread's time limits use them, other threads (and Windows) use timer threads."""
    return hasattr(signal, "SIGALRM") and hasattr(signal, "setitimer")


def at_fork(after_in_child: Any) -> None:
    """Call ``after_in_child()`` in a child created by ``fork`` (nothing where there
    is no fork: nothing is ever inherited there)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_in_child)


def shutdown_signals() -> tuple[list[signal.Signals], list[signal.Signals]]:
    """The signals a worker handles: (warm, cold). Windows has no ``SIGQUIT``."""
    warm = [signal.SIGTERM, signal.SIGINT]
    cold = [signal.SIGQUIT] if hasattr(signal, "SIGQUIT") else []
    return warm, cold


def kill_signal() -> int:
    """The signal number of a kill that cannot be caught (SIGKILL; Windows: SIGTERM,
    which ``os.kill`` turns into ``TerminateProcess``)."""
    return int(getattr(signal, "SIGKILL", signal.SIGTERM))


def signal_number(name: str | None) -> int | None:
    """The number of signal ``name`` (``"TERM"`` or ``"SIGTERM"``) here, or None when
    this platform lacks it."""
    if not name:
        return None
    name = name.upper()
    value = getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)
    return int(value) if isinstance(value, int) else None


def kill_process(process: Any) -> None:
    """Kill a ``multiprocessing.Process`` (or ``Popen``) now, if it still runs."""
    with contextlib.suppress(ProcessLookupError, OSError, ValueError):
        if getattr(process, "exitcode", None) is None:
            process.kill()


def send_signal(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid`` (ignoring a process that is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


_PR_SET_PDEATHSIG = 1


def parent_death_signal() -> int | None:
    """The signal a pool process gets when its worker dies (Linux: ``SIGUSR2``, which
    it handles: it gives back its unstarted tasks, then exits), or None where the
    platform sends none (children notice on their control pipe)."""
    return int(signal.SIGUSR2) if IS_LINUX else None


def die_with_parent(signum: int | None = None) -> None:
    """Linux: get ``signum`` (default: killed) when the parent dies, so no pool child
    outlives its worker. Elsewhere children notice their parent's end on their control
    pipe."""
    if not IS_LINUX:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, kill_signal() if signum is None else signum)
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        pass


def rss_kib() -> int:
    """This process's resident memory in KiB: current on Linux (``/proc``), the peak
    elsewhere on POSIX, 0 where neither is known."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    if _resource is None:  # pragma: no cover - Windows
        return 0
    peak = int(_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss)
    return peak // 1024 if IS_MACOS else peak  # macOS reports bytes


def wakeup_kind() -> str:
    """How processes on one SQLite file wake each other: ``"fifo"`` (named pipes
    beside the database) where the OS has them, else ``"udp"`` (loopback datagrams);
    ``LITEQ_WAKEUPS`` forces one."""
    forced = os.environ.get(WAKEUPS_ENV, "").strip().lower()
    if forced in ("fifo", "udp"):
        return forced if forced == "udp" or hasattr(os, "mkfifo") else "udp"
    return "fifo" if hasattr(os, "mkfifo") else "udp"


class WakePipe:
    """A self-pipe: :meth:`wake` from any thread (or a signal, through
    :attr:`write_fd`) makes :meth:`fileno` readable for a ``select()`` loop.

    A pipe on POSIX; a connected socket pair on Windows, where ``select()`` and
    ``signal.set_wakeup_fd()`` take sockets only.
    """

    def __init__(self) -> None:
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        if IS_WINDOWS:  # pragma: no cover - Windows
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._sockets = (reader, writer)
            self.read_fd, self.write_fd = reader.fileno(), writer.fileno()
        else:
            self.read_fd, self.write_fd = os.pipe()
            os.set_blocking(self.read_fd, False)
            os.set_blocking(self.write_fd, False)
        self.closed = False

    def fileno(self) -> int:
        return self.read_fd

    def wake(self) -> None:
        """Make the read end readable (a full pipe has a wake-up pending already)."""
        try:
            if self._sockets is not None:  # pragma: no cover - Windows
                self._sockets[1].send(b"\0")
            else:
                os.write(self.write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass

    def drain(self) -> None:
        """Consume pending wake-ups."""
        try:
            while True:
                if self._sockets is not None:  # pragma: no cover - Windows
                    if not self._sockets[0].recv(4096):
                        return
                elif not os.read(self.read_fd, 4096):
                    return
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sockets is not None:  # pragma: no cover - Windows
            for sock in self._sockets:
                sock.close()
            return
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


__all__ = [
    "C_FORCE_ROOT",
    "IS_LINUX",
    "IS_MACOS",
    "IS_WINDOWS",
    "WakePipe",
    "at_fork",
    "default_start_method",
    "die_with_parent",
    "has_alarm",
    "kill_process",
    "kill_signal",
    "parent_death_signal",
    "rss_kib",
    "send_signal",
    "shutdown_signals",
    "signal_number",
    "start_method",
    "wakeup_kind",
]
