"""Real Redis for the tests: ``redis-server`` on a free loopback port, stopped by pid.

One server per session (no persistence) serves every test; each test gets a database
of its own, flushed first. Tests that kill and restart Redis start their own
:class:`RedisServer`. Without a ``redis-server`` binary the Redis cases skip, except
under ``CI=true``, where they fail (``.ci/run`` installs it).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
#: Databases the session server has; tests cycle through 1..DATABASES-1.
DATABASES = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server binary, or skip (fail under CI=true, where it must run)."""
    if REDIS_SERVER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI=true needs the Redis tests")
        pytest.skip("redis-server is not installed")
    return REDIS_SERVER


class RedisServer:
    """One ``redis-server`` process bound to 127.0.0.1, in its own directory."""

    def __init__(self, directory: Path, *, port: int | None = None, appendonly: bool = False,
                 password: str | None = None, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0, *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        auth = f":{secret}@" if secret else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        command = [require_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", str(self.directory), "--save", "", "--databases", str(DATABASES),
                   "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no",
                   "--logfile", str(self.directory / "redis.log")]
        if self.appendonly:
            command += ["--appendfsync", "always"]
        if self.password:
            command += ["--requirepass", self.password]
        return command + self.extra

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                log = self.directory / "redis.log"
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server exited: {text}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return self

    def ready(self) -> bool:
        """True once the server answers PING (with the password, when one is set)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, by pid: no shutdown save, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


_databases = itertools.cycle(range(1, DATABASES))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server (no persistence)."""
    require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


def fresh_database(server: RedisServer) -> str:
    """The URL of an empty database of ``server`` (the next one, flushed)."""
    db = next(_databases)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if server.password:
            sock.sendall(f"AUTH {server.password}\r\n".encode())
            sock.recv(64)
        sock.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 2:
            reply += sock.recv(64)
    return server.url(db)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis database of this test's own, empty."""
    return fresh_database(redis_server)


__all__ = ["DATABASES", "RedisServer", "free_port", "fresh_database", "redis_server",
           "redis_url", "require_redis_server"]
