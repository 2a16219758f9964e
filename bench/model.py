"""``python -m bench.model``: project liteq's drain throughput on N cores.

SQLite has one writer at a time, so liteq's throughput on many cores is bounded by two
things this module measures on the machine it runs on, in one process (no contention,
so the times are the work itself, not waiting):

- ``H(b)``: how long a worker holds the write lock for one settle-and-claim
  transaction that settles ``b`` tasks and claims ``b`` more (``BEGIN IMMEDIATE`` to
  ``COMMIT``), for several batch sizes ``b``;
- ``C``: the CPU a worker spends per task outside that transaction (decoding, running
  the no-op task, building its result, the loop), from the CPU time of the whole drain;
- ``P``: how long one ``delay()`` holds the lock (its single ``INSERT``), and the
  producer's CPU per ``delay()``.

The model (a closed loop of N worker processes, one per core, around one lock): each
process repeats "run ``b`` tasks (``b·C``), then hold the lock ``H(b)``", so

    drain(N, b) = min(N · b / (b·C + H(b)),  b / H(b))

the first term while the cores are the limit, the second once the lock is busy all
the time. ``b`` is what a worker process claims at once: its share of the prefetch
(``worker_prefetch_multiplier``, 4 by default), since each pool process claims for
itself. A mixed load adds each ``delay()``'s ``P`` to the lock's work per task.

``--check bench.json`` compares the projection for 1 and 2 processes with W7 of a
``python -m bench --workloads W7 --json bench.json`` run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Batch sizes measured (tasks settled and claimed per transaction).
BATCHES = (1, 4, 16, 64, 256)
#: Core counts projected.
CORES = (1, 2, 4, 8, 16, 32, 64)

TASKS = '''
from liteq import LiteQ

app = LiteQ("modeltasks", broker={broker!r})


@app.task(name="modeltasks.add")
def add(x, y):
    return x + y
'''


def _app(workdir: Path) -> Any:
    (workdir / "modeltasks.py").write_text(
        TASKS.format(broker=f"sqlite:///{workdir / 'model.db'}"), encoding="utf-8")
    sys.path.insert(0, str(workdir))
    import modeltasks  # type: ignore[import-not-found]

    modeltasks.app.broker.open()
    return modeltasks


def _timed_writes(database: Any) -> list[tuple[float, float]]:
    """Wrap ``database.write`` to record (wall, cpu) seconds of each transaction."""
    times: list[tuple[float, float]] = []
    write: Callable[..., Any] = database.write

    def timed(body: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return write(body)
        finally:
            times.append((time.perf_counter() - wall, time.process_time() - cpu))

    database.write = timed
    return times


def measure_worker(tasks: Any, batch: int, count: int) -> dict[str, float]:
    """Drain ``count`` no-op tasks in this process with batches of ``batch``."""
    from liteq import group
    from liteq.transports.base import LostTaskPolicy
    from liteq.worker.consumer import Consumer
    from liteq.worker.pool import PoolOptions, SoloPool
    from liteq.worker.spec import AppSpec

    app = tasks.app
    group(tasks.add.s(i, i + 1) for i in range(count)).apply_async()
    pool = SoloPool(app, AppSpec(import_path="modeltasks"), 1, PoolOptions(hostname="model"),
                    hard_limit_in_process=False)
    policy = LostTaskPolicy(max_deliveries=5, lost=None, exhausted=None)  # type: ignore[arg-type]
    consumer = Consumer(app, pool, ["celery"], f"model@{os.getpid()}/0", capacity=batch,
                        lease=60.0, policy=policy)
    database = app.broker.database
    times = _timed_writes(database)
    cpu, wall = time.process_time(), time.perf_counter()
    while consumer.processed < count or consumer.finished:
        consumer.step(wait=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    consumer.close()
    del database.write
    full = [t for t in times[1:-1]] or times  # the first and last batches are partial
    hold = statistics.median(t[0] for t in full)
    hold_cpu = statistics.median(t[1] for t in full)
    transactions = len(times)
    return {
        # tasks per transaction as it ran (a settle is due after SETTLE_AFTER too)
        "batch": count / transactions, "capacity": batch, "tasks": count,
        "transactions": transactions,
        "hold_us": 1e6 * hold, "hold_cpu_us": 1e6 * hold_cpu,
        "cpu_us_per_task": 1e6 * cpu / count, "wall_us_per_task": 1e6 * wall / count,
        # CPU per task outside the lock: the whole CPU less the transactions' share
        "outside_us": 1e6 * (cpu - hold_cpu * transactions) / count,
    }


def measure_producer(tasks: Any, count: int) -> dict[str, float]:
    """``delay()`` ``count`` times: the lock held per call and the CPU per call."""
    database = tasks.app.broker.database
    holds: list[float] = []
    write_one: Callable[..., Any] = database.write_one

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return write_one(*args)
        finally:
            holds.append(time.perf_counter() - start)

    database.write_one = timed
    add = tasks.add
    cpu = time.process_time()
    for i in range(count):
        add.delay(i, i + 1)
    cpu = time.process_time() - cpu
    del database.write_one
    tasks.app.broker.purge()
    return {"hold_us": 1e6 * statistics.median(holds), "cpu_us_per_task": 1e6 * cpu / count}


def project(worker: dict[str, float], cores: float) -> float:
    """Tasks/s of ``cores`` worker processes with ``worker``'s batch (see module doc)."""
    batch, hold = worker["batch"], worker["hold_us"] / 1e6
    outside = max(worker["outside_us"], 0.0) / 1e6
    return float(min(cores * batch / (batch * outside + hold), batch / hold))


def lock_ceiling(worker: dict[str, float], producer: dict[str, float] | None = None) -> float:
    """Tasks/s once the write lock is busy all the time (with ``delay()``s: mixed)."""
    per_task = worker["hold_us"] / worker["batch"]
    if producer is not None:
        per_task += producer["hold_us"]
    return 1e6 / per_task


def report(workers: list[dict[str, float]], producer: dict[str, float]) -> list[str]:
    lines = [
        "| capacity | batch b | H(b) lock hold (µs) | H(b)/b (µs/task) | C outside (µs/task) | "
        + " | ".join(f"{n} cores" for n in CORES) + " | lock ceiling | mixed ceiling |",
        "|---:|---:|---:|---:|---:|" + "---:|" * len(CORES) + "---:|---:|",
    ]
    for worker in workers:
        figures = " | ".join(f"{project(worker, n):,.0f}" for n in CORES)
        lines.append(
            f"| {worker['capacity']:.0f} | {worker['batch']:.1f} | {worker['hold_us']:.0f} | "
            f"{worker['hold_us'] / worker['batch']:.1f} | {worker['outside_us']:.1f} | "
            f"{figures} | {lock_ceiling(worker):,.0f} | "
            f"{lock_ceiling(worker, producer):,.0f} |")
    lines += ["", f"`delay()`: {producer['hold_us']:.1f} µs of write lock and "
                  f"{producer['cpu_us_per_task']:.1f} µs CPU per call."]
    return lines


def check(workers: list[dict[str, float]], path: str) -> list[str]:
    """The projection for W7's shapes next to the measured W7 medians.

    On a shared machine the workers do not get whole cores: each run's CPU time per
    task times its rate is the cores it actually had, and the projection for that many
    cores is the fair comparison (both are shown).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    measured: dict[str, list[tuple[float, float]]] = {}
    for row in data["results"]:
        if row.get("system") == "liteq-normal" and "value" in row:
            used = row["extra"].get("cpu_us_per_task", 0.0) * row["value"] / 1e6
            measured.setdefault(row["workload"], []).append((row["value"], used))
    by_capacity = {int(w["capacity"]): w for w in workers}
    worker = by_capacity.get(4) or workers[0]
    shapes = (("W7c1", "-c 1", 1), ("W7c2", "-c 2", 2), ("W1", "-c 2 (W1)", 2),
              ("W7x2", "2 × -c 1", 2))
    lines = ["| shape | projected, whole cores | cores it had (CPU/task × rate) | "
             "projected for those | measured median | measured / projected for those |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, title, cores in shapes:
        if key not in measured:
            continue
        value = statistics.median(v for v, _ in measured[key])
        had = statistics.median(u for _, u in measured[key])
        fair = project(worker, min(had, cores)) if had else 0.0
        ratio = f"{value / fair:.2f}" if fair else "—"
        lines.append(f"| {title} | {project(worker, cores):,.0f} | {had:.2f} | {fair:,.0f} | "
                     f"{value:,.0f} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per batch size")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--check", metavar="BENCH_JSON",
                        help="compare with W7/W1 of a `python -m bench --json` run")
    parser.add_argument("--json", metavar="PATH", help="write the measurements here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="liteq-model-") as tmp:
        tasks = _app(Path(tmp))
        producer = measure_producer(tasks, args.tasks)
        workers = [measure_worker(tasks, batch, args.tasks) for batch in batches]
        tasks.app.close()
    lines = [f"## liteq N-core projection ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
             f" load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs here)", "",
             *report(workers, producer)]
    if args.check:
        lines += ["", *check(workers, args.check)]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"producer": producer, "workers": workers},
                                              indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
