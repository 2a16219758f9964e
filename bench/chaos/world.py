"""What a chaos scenario runs on: a temporary project (a task module that logs every
execution), its store (a SQLite file, or a private redis-server with AOF), and real
``liteq worker`` processes, each stopped or killed by its own pid."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("SUCCESS", "FAILURE", "REVOKED")
#: Project directories of finished scenarios, removed by ``cleanup()``.
CREATED: list[Path] = []


def cleanup() -> None:
    while CREATED:
        shutil.rmtree(CREATED.pop(), ignore_errors=True)

TASKS = '''
import os, time
from liteq import LiteQ

app = LiteQ("chaos", broker=os.environ["CHAOS_BROKER"])
app.conf.update(broker_transport_options={"visibility_timeout": float(os.environ["CHAOS_LEASE"])},
                result_expires=float(os.environ.get("CHAOS_EXPIRES") or 0) or None)
LOG = os.environ["CHAOS_LOG"]
WORK = float(os.environ.get("CHAOS_WORK") or 0.02)


def _ran(task_id):
    with open(LOG, "a") as handle:  # one short O_APPEND write: whole lines
        handle.write(f"{task_id} {os.getppid()}\\n")


@app.task(acks_late=True)
def late(n):
    _ran(late.request.id)
    time.sleep(WORK)
    return n


@app.task
def early(n):
    _ran(early.request.id)
    time.sleep(WORK)
    return n


@app.task
def add(x, y):
    return x + y
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    """A private redis-server with AOF (fsync on every write), restartable on its port."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class World:
    """One scenario's project: a store, a task module, workers."""

    def __init__(self, transport: str, lease: float = 3.0, expires: float | None = None,
                 work: float = 0.02) -> None:
        self.transport = transport
        self.root = Path(tempfile.mkdtemp(prefix=f"liteq-chaos-{transport}-"))
        self.log = self.root / "executions.log"
        self.log.touch()
        self.redis: Redis | None = None
        if transport == "redis":
            self.redis = Redis(self.root)
            self.redis.start()
            self.broker = self.redis.url
        else:
            self.broker = f"sqlite:///{self.root / 'chaos.db'}"
        self.env = {**os.environ, "CHAOS_BROKER": self.broker, "CHAOS_LOG": str(self.log),
                    "CHAOS_LEASE": str(lease), "CHAOS_EXPIRES": str(expires or ""),
                    "CHAOS_WORK": str(work),
                    "PYTHONPATH": os.pathsep.join([str(self.root), str(ROOT)])}
        (self.root / "chaostasks.py").write_text(TASKS)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.crashes = 0  # workers that exited by themselves
        self.crash_reasons: list[str] = []  # their exit code and last log line
        sys.path.insert(0, str(self.root))
        os.environ.update({k: self.env[k] for k in ("CHAOS_BROKER", "CHAOS_LOG", "CHAOS_WORK",
                                                       "CHAOS_LEASE", "CHAOS_EXPIRES")})
        import importlib
        sys.modules.pop("chaostasks", None)
        self.tasks: Any = importlib.import_module("chaostasks")
        self.app = self.tasks.app
        self.app.broker.depth()  # the store exists before anything writes to it raw

    @property
    def location(self) -> str:
        return str(self.root / "chaos.db") if self.transport == "sqlite" else self.broker

    def worker(self, concurrency: int = 2, pool: str = "prefork") -> subprocess.Popen[bytes]:
        log = open(self.root / f"worker-{len(self.workers)}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "liteq", "worker", "-A", "chaostasks", "-P", pool,
             "-c", str(concurrency), "-l", "warning"],
            cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own group: freezing it freezes its pool too
        log.close()
        self.workers.append(process)
        return process

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        self.killed.add(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.root.glob("worker-*.log"))

    def executions(self) -> Counter[str]:
        return Counter(line.split()[0] for line in self.log.read_text().splitlines() if line)

    def executed_by(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for line in self.log.read_text().splitlines():
            task_id, pid = line.split()
            found.setdefault(task_id, []).append(int(pid))
        return found

    def wait_final(self, ids: list[str], timeout: float) -> dict[str, str]:
        """The state of each task once all are final or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            still = []
            for task_id in pending:
                state = self.app.AsyncResult(task_id).state
                states[task_id] = state
                if state not in FINAL:
                    still.append(task_id)
            pending = still
            if pending:
                time.sleep(0.2)
        return states

    def close(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for index, process in enumerate(self.workers):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
            if process.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM) and \
                    process.pid not in self.killed:
                self.crashes += 1
                log = self.root / f"worker-{index}.log"
                lines = log.read_text(errors="replace").strip().splitlines() \
                    if log.exists() else []
                last = lines[-1][:200] if lines else "no output"
                self.crash_reasons.append(f"worker exited {process.returncode}: {last}")
        if self.redis is not None:
            self.redis.stop()
        if str(self.root) in sys.path:
            sys.path.remove(str(self.root))
        CREATED.append(self.root)  # removed by the harness once its row is counted

    def lease_losses(self) -> set[str]:
        """Task ids whose outcome a worker discarded because its lease was lost."""
        return set(re.findall(r"lease of \S*?\[([^\]]+)\] was lost", self.worker_logs()))

    def requeued_after_loss(self) -> set[str]:
        """Task ids a worker logged as queued again after a lease loss (its pool process
        died, or its worker stopped renewing the lease)."""
        return set(re.findall(r"task (\S+?):? (?:lost its worker process|its worker stopped "
                              r"renewing the lease)[^\n]*queued again", self.worker_logs()))
