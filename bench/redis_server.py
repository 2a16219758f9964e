"""A private ``redis-server`` on a free 127.0.0.1 port, for the Redis-backed systems.

It runs without persistence (``--save "" --appendonly no``) so snapshots never land in
a measurement, and is flushed (``FLUSHALL``) before every run. The harness talks RESP
over a plain socket, so the liteq venv needs no redis package.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bench import procs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    """One redis-server process, stopped by its pid.

    Example:
        >>> with RedisServer() as server:  # doctest: +SKIP
        ...     server.command("PING")
        'PONG'
    """

    def __init__(self) -> None:
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="liteq-bench-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        for _attempt in range(3):
            self.port = free_port()
            argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port),
                    "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                    "--protected-mode", "yes", "--daemonize", "no"]
            self.process = procs.spawn(procs.Command(argv, str(self.dir), label="redis"),
                                       self.dir / "redis.log")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if self.command("PING") == "PONG":
                        info = self.command("INFO", "server")
                        self.version = _field(info, "redis_version")
                        return self
                except OSError:
                    time.sleep(0.05)
            procs.stop([self.process], timeout=2)  # the port was taken meanwhile: retry
        raise RuntimeError(f"redis-server did not start: {procs.tail(self.dir / 'redis.log')}")

    def command(self, *args: str) -> str:
        """Send one command and return its reply as text (integers as text too)."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(payload)
            return _read_reply(sock.makefile("rb"))

    def flush(self) -> None:
        if self.command("FLUSHALL") != "OK":
            raise RuntimeError("FLUSHALL failed")

    def stop(self) -> None:
        if self.process is not None:
            procs.stop([self.process], timeout=5)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_reply(stream: object) -> str:
    line = stream.readline()  # type: ignore[attr-defined]
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n").decode()
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        raise RuntimeError(f"redis: {rest}")
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return ""
        data = stream.read(size + 2)  # type: ignore[attr-defined]
        return str(data[:-2].decode())
    raise OSError(f"unexpected redis reply {line!r}")


def _field(info: str, name: str) -> str:
    for line in info.splitlines():
        if line.startswith(name + ":"):
            return line.partition(":")[2].strip()
    return ""
