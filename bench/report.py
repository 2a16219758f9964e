"""The Markdown report: header, systems × workloads table, details, W7, goals."""

from __future__ import annotations

from typing import Any

from bench.harness import Cell, Results
from bench.stats import Summary, number
from bench.workloads import MAIN, SCALING, SHAPES

#: The ratio base: the floor with one job per transaction.
BASE = "floor-1"


def _ratio(value: float, base: float | None) -> str:
    if not base:
        return ""
    ratio = value / base
    if ratio < 0.1:
        return f" ×{ratio:.2g}"
    if ratio >= 100:
        return f" ×{ratio:.0f}"
    if ratio >= 10:
        return f" ×{ratio:.1f}"
    return f" ×{ratio:.2f}"


def _range(summary: Summary) -> str:
    if summary.runs < 2:
        return ""
    return f" ({number(summary.low)}–{number(summary.high)})"


def _short(text: str, width: int = 70) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= width else text[:width - 1] + "…"


def cell_text(cell: Cell | None, base: float | None, runs: int) -> str:
    """``median (min–max) ×ratio``, or why there is no figure."""
    if cell is None:
        return "—"
    if cell.skipped:
        return _short(cell.skipped)
    summary = cell.summary()
    if summary is None:
        return f"error: {_short(cell.errors[0], 60)}" if cell.errors else "—"
    text = f"{number(summary.median)}{_range(summary)}{_ratio(summary.median, base)}"
    if cell.errors:
        text += f" ⚠ {len(cell.errors)} of {len(cell.errors) + summary.runs} runs failed"
    elif summary.runs < runs:
        text += f" (n={summary.runs})"
    return text


def _base(results: Results, key: str) -> float | None:
    cell = results.resolved(BASE, key)
    summary = cell.summary() if cell else None
    return summary.median if summary else None


def header(results: Results, meta: dict[str, Any], duration: float | None = None) -> list[str]:
    sizes = results.sizes
    peers = ", ".join(f"{name} {version}" for name, version in sorted(meta["peers"].items()))
    load = meta.get("loadavg") or (0, 0, 0)
    end = meta.get("loadavg_end")
    at_end = f", at end {end[0]:.2f}" if end else ""
    lines = [
        f"**{meta['date']}** on `{meta['hostname']}`: {meta['cpus']} CPUs ({meta['cpu_model']}), "
        f"Python {meta['python']}, SQLite {meta['sqlite']}, liteq `{meta['liteq_commit']}`; "
        f"peers: {peers or 'not installed'}; redis-server {meta['redis_server']}; "
        f"temp dir {meta['tmp']}; load average at start {load[0]:.2f}{at_end} "
        "(other work on the machine shows here).",
        "",
        f"Each cell: median of {results.runs} run{'s' if results.runs > 1 else ''} "
        "(min–max) and ×ratio to **floor-1** (stdlib `sqlite3`, one job claimed and finished "
        "per transaction, 2 processes) measured in the same invocation. "
        "Higher is better for tasks/s, lower for ms and CPU-s.",
        f"Sizes: W1/W2/W6 {sizes.tasks:,} tasks; W5 {sizes.tasks:,} with {sizes.deep:,} "
        f"queued behind; W3 {sizes.roundtrips} round trips (after 10 untimed); "
        f"W4 {sizes.idle_seconds:g} s idle, reported per 20 s. Every system runs 2 worker "
        "processes.",
    ]
    if duration is not None:
        lines[-1] += f" The whole invocation took {duration / 60:.1f} min."
    return lines


def main_table(results: Results) -> list[str]:
    columns = [w for w in results.workloads if w in MAIN]
    if not columns:
        return []
    lines = [
        "| system | " + " | ".join(f"{w.title} ({w.unit})" for w in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for system in results.systems:
        row = []
        reason = system.unavailable()
        for index, workload in enumerate(columns):
            if reason:
                row.append(_short(reason, 80) if index == 0 else "—")
                continue
            cell = results.resolved(system.name, workload.key)
            row.append(cell_text(cell, _base(results, workload.key), results.runs))
        lines.append(f"| {system.name} | " + " | ".join(row) + " |")
    return lines


def scaling_table(results: Results) -> list[str]:
    keys = {w.key for w in results.workloads}
    configs = [(key, title) for key, title, *_ in SCALING if key in keys]
    systems = [s for s in results.systems if s.scalable and not s.unavailable()]
    if not configs or not systems:
        return []
    lines = [
        "### W7 scaling: W1 drain (tasks/s) by worker shape",
        "",
        "For the floor, `-c N` is N worker processes (it has no pool), so `2 × -c 1` is "
        "`-c 2`. ×: ratio to the same system's `-c 1`.",
        "",
        "| system | " + " | ".join(title for _, title in configs) + " |",
        "|---|" + "---:|" * len(configs),
    ]
    for system in systems:
        one = results.resolved(system.name, "W7c1")
        one_summary = one.summary() if one else None
        base = one_summary.median if one_summary else None
        row = [cell_text(results.resolved(system.name, key), base, results.runs)
               for key, _ in configs]
        lines.append(f"| {system.name} | " + " | ".join(row) + " |")
    return lines


def shapes_table(results: Results) -> list[str]:
    """W8-W11: payloads against the floor's same payload; queues and priorities against
    the system's own W1 (the floor has neither)."""
    keys = {w.key for w in results.workloads}
    columns = [w for w in SHAPES if w.key in keys]
    systems = [s for s in results.systems if s.shapes and not s.unavailable()]
    if not columns or not systems:
        return []
    sizes = results.sizes
    lines = [
        "### W8-W11: payloads and shapes (drains, tasks/s)",
        "",
        f"W8: {max(1, sizes.tasks // 10):,} tasks with 100 KB of arguments; W9: "
        f"{max(1, sizes.tasks // 50):,} tasks with a 1 MB result; W10: {sizes.tasks:,} "
        "tasks spread over 200 queues, one worker consuming all; W11: over 5 priorities. "
        "×: W8 and W9 to floor-1 on the same payload (its cost scaled by bytes), W10 and "
        "W11 to the system's own W1.",
        "",
        "| system | " + " | ".join(w.title for w in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for system in systems:
        row = []
        for workload in columns:
            cell = results.resolved(system.name, workload.key)
            if workload.key in ("W8", "W9"):
                base = _base(results, workload.key)
            else:
                base = _median(results, system.name, "W1")
            text = cell_text(cell, base, results.runs)
            rate = cell.extra_median("mb_per_s") if cell else None
            if rate is not None:
                text += f" ({number(rate)} MB/s)"
            row.append(text)
        lines.append(f"| {system.name} | " + " | ".join(row) + " |")
    return lines


def _available(results: Results) -> list[str]:
    return [s.name for s in results.systems if not s.unavailable()]


def _latency(results: Results, names: list[str]) -> list[str]:
    lines = ["### W3 round-trip latency (ms, medians of the runs' percentiles)", "",
             "| system | p50 | p90 | p99 | worst |", "|---|---:|---:|---:|---:|"]
    for name in names:
        cell = results.resolved(name, "W3")
        if cell and cell.values:
            figures = [cell.extra_median(key) or 0.0 for key in ("p50", "p90", "p99")]
            worst = max(extra["max"] for extra in cell.extras)
            lines.append(f"| {name} | " + " | ".join(number(f) for f in figures)
                         + f" | {number(worst)} |")
    return [*lines, ""]


def _depth(results: Results, names: list[str]) -> list[str]:
    lines = ["### W5 deep queue relative to W1 (median W5 / median W1)", "",
             "| system | W5 / W1 |", "|---|---:|"]
    for name in names:
        w1 = _median(results, name, "W1")
        w5 = _median(results, name, "W5")
        if w1 and w5:
            lines.append(f"| {name} | {100 * w5 / w1:.0f} % |")
    return [*lines, ""]


def _bulk_apis(results: Results, names: list[str]) -> list[str]:
    apis = []
    for name in names:
        cell = results.resolved(name, "W2b")
        if cell and cell.extras:
            apis.append(f"{name}: `{cell.extras[0].get('api')}`")
    return ["### W2 bulk: the API measured", "", "; ".join(apis) + ".", ""] if apis else []


def _startups(results: Results, names: list[str]) -> list[str]:
    found = []
    for name in names:
        times = [extra["startup"] for (system, _), cell in results.cells.items()
                 if system == name for extra in cell.extras if "startup" in extra]
        if times:
            found.append(f"{name} {number(Summary.of(times).median)} s")
    if not found:
        return []
    return ["### Worker start-up (spawn to first result, median over all trials)", "",
            "; ".join(found) + ".", ""]


def _drain_cpu(results: Results, names: list[str]) -> list[str]:
    lines = ["### W1 worker CPU per task (µs, medians; main = the started process, "
             "pool = its children; poller = the harness's completion polling, "
             "in % of one core during the drain)", "",
             "| system | total | main | pool | poller |", "|---|---:|---:|---:|---:|"]
    for name in names:
        cell = results.resolved(name, "W1")
        total = cell.extra_median("cpu_us_per_task") if cell else None
        main = cell.extra_median("main_cpu_us_per_task") if cell else None
        share = cell.extra_median("driver_cpu_share") if cell else None
        if total is not None and main is not None:
            pool = number(total - main) if total - main > 0.5 else "—"
            poller = f"{100 * share:.1f} %" if share is not None else "?"
            lines.append(f"| {name} | {number(total)} | {number(main)} | {pool} | {poller} |")
    return [*lines, ""] if len(lines) > 4 else []


def _mixed_cpu(results: Results, names: list[str]) -> list[str]:
    lines = ["### W6 CPU per task (µs, medians): the workers' process tree, the producer",
             "", "| system | workers | producer |", "|---|---:|---:|"]
    for name in names:
        cell = results.resolved(name, "W6")
        workers = cell.extra_median("cpu_us_per_task") if cell else None
        producer = cell.extra_median("producer_cpu_us_per_task") if cell else None
        if workers is not None and producer is not None:
            lines.append(f"| {name} | {number(workers)} | {number(producer)} |")
    return [*lines, ""] if len(lines) > 4 else []


def details(results: Results) -> list[str]:
    keys = {w.key for w in results.workloads}
    names = _available(results)
    lines: list[str] = []
    if "W1" in keys:
        lines += _drain_cpu(results, names)
    if "W6" in keys:
        lines += _mixed_cpu(results, names)
    if "W3" in keys:
        lines += _latency(results, names)
    if "W5" in keys and "W1" in keys:
        lines += _depth(results, names)
    if "W2b" in keys:
        lines += _bulk_apis(results, names)
    return lines + _startups(results, names)


def goals(results: Results) -> list[str]:
    """The issue's goals for liteq on SQLite with 2 worker processes, checked."""
    lines: list[str] = []
    for system in results.systems:
        if not system.name.startswith("liteq-") or system.needs_redis or system.unavailable():
            continue
        rows = _goal_rows(results, system.name)
        if not rows:
            continue
        lines += [f"### Goals: {system.name}", "", "| goal | target | measured (median) | met |",
                  "|---|---|---:|:---:|"]
        for goal, target, value, met in rows:
            lines.append(f"| {goal} | {target} | {value} | {'yes' if met else '**no**'} |")
        lines.append("")
    return lines


def _median(results: Results, system: str, key: str, extra: str | None = None) -> float | None:
    cell = results.resolved(system, key)
    if cell is None or not cell.values:
        return None
    if extra:
        return cell.extra_median(extra)
    summary = cell.summary()
    return summary.median if summary else None


def _goal_rows(results: Results, name: str) -> list[tuple[str, str, str, bool]]:
    rows = []

    def add(goal: str, target: str, value: float | None, met: bool, unit: str = "") -> None:
        if value is not None:
            rows.append((goal, target, f"{number(value)}{unit}", met))

    w1 = _median(results, name, "W1")
    if w1 is not None:
        add("W1 drain (must)", "≥ 10,000 tasks/s", w1, w1 >= 10_000)
        add("W1 drain (goal)", "≥ 20,000 tasks/s", w1, w1 >= 20_000)
    w2 = _median(results, name, "W2")
    add("W2 single delay()", "≥ 15,000 tasks/s", w2, w2 is not None and w2 >= 15_000)
    w2b = _median(results, name, "W2b")
    add("W2 bulk", "≥ 100,000 tasks/s", w2b, w2b is not None and w2b >= 100_000)
    p50 = _median(results, name, "W3", "p50")
    add("W3 p50", "≤ 1 ms", p50, p50 is not None and p50 <= 1.0, " ms")
    p99 = _median(results, name, "W3", "p99")
    add("W3 p99", "≤ 3 ms", p99, p99 is not None and p99 <= 3.0, " ms")
    w4 = _median(results, name, "W4")
    add("W4 idle", "≤ 0.05 CPU-s / 20 s", w4, w4 is not None and w4 <= 0.05)
    w5 = _median(results, name, "W5")
    if w5 is not None and w1:
        add("W5 deep / W1", "≥ 95 %", 100 * w5 / w1, w5 >= 0.95 * w1, " %")
    rows += _issue16_rows(results, name, w1)
    c1, c2 = _median(results, name, "W7c1"), _median(results, name, "W7c2")
    x2 = _median(results, name, "W7x2")
    if c1 and c2:
        add("W7 -c 2 / -c 1 (grows to the core count)", "> 110 %", 100 * c2 / c1,
            c2 > 1.1 * c1, " %")
    if c2 and x2:
        add("W7 2 × -c 1 / -c 2 (no collapse on one file)", "≥ 80 %", 100 * x2 / c2,
            x2 >= 0.8 * c2, " %")
    return rows


def _issue16_rows(results: Results, name: str,
                  w1: float | None) -> list[tuple[str, str, str, bool]]:
    """Issue 16's goals: ratios to floor-1 of the same run; W8-W11 without a cliff."""
    rows = []

    def add(goal: str, target: str, value: float | None, met: bool, unit: str = "") -> None:
        if value is not None:
            rows.append((goal, target, f"{number(value)}{unit}", met))

    # Issue 16: ratios to floor-1 of the same run (W2b: to its executemany).
    for key, title, target in (("W1", "W1 drain / floor-1", 2.5),
                               ("W2", "W2 delay() / floor-1", 0.8),
                               ("W2b", "W2 bulk / floor-1 executemany", 0.5),
                               ("W6", "W6 mixed / floor-1", 1.2),
                               ("W6p", "W6p 4 producers / floor-1 (same shape)", 1.0)):
        value, base = _median(results, name, key), _base(results, key)
        if value is not None and base:
            add(title, f"≥ ×{target:g}", value / base, value / base >= target, "×")
    # W8-W11: no cliff (within 3× of the no-op case, scaled by bytes for payloads).
    floor_w1 = _base(results, "W1")
    for key in ("W8", "W9"):
        value, base = _median(results, name, key), _base(results, key)
        if value is not None and base and w1 and floor_w1:
            relative = (value / base) / (w1 / floor_w1)
            add(f"{key} (× floor on the payload) / (W1 × floor)", "≥ 33 %", 100 * relative,
                relative >= 1 / 3, " %")
    for key in ("W10", "W11"):
        value = _median(results, name, key)
        if value is not None and w1:
            add(f"{key} / W1", "≥ 33 %", 100 * value / w1, value >= w1 / 3, " %")
    return rows


NOTES = """\
### How it was measured

- Every trial (system × workload × run) has a fresh temporary directory and database
  (or a flushed private redis-server on 127.0.0.1), its own worker processes started
  and stopped by pid, and a producer process in the system's own venv. Runs are
  interleaved: round 1 of every cell, then round 2 (starting one system later), ...
- W1, W5, W7 (drains): workers are started and warmed up, their process tree is frozen
  with SIGSTOP while the tasks are sent one by one with `delay()` (W5: then the filler
  is added behind them), and the clock runs from SIGCONT until the last result is in
  the store (polled every 2 ms, confirmed by a full count). Start-up is reported apart.
- W2: the producer alone, no worker running. W6: `delay()` to running workers, from
  the first send to the last stored result.
- W3: sequential `delay()` + `get()` against workers idle for 1 s, with each system's
  own `get()` (the floor polls `PRAGMA data_version` every 1 ms).
- W4 and the CPU per task: CPU time (the kernel's per-process scheduler clock) of the
  worker process tree, plus what its pool processes that exited in between had used.
- Results of W1, W5, W6 are read back through each system's API and compared with
  x + y; W3 checks every reply.
- Defaults everywhere except log level (warnings only). potatoq recycles pool
  processes every 1,000 tasks by default; Huey polls with backoff (0.1 s up to 10 s);
  SqliteHuey leaves SQLite's default `synchronous` (FULL); Celery runs with gossip,
  mingle and heartbeats on.
- W5 filler (untimed): liteq and potatoq `group()` in chunks of 20,000; Huey rows
  written in one transaction with Huey's serializer; Celery copies of one real message
  pushed with `LPUSH`; floor `executemany`.
"""


def errors(results: Results) -> list[str]:
    lines = []
    for cell in results.cells.values():
        for error in dict.fromkeys(cell.errors):
            lines.append(f"- {cell.system} {cell.workload}: {error}")
    return ["### Errors", "", *lines, ""] if lines else []


def render(results: Results, meta: dict[str, Any], duration: float | None = None) -> str:
    """The whole report as Markdown."""
    parts = [
        "## liteq benchmark", "",
        *header(results, meta, duration), "",
        *main_table(results), "",
        *scaling_table(results), "",
        *shapes_table(results), "",
        *details(results),
        *goals(results),
        *errors(results),
        NOTES,
    ]
    text = "\n".join(parts)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"
