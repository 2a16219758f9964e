"""The producer process: runs workload steps for the harness, one JSON line at a time.

Started by the harness as ``<python> -m bench.drivers.driver ADAPTER WORKDIR OPTIONS``
(OPTIONS is JSON), in the venv of the system under test. Each request on stdin is a
JSON object with an ``op``; each reply on stdout is one JSON object with ``ok``.
Every timed loop runs here, so the pipe to the harness is never inside a measurement.
Times are ``time.monotonic()`` values, which Linux shares between processes.

Tasks are always ``add(i, i + 1)``, so the expected result of task ``i`` is ``2i + 1``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import Any

#: Tail of a batch whose results are polled cheaply before the full count.
TAIL = 8


def expected(i: int) -> int:
    return i + (i + 1)


class Driver:
    """Workload steps on top of one adapter; remembers the ids of each batch it sent."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.batches: dict[str, list[str]] = {}

    # -- sending ---------------------------------------------------------------------

    def op_setup(self) -> dict[str, Any]:
        self.adapter.setup()
        return {"bulk": getattr(self.adapter, "bulk_api", None)}

    def op_send(self, n: int, batch: str, mode: str = "single", arg_bytes: int = 0,
                result_bytes: int = 0, queues: int = 0, priorities: int = 0) -> dict[str, Any]:
        """Send ``n`` tasks: one by one (``single``), in bulk, as the payload task with
        ``arg_bytes`` of argument and ``result_bytes`` of result (``payload``: W8, W9),
        or spread over ``queues`` queues or ``priorities`` priorities (``shape``: W10,
        W11)."""
        pairs = [(i, i + 1) for i in range(n)]
        if mode == "payload":
            data = "a" * arg_bytes
            send_payload = self.adapter.send_payload
            start = time.monotonic()
            ids = [send_payload(x, y, data, result_bytes) for x, y in pairs]
            seconds = time.monotonic() - start
        elif mode == "shape":
            send_to = self.adapter.send_to
            start = time.monotonic()
            ids = [send_to(x, y, f"q{x % queues}" if queues else None,
                           x % priorities if priorities else None) for x, y in pairs]
            seconds = time.monotonic() - start
        elif mode == "bulk":
            if getattr(self.adapter, "bulk_api", None) is None:
                return {"unsupported": True}
            start = time.monotonic()
            ids = self.adapter.send_bulk(pairs)
            seconds = time.monotonic() - start
        elif mode == "limited":  # WL: a task with concurrency_limit=1 per key, 100 keys
            send = getattr(self.adapter, "send_limited", None)
            if send is None:
                return {"unsupported": True}
            start = time.monotonic()
            ids = [send(x, y) for x, y in pairs]
            seconds = time.monotonic() - start
        else:
            send = self.adapter.send
            start = time.monotonic()
            ids = [send(x, y) for x, y in pairs]
            seconds = time.monotonic() - start
        if len(ids) != n:
            raise RuntimeError(f"sent {n} tasks but got {len(ids)} ids back")
        self.batches[batch] = ids
        return {"seconds": seconds, "count": n}

    def op_filler(self, n: int) -> dict[str, Any]:
        start = time.monotonic()
        self.adapter.send_filler(n)
        return {"seconds": time.monotonic() - start}

    # -- waiting ---------------------------------------------------------------------

    def op_wait(self, batch: str, timeout: float, poll: float = 0.002) -> dict[str, Any]:
        """Wait until every task of ``batch`` has a stored result.

        The last :data:`TAIL` ids are polled (cheap point lookups); once they are done the
        whole batch is counted. The time returned is when the tail was seen done, if the
        full count then confirms the batch (the usual case for FIFO queues), else when
        a later full count does.
        """
        ids = self.batches[batch]
        tail = ids[-TAIL:]
        count = self.adapter.count_done
        deadline = time.monotonic() + timeout
        while count(tail) < len(tail):
            if time.monotonic() > deadline:
                return self._timeout(batch, timeout)
            time.sleep(poll)
        seen = time.monotonic()
        while True:
            done = count(ids)
            if done >= len(ids):
                return {"t_end": seen, "confirm": time.monotonic() - seen}
            if time.monotonic() > deadline:
                return self._timeout(batch, timeout)
            time.sleep(max(poll, 0.005))
            seen = time.monotonic()

    def _timeout(self, batch: str, timeout: float) -> dict[str, Any]:
        ids = self.batches[batch]
        done = self.adapter.count_done(ids)
        raise TimeoutError(f"only {done} of {len(ids)} results after {timeout:g}s")

    def op_warmup(self, n: int, timeout: float) -> dict[str, Any]:
        """One round trip (proves a worker runs), then ``n`` tasks sent and awaited."""
        start = time.monotonic()
        value = self.adapter.call(20, 22, timeout)
        if value != 42:
            raise RuntimeError(f"warm-up add(20, 22) returned {value!r}")
        t_first = time.monotonic()
        if n:
            self.op_send(n, "warmup")
            self.op_wait("warmup", timeout)
        return {"t_first": t_first, "first": t_first - start,
                "seconds": time.monotonic() - start}

    def op_mixed(self, n: int, batch: str, timeout: float, first: int = 0,
                 start_at: float | None = None) -> dict[str, Any]:
        """Send ``n`` tasks one by one to running workers; wait for all results.

        W6p runs this in several drivers at once: each sends ``add(i, i + 1)`` for its
        own range of ``i`` from ``first``, starting at ``start_at`` (monotonic).
        """
        send = self.adapter.send
        pairs = [(i, i + 1) for i in range(first, first + n)]
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.monotonic()))
        start = time.monotonic()
        ids = [send(x, y) for x, y in pairs]
        sent = time.monotonic()
        self.batches[batch] = ids
        end = self.op_wait(batch, timeout)["t_end"]
        return {"t0": start, "t_end": end, "send_seconds": sent - start}

    def op_roundtrip(self, n: int, warm: int, timeout: float) -> dict[str, Any]:
        """``warm`` untimed, then ``n`` timed sequential ``delay()`` + ``get()``."""
        call = self.adapter.call
        for i in range(warm):
            call(i, i + 1, timeout)
        latencies = []
        for i in range(n):
            start = time.perf_counter()
            value = call(i, i + 1, timeout)
            latencies.append(time.perf_counter() - start)
            if value != expected(i):
                raise RuntimeError(f"round trip {i}: add({i}, {i + 1}) returned {value!r}")
        return {"latencies": latencies}

    # -- checking --------------------------------------------------------------------

    def op_verify(self, batch: str, sample: int = 0, first: int = 0) -> dict[str, Any]:
        """Read results back through the system's own API and compare with x + y.

        ``sample`` > 0 checks that many, spread evenly; 0 checks every task.
        """
        ids = self.batches[batch]
        indexes = list(range(len(ids)))
        if sample and sample < len(ids):
            step = len(ids) / sample
            indexes = sorted({int(k * step) for k in range(sample)} | {len(ids) - 1})
        values = [int(v.rstrip("r")) if isinstance(v, str) else v  # payload results
                  for v in self.adapter.fetch([ids[i] for i in indexes])]
        bad = [(i, v) for i, v in zip(indexes, values, strict=True)
               if v != expected(first + i)]
        return {"checked": len(indexes), "bad": len(bad),
                "example": None if not bad else f"task {bad[0][0]} -> {bad[0][1]!r}"}

    def op_hello(self) -> dict[str, Any]:
        import os

        return {"pid": os.getpid(), "python": sys.version.split()[0]}


def main(argv: list[str]) -> int:
    adapter_name, workdir, options = argv[0], argv[1], json.loads(argv[2])
    module = importlib.import_module(f"bench.drivers.{adapter_name}_adapter")
    driver = Driver(module.Adapter(workdir, options))
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = {"ok": True, **getattr(driver, f"op_{op}")(**request)}
        except Exception as exc:  # reported to the harness, which records the error
            traceback.print_exc(file=sys.stderr)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reply = {"ok": False, "error": f"{type(exc).__name__}: {message}"[:300]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    try:
        driver.adapter.close()
    except Exception:
        traceback.print_exc(file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
