"""Wake-ups beside the database: named pipes (FIFOs) in ``<db>-liteq/``.

An idle worker (or a caller waiting in ``get()``) blocks on a FIFO of its own in
``workers/`` (or ``waiters/``). After a commit, the publisher writes one byte to each
pipe there, so the sleeper wakes within microseconds instead of polling the database.
It costs the publisher a ``stat()`` and one ``write()`` per listener, and an idle
sleeper nothing.

FIFOs rather than sockets: they have no path length limit, and they work between
containers that share the volume on one host. A listener opens its own pipe for
reading *and* writing, so it never sees end-of-file; a pipe whose listener died has no
reader, which publishers notice (ENXIO / EPIPE) and remove.

Where the OS has no FIFOs (Windows), or ``LITEQ_WAKEUPS=udp`` asks for it, a listener
is a UDP socket on the loopback interface instead, announced by an empty file
``<name>~<token>@<port>.udp`` in the same directory; publishers send it a datagram
(``liteq.platforms.wakeup_kind()`` chooses). Publishers handle both kinds, so
processes of either kind share one file.

Wake-ups are hints: a missed one costs only latency, since sleepers also wake on a
timeout and look at the database.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import select
import socket
import stat
import threading
import time
from collections.abc import Iterable

from liteq import platforms

logger = logging.getLogger(__name__)

WORKERS, WAITERS = "workers", "waiters"
#: A waiter whose name starts with this wants every result's wake-up.
ANY_TASK = "*"
_RESCAN_AFTER = 1.0  # seconds; covers filesystems with coarse directory mtimes


class Listener:
    """One FIFO that wakes its owner."""

    def __init__(self, directory: str, name: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{name}~{secrets.token_hex(6)}")
        temporary = self.path + ".new"
        os.mkfifo(temporary, 0o600)
        # Open before it becomes visible, so no publisher ever finds it readerless.
        self._fd = os.open(temporary, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        os.rename(temporary, self.path)
        self._pid = os.getpid()

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> None:
        """Consume pending wake-ups."""
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a wake-up; True if one came."""
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        if ready:
            self.drain()
        return bool(ready)

    def close(self) -> None:
        if self._fd < 0:
            return
        if os.getpid() == self._pid:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UdpListener:
    """A loopback UDP socket that wakes its owner (where there are no FIFOs)."""

    def __init__(self, directory: str, name: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.setblocking(False)
        port = self._sock.getsockname()[1]
        self.path = os.path.join(directory, f"{name}~{secrets.token_hex(6)}@{port}{_UDP}")
        with open(self.path + ".new", "wb"):
            pass
        os.replace(self.path + ".new", self.path)
        self._pid = os.getpid()

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> None:
        """Consume pending wake-ups."""
        try:
            while True:
                self._sock.recv(64)
        except OSError:  # BlockingIOError: empty; others: nothing left to read
            pass

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a wake-up; True if one came."""
        ready, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
        if ready:
            self.drain()
        return bool(ready)

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        if os.getpid() == self._pid:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._sock.close()

    def __enter__(self) -> UdpListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UDP = ".udp"


def _listener(directory: str, name: str) -> Listener | UdpListener:
    if platforms.wakeup_kind() == "udp":
        return UdpListener(directory, name)
    return Listener(directory, name)


class Notifier:
    """Writes wake-ups to the listeners of one kind, caching their open pipes."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fds: dict[str, int | socket.socket] = {}
        self._mtime = -1
        self._scanned = 0.0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _refresh(self) -> None:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        now = time.monotonic()
        if mtime == self._mtime and now - self._scanned < _RESCAN_AFTER:
            return
        self._mtime, self._scanned = mtime, now
        try:
            names = [n for n in os.listdir(self.directory) if not n.endswith(".new")]
        except FileNotFoundError:
            names = []
        for gone in set(self._fds) - set(names):
            _close(self._fds.pop(gone))
        for name in names:
            if name not in self._fds:
                self._open(name)

    def _open(self, name: str) -> None:
        path = os.path.join(self.directory, name)
        if name.endswith(_UDP):
            try:
                port = int(name[: -len(_UDP)].rpartition("@")[2])
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                # Connected: a port nobody listens on any more fails the next send.
                sock.connect(("127.0.0.1", port))
            except (ValueError, OSError) as exc:
                logger.debug("wake-up socket %s: %s", path, exc)
                return
            # POSIX writes to a connected datagram socket's descriptor like a pipe's
            # (and a bare descriptor left behind by a fork warns nobody).
            self._fds[name] = sock if platforms.IS_WINDOWS else sock.detach()
            return
        try:
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                return
            self._fds[name] = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody reads it: its listener died
                self._remove(path)
            elif exc.errno != errno.ENOENT:
                logger.debug("wake-up pipe %s: %s", path, exc)

    def _remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def notify(self, task_ids: Iterable[str] | None = None) -> None:
        """Wake every listener, or (for waiters) those waiting on one of ``task_ids``."""
        with self._lock:
            if os.getpid() != self._pid:  # forked: the cached pipes are the parent's
                self._fds, self._mtime, self._pid = {}, -1, os.getpid()
            self._refresh()
            if not self._fds:
                return
            wanted = None if task_ids is None else {_safe(task_id) for task_id in task_ids}
            for name, fd in list(self._fds.items()):
                if wanted is not None:
                    target = name.partition("~")[0]
                    if target != ANY_TASK and target not in wanted:
                        continue
                try:
                    if isinstance(fd, socket.socket):
                        fd.send(b"\0")
                    else:
                        os.write(fd, b"\0")
                except BlockingIOError:
                    pass  # the pipe is full of wake-ups already
                except OSError:  # its listener is gone (EPIPE, ECONNREFUSED)
                    _close(self._fds.pop(name))
                    self._remove(os.path.join(self.directory, name))

    def close(self) -> None:
        with self._lock:
            if os.getpid() == self._pid:
                for fd in self._fds.values():
                    _close(fd)
            self._fds = {}
            self._mtime = -1


class WakeDir:
    """The ``<db>-liteq/`` directory of wake-up pipes for one database file."""

    def __init__(self, db_path: str) -> None:
        self.root = os.path.abspath(db_path) + "-liteq"
        self.workers = Notifier(os.path.join(self.root, WORKERS))
        self.waiters = Notifier(os.path.join(self.root, WAITERS))

    def _ensure_root(self) -> None:
        try:
            os.mkdir(self.root, 0o700)
        except FileExistsError:
            pass

    def worker_listener(self, name: str) -> Listener | UdpListener:
        """A pipe for an idle worker, woken by every publish."""
        self._ensure_root()
        return _listener(os.path.join(self.root, WORKERS), _safe(name))

    def result_listener(self, task_ids: list[str]) -> Listener | UdpListener:
        """A pipe for a caller waiting for ``task_ids`` (one id, or any of several)."""
        self._ensure_root()
        name = task_ids[0] if len(task_ids) == 1 else ANY_TASK
        return _listener(os.path.join(self.root, WAITERS), _safe(name))

    def close(self) -> None:
        self.workers.close()
        self.waiters.close()


def _close(fd: int | socket.socket) -> None:
    if isinstance(fd, socket.socket):
        fd.close()
    else:
        os.close(fd)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@*" else "_" for ch in name)[:100]


__all__ = ["Listener", "Notifier", "UdpListener", "WakeDir"]
