"""CPU cost of the SQLite task path in one process: publish, then settle-and-claim.

The drain workloads (W1, W6) run worker processes on a shared machine, whose noise can
hide a few per cent. This times the transport calls a worker makes (claim batches of
``--batch``, each settled in the next call) with the process's CPU clock, for plain
tasks (no flow control), so two liteq trees can be compared on the same machine:

    .venv/bin/python -m bench.claim_cost                  # this tree
    (cd /other/tree && .venv/bin/python /this/tree/bench/claim_cost.py)

Prints the median over ``--runs`` of CPU microseconds per task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from liteq import LiteQ
from liteq.transports.base import Settlement


def one_run(tasks: int, batch: int) -> tuple[float, float]:
    """CPU µs per task to publish, and to claim and settle, ``tasks`` plain tasks."""
    with tempfile.TemporaryDirectory(prefix="liteq-claim-") as tmp:
        app = LiteQ("claimcost", broker=f"sqlite:///{tmp}/c.db")

        @app.task(name="claimcost.add")
        def add(x: int, y: int) -> int:
            return x + y

        broker = app.broker
        broker.open()
        start = time.process_time()
        for i in range(tasks):
            add.delay(i, i)
        published = time.process_time() - start
        start = time.process_time()
        held: list[Settlement] = []
        done = 0
        while True:
            _, claimed = broker.settle_and_claim(held, ["celery"], batch, "w1", 60.0)
            done += len(held)
            if not claimed:
                break
            held = [Settlement(delivery) for delivery in claimed]
        drained = time.process_time() - start
        app.close()
        if done != tasks:
            raise RuntimeError(f"settled {done} of {tasks}")
    return 1e6 * published / tasks, 1e6 * drained / tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.claim_cost")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args(argv)
    runs = [one_run(options.tasks, options.batch) for _ in range(options.runs)]
    publish = statistics.median(r[0] for r in runs)
    drain = statistics.median(r[1] for r in runs)
    print(f"publish {publish:.1f} µs/task, claim+settle {drain:.1f} µs/task "
          f"(median of {options.runs}; {options.tasks} tasks, batches of {options.batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
