"""The workloads W1-W7 and WL: what is timed, and how, for every system alike.

Each function runs one trial of one system and returns a :class:`Measurement`. The
task is always ``add(i, i + 1)``; W1, W5 and W6 read every result back through the
system's own API and compare it with ``2i + 1``.

Drains (W1, W5, W7) time *warm* workers: the workers are started and warmed up (one
round trip, then a few tasks), their whole process tree is frozen with SIGSTOP, the
tasks are enqueued, and the clock starts at SIGCONT. Start-up time (spawn to first
result) is reported apart, so a slow import does not hide in a drain rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import procs, stats
from bench.trial import Trial, timeout_for

#: Results checked through the API after a drain (all of them up to this many).
VERIFY_ALL_UP_TO = 20_000
VERIFY_SAMPLE = 2_000


@dataclass
class Measurement:
    """One run's primary figure and whatever else it learned."""

    value: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """A column of the table."""

    key: str
    title: str
    unit: str
    #: "higher" or "lower" is better
    better: str
    run: Callable[..., Measurement]
    #: keyword arguments for ``run``
    params: tuple[tuple[str, Any], ...] = ()


def _verify(trial: Trial, batch: str, n: int, driver: Any = None,
            first: int = 0) -> dict[str, Any]:
    sample = 0 if n <= VERIFY_ALL_UP_TO else VERIFY_SAMPLE
    if driver is None:
        reply = trial.request("verify", wait=timeout_for(n, 50), batch=batch, sample=sample)
    else:
        reply = driver.request("verify", wait=timeout_for(n, 50), batch=batch, sample=sample,
                               first=first)
    if reply["bad"]:
        raise RuntimeError(f"wrong results: {reply['bad']} of {reply['checked']} checked "
                           f"({reply['example']})")
    return {"checked": reply["checked"]}


def drain(trial: Trial, concurrency: int = 2, processes: int = 1, deep: int = 0,
          shape: dict[str, Any] | None = None, per_task: int = 1) -> Measurement:
    """W1 / W5 / W7: enqueue to frozen warm workers (plus ``deep`` behind), thaw, time.

    W8-W11 are this drain with a ``shape`` (``mode`` and its options for the driver's
    ``send``), of ``tasks // per_task`` tasks; WL sends a task with
    ``concurrency_limit=1`` per key over 100 keys (``mode="limited"``).
    """
    n = max(1, trial.sizes.tasks // per_task)
    shape = shape or {"mode": "single"}
    queues = [f"q{k}" for k in range(shape.get("queues", 0))]
    workers = trial.start_workers(concurrency, processes, queues=queues)
    startup = trial.warm_up(workers) if not queues else _warm_queues(trial, workers)
    workers.freeze()
    try:
        sent = trial.request("send", wait=timeout_for(n), n=n, batch="drain", **shape)
        if sent.get("unsupported"):
            raise NotImplementedError("no concurrency limits")
        extra: dict[str, Any] = {"startup": startup}
        if deep:
            filler = trial.request("filler", wait=timeout_for(deep, 200), n=deep)
            extra["filler_seconds"] = filler["seconds"]
            extra["deep"] = deep
        trial.send("wait", batch="drain", timeout=timeout_for(n))
        cpu_before = workers.cpu_times()
        driver_before = trial.driver_cpu()
        start = time.monotonic()
    finally:
        workers.thaw()
    reply = trial.receive("wait", timeout_for(n) + 30)
    cpu_after = workers.cpu_times()
    driver_cpu = trial.driver_cpu() - driver_before
    seconds = float(reply["t_end"]) - start
    workers.check()
    # Worker CPU per task while draining (measured to the driver's confirmation, so a
    # little idle time is included): where the time goes, main process vs pool.
    total = procs.cpu_delta(cpu_before, cpu_after)
    main = procs.cpu_delta(cpu_before, cpu_after, workers.top_pids(), kinds=("self",))
    extra.update(cpu_us_per_task=1e6 * total / n, main_cpu_us_per_task=1e6 * main / n,
                 driver_cpu_share=driver_cpu / seconds)
    extra.update(_verify(trial, "drain", n), seconds=seconds, confirm=reply.get("confirm"))
    payload = shape.get("arg_bytes", 0) + shape.get("result_bytes", 0)
    if payload:
        extra["mb_per_s"] = n * payload / seconds / 1e6
    return Measurement(n / seconds, extra)


def _warm_queues(trial: Trial, workers: procs.ProcessGroup) -> float:
    """Warm-up for workers that consume W10's queues (not the default one): tasks sent
    to every queue, awaited."""
    count = trial.sizes.warm * 10
    trial.request("send", wait=120.0, n=count, batch="warmup", mode="shape", queues=200)
    trial.request("wait", wait=150.0, batch="warmup", timeout=120.0)
    startup = time.monotonic() - workers.started_at
    time.sleep(trial.sizes.settle)
    workers.check()
    return startup


def enqueue(trial: Trial, mode: str) -> Measurement:
    """W2: one producer sends ``tasks`` tasks, one by one (``delay()``) or in bulk.

    No worker runs, so the figure is the producer's cost alone.
    """
    n = trial.sizes.tasks
    reply = trial.request("send", wait=timeout_for(n, 50), n=n, batch="enqueue", mode=mode)
    if reply.get("unsupported"):
        raise NotImplementedError("no bulk send API")
    extra = {"seconds": reply["seconds"]}
    if mode == "bulk":
        extra["api"] = trial.setup_info.get("bulk")
    return Measurement(n / float(reply["seconds"]), extra)


def roundtrip(trial: Trial) -> Measurement:
    """W3: sequential ``delay()`` + ``get()`` against an idle running worker; p50 in ms."""
    n = trial.sizes.roundtrips
    workers = trial.start_workers()
    startup = trial.warm_up(workers)
    time.sleep(1.0)  # let the workers go idle (they sleep on their wake-up mechanism)
    reply = trial.request("roundtrip", wait=timeout_for(n, 5), n=n, warm=10, timeout=30.0)
    workers.check()
    latencies = [1000.0 * value for value in reply["latencies"]]
    return Measurement(stats.percentile(latencies, 50), {
        "p50": stats.percentile(latencies, 50), "p90": stats.percentile(latencies, 90),
        "p99": stats.percentile(latencies, 99), "max": max(latencies), "startup": startup,
    })


def idle(trial: Trial) -> Measurement:
    """W4: CPU seconds of the worker process tree while idle, per 20 seconds."""
    seconds = trial.sizes.idle_seconds
    workers = trial.start_workers()
    startup = trial.warm_up(workers)
    time.sleep(2.0)  # past the rechecks that follow the warm-up's last task
    before = workers.cpu_times()
    start = time.monotonic()
    time.sleep(seconds)
    after = workers.cpu_times()
    elapsed = time.monotonic() - start
    workers.check()
    used = procs.cpu_delta(before, after)
    return Measurement(used * 20.0 / elapsed, {
        "cpu_seconds": used, "window": elapsed, "processes": len(after), "startup": startup,
    })


def mixed(trial: Trial) -> Measurement:
    """W6: producer and running workers together; first enqueue to last result."""
    n = trial.sizes.tasks
    workers = trial.start_workers()
    startup = trial.warm_up(workers)
    cpu_before, driver_before = workers.cpu_times(), trial.driver_cpu()
    reply = trial.request("mixed", wait=timeout_for(n, 50) + 30, n=n, batch="mixed",
                          timeout=timeout_for(n, 50))
    cpu_after, driver_cpu = workers.cpu_times(), trial.driver_cpu() - driver_before
    seconds = float(reply["t_end"]) - float(reply["t0"])
    workers.check()
    # CPU per task, workers and producer: robust where the machine's load makes rates
    # noisy (the producer's includes its completion polling at the end).
    extra = {"seconds": seconds, "send_seconds": reply["send_seconds"], "startup": startup,
             "cpu_us_per_task": 1e6 * procs.cpu_delta(cpu_before, cpu_after) / n,
             "producer_cpu_us_per_task": 1e6 * driver_cpu / n}
    extra.update(_verify(trial, "mixed", n))
    return Measurement(n / seconds, extra)


def mixed_producers(trial: Trial, producers: int = 4) -> Measurement:
    """W6p: ``producers`` producer processes and the running workers together; the
    tasks are split between the producers; first enqueue to last result."""
    n = trial.sizes.tasks
    workers = trial.start_workers()
    startup = trial.warm_up(workers)
    drivers = [trial, *trial.add_producers(producers - 1)]
    share = n // producers
    start_at = time.monotonic() + 0.2  # every driver has its request by then
    for index, driver in enumerate(drivers):
        driver.send("mixed", n=share, batch="mixed", timeout=timeout_for(n, 50),
                    first=index * share, start_at=start_at)
    replies = [driver.receive("mixed", timeout_for(n, 50) + 30) for driver in drivers]
    seconds = max(float(r["t_end"]) for r in replies) - min(float(r["t0"]) for r in replies)
    workers.check()
    extra: dict[str, Any] = {"seconds": seconds, "startup": startup, "producers": producers,
                             "send_seconds": max(r["send_seconds"] for r in replies)}
    for index, driver in enumerate(drivers):
        checked = _verify(trial, "mixed", share, None if driver is trial else driver,
                          first=index * share)
        extra["checked"] = extra.get("checked", 0) + checked["checked"]
    return Measurement(share * producers / seconds, extra)


def _deep(trial: Trial) -> Measurement:
    return drain(trial, deep=trial.sizes.deep)


#: The main table's columns, in order.
MAIN = (
    Workload("W1", "W1 drain", "tasks/s", "higher", drain),
    Workload("W2", "W2 delay()", "tasks/s", "higher", enqueue, (("mode", "single"),)),
    Workload("W2b", "W2 bulk", "tasks/s", "higher", enqueue, (("mode", "bulk"),)),
    Workload("W3", "W3 round trip p50", "ms", "lower", roundtrip),
    Workload("W4", "W4 idle", "CPU-s/20 s", "lower", idle),
    Workload("W5", "W5 deep drain", "tasks/s", "higher", _deep),
    Workload("W6", "W6 mixed", "tasks/s", "higher", mixed),
    Workload("W6p", "W6p 4 producers", "tasks/s", "higher", mixed_producers),
    # WL: flow control (issue 13), beside W1
    Workload("WL", "WL limited drain", "tasks/s", "higher", drain,
             (("shape", {"mode": "limited"}),)),
)

#: Payloads and shapes users have (W8-W11): drains of ``tasks // per_task`` tasks,
#: for the systems that list them in ``System.shapes``; a separate table.
SHAPES = (
    Workload("W8", "W8 100 KB arguments", "tasks/s", "higher", drain,
             (("shape", {"mode": "payload", "arg_bytes": 100_000}), ("per_task", 10))),
    Workload("W9", "W9 1 MB results", "tasks/s", "higher", drain,
             (("shape", {"mode": "payload", "result_bytes": 1_000_000}), ("per_task", 50))),
    Workload("W10", "W10 200 queues", "tasks/s", "higher", drain,
             (("shape", {"mode": "shape", "queues": 200}),)),
    Workload("W11", "W11 5 priorities", "tasks/s", "higher", drain,
             (("shape", {"mode": "shape", "priorities": 5}),)),
)

#: W7's configurations: (key, title, concurrency, processes).
SCALING = (
    ("W7c1", "-c 1", 1, 1),
    ("W7c2", "-c 2", 2, 1),
    ("W7c4", "-c 4", 4, 1),
    ("W7x2", "2 × -c 1", 1, 2),
)


def scaling_workloads() -> tuple[Workload, ...]:
    return tuple(
        Workload(key, title, "tasks/s", "higher", drain,
                 (("concurrency", concurrency), ("processes", processes)))
        for key, title, concurrency, processes in SCALING
    )


def by_key() -> dict[str, Workload]:
    return {w.key: w for w in (*MAIN, *scaling_workloads(), *SHAPES)}


def expand(names: list[str]) -> list[str]:
    """``W2`` means both W2 columns, ``W7`` every scaling configuration.

    Raises:
        ValueError: an unknown workload name.
    """
    keys: list[str] = []
    known = by_key()
    for name in names:
        name = name.strip().upper()
        name = name.replace("W7C", "W7c").replace("W7X", "W7x").replace("W2B", "W2b") \
            .replace("W6P", "W6p")
        if name == "W2":
            found = ["W2", "W2b"]
        elif name == "W7":
            found = [key for key, *_ in SCALING]
        elif name in known:
            found = [name]
        else:
            raise ValueError(f"unknown workload {name!r}: choose from W1-W7, WL "
                             f"({', '.join(known)})")
        keys.extend(k for k in found if k not in keys)
    return keys
