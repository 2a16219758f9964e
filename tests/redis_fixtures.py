"""Real Redis for the tests: ``redis-server`` on a free loopback port, stopped by pid.

One server per session (no persistence) serves every test; each test gets a database
of its own, flushed first. Tests that kill and restart Redis start their own
:class:`RedisServer`; :class:`SentinelSet` (a master, a replica and three sentinels)
and :class:`ClusterSet` (three shards) are started once per session, when a test needs
them. Without a ``redis-server`` binary the Redis cases skip, except under ``CI=true``,
where they fail (``.ci/run`` installs it; ``redis-cli`` comes with it).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
#: Databases the session server has; tests cycle through 1..DATABASES-1.
DATABASES = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


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


def require_redis_cli() -> str:
    """The redis-cli binary (it comes with redis-server), or skip (fail under CI=true)."""
    require_redis_server()
    if REDIS_CLI is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-cli is not installed, and CI=true needs the Redis Cluster tests")
        pytest.skip("redis-cli is not installed")
    return REDIS_CLI


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` (errors count as not yet) until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, redis.RedisError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SentinelSet:
    """A master, a replica and three sentinels (``redis-server --sentinel``), on loopback.

    With ``password`` the master and replica require it (and the sentinels know it);
    with ``sentinel_password`` the sentinels require theirs.
    """

    MASTER = "mymaster"

    def __init__(self, directory: Path, *, password: str | None = None,
                 sentinel_password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.sentinel_password = sentinel_password
        auth = ["--masterauth", password] if password else []
        self.master = RedisServer(directory / "a", password=password, extra=auth)
        self.replica = RedisServer(directory / "b", password=password, extra=auth)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        first, *others = self.sentinel_ports
        return ";".join([f"sentinel://{auth}127.0.0.1:{first}/{db}",
                         *(f"sentinel://127.0.0.1:{port}" for port in others)])

    def options(self) -> dict[str, object]:
        """The transport options a client needs (Celery's names)."""
        options: dict[str, object] = {"master_name": self.MASTER}
        if self.sentinel_password:
            options["sentinel_kwargs"] = {"password": self.sentinel_password}
        return options

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], password=self.sentinel_password,
                           socket_timeout=5, decode_responses=True)

    def master_port(self) -> int:
        """The master's port, as the first sentinel sees it."""
        with self.sentinel() as client:
            _, port = client.execute_command("SENTINEL", "get-master-addr-by-name", self.MASTER)
        return int(port)

    def servers(self) -> dict[int, RedisServer]:
        return {server.port: server for server in (self.master, self.replica)}

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.extra += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        for index, port in enumerate(self.sentinel_ports):
            folder = self.directory / f"sentinel{index}"
            folder.mkdir(parents=True, exist_ok=True)
            lines = [f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {folder}",
                     f"logfile {folder / 'sentinel.log'}",
                     f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} 2",
                     f"sentinel down-after-milliseconds {self.MASTER} 1000",
                     f"sentinel failover-timeout {self.MASTER} 10000"]
            if self.password:
                lines.append(f"sentinel auth-pass {self.MASTER} {self.password}")
            if self.sentinel_password:
                lines += [f"requirepass {self.sentinel_password}",
                          f"sentinel sentinel-pass {self.sentinel_password}"]
            config = folder / "sentinel.conf"
            config.write_text("\n".join(lines) + "\n")
            self.sentinels.append(subprocess.Popen(
                [require_redis_server(), str(config), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.wait_settled(self.master.port)
        return self

    def wait_settled(self, master_port: int, timeout: float = 30.0) -> None:
        """Until every sentinel names ``master_port`` as the master and knows the other
        sentinels and a replica in sync with it."""
        def settled() -> bool:
            for index in range(len(self.sentinel_ports)):
                with self.sentinel(index) as client:
                    _, port = client.execute_command(
                        "SENTINEL", "get-master-addr-by-name", self.MASTER)
                    if int(port) != master_port:
                        return False
                    info = client.execute_command("SENTINEL", "master", self.MASTER)
                    fields = dict(zip(info[::2], info[1::2], strict=True)) \
                        if isinstance(info, list) else info
                    if int(fields["num-other-sentinels"]) < 2 or \
                            int(fields["num-slaves"]) < 1 or "s_down" in fields["flags"]:
                        return False
            with redis.Redis(port=master_port, password=self.password) as client:
                replication = client.info("replication")
            return any(isinstance(value, dict) and value.get("state") == "online"
                       for key, value in replication.items() if key.startswith("slave"))

        wait_until(settled, "the sentinels to agree on the master", timeout)

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.sentinels:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        self.replica.stop()
        self.master.stop()


class ClusterSet:
    """A Redis Cluster of three shards (no replicas), made with ``redis-cli --cluster``."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(directory / f"node{index}", port=free_cluster_port(), extra=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / f"node{index}" / "nodes.conf"),
                "--cluster-node-timeout", "2000"])
            for index in range(3)]

    def url(self) -> str:
        return ";".join(f"redis+cluster://127.0.0.1:{node.port}" for node in self.nodes[:2])

    def start(self) -> ClusterSet:
        cli = require_redis_cli()
        for node in self.nodes:
            node.start()
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{node.port}" for node in self.nodes), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)

        def ready() -> bool:
            for node in self.nodes:
                with redis.Redis(port=node.port, socket_timeout=5) as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
            return True

        wait_until(ready, "the cluster to be ready")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


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


@pytest.fixture(scope="session")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """The session's master, replica and three sentinels, all with passwords."""
    require_redis_server()
    servers = SentinelSet(tmp_path_factory.mktemp("sentinel"), password="master-secret",
                          sentinel_password="sentinel-secret")
    try:
        yield servers.start()
    finally:
        servers.stop()


def fresh_sentinel_database(servers: SentinelSet) -> str:
    """The ``sentinel://`` URL of an empty database of the set's master."""
    return servers.url(int(fresh_database(servers.master).rpartition("/")[2]))


@pytest.fixture(scope="session")
def cluster_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    """The session's three-shard Redis Cluster."""
    require_redis_cli()
    servers = ClusterSet(tmp_path_factory.mktemp("cluster"))
    try:
        yield servers.start()
    finally:
        servers.stop()


_prefixes = itertools.count()


def fresh_prefix() -> str:
    """A key prefix no test used before (a cluster has only database 0)."""
    return f"t{os.getpid()}-{next(_prefixes)}:"


__all__ = ["DATABASES", "ClusterSet", "RedisServer", "SentinelSet", "cluster_set",
           "free_port", "fresh_database", "fresh_prefix", "fresh_sentinel_database",
           "redis_server", "redis_url", "require_redis_cli", "require_redis_server",
           "sentinel_set", "wait_until"]
