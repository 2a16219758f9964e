"""The harness's end of a producer driver (``bench/drivers/driver.py``).

Each request is one JSON line; each reply is awaited with a deadline, so a hung
system becomes an error in its table cell instead of a hung benchmark.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import procs

REPO = Path(__file__).resolve().parent.parent


class DriverError(RuntimeError):
    """The driver answered with an error, died, or did not answer in time."""


class DriverTimeout(DriverError):
    """No answer within the time given (the request may still be running)."""


class Driver:
    """A running driver process for one system and one run.

    Example:
        >>> with Driver(python, "liteq", workdir, {"db": path}) as driver:  # doctest: +SKIP
        ...     driver.request("send", wait=30, n=100, batch="a")
    """

    def __init__(self, python: str, adapter: str, workdir: Path, options: dict[str, Any]):
        argv = [python, "-m", "bench.drivers.driver", adapter, str(workdir), json.dumps(options)]
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.command = procs.Command(argv, str(workdir), {"PYTHONPATH": pythonpath}, "driver")
        self.log = workdir / "driver.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def start(self) -> Driver:
        self.process = procs.spawn(self.command, self.log, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE)
        return self

    def request(self, op: str, wait: float = 60.0, **arguments: Any) -> dict[str, Any]:
        """Send one request; return its reply within ``wait`` seconds, or raise
        :class:`DriverError`. ``arguments`` go to the driver's ``op_<op>``."""
        self.send(op, **arguments)
        return self.receive(op, wait)

    def send(self, op: str, **arguments: Any) -> None:
        assert self.process is not None and self.process.stdin is not None
        line = json.dumps({"op": op, **arguments}).encode() + b"\n"
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise DriverError(f"driver died before {op}: {procs.tail(self.log)}") from None

    def receive(self, op: str, wait: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + wait
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DriverTimeout(f"{op}: no answer within {wait:g}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise DriverError(f"driver died during {op}: {procs.tail(self.log)}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok", False):
            raise DriverError(f"{op}: {reply.get('error', 'failed')}")
        return reply

    def close(self, graceful: bool = True) -> None:
        """Ask the driver to quit (``graceful``), else stop it by pid at once."""
        if self.process is None:
            return
        if graceful and self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(5)
            except (DriverError, subprocess.TimeoutExpired, OSError):
                pass
        procs.stop([self.process], timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.process = None

    def __enter__(self) -> Driver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
