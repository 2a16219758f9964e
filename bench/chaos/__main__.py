"""``python -m bench.chaos``: liteq under hostile conditions, counted, as a Markdown table.

Real workers on a temporary SQLite file and on a private redis-server (AOF on), killed
and frozen by pid, a store on a full tmpfs, copies taken under load, malformed messages
written straight into the store. ``--quick`` is a smoke size (a minute or two); the full
size is the issue's (3,000 tasks, 60 s of kills, 8 × 2,500 producers) and takes long on a
shared machine. Not a timed test: nothing here measures speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable

from bench.chaos import scenarios
from bench.chaos.scenarios import Row
from bench.chaos.world import cleanup

COLUMNS = ("scenario", "transport", "tasks", "lost", "duplicates", "explained by a lease loss",
           "errors to producers", "raw errors", "pending forever", "worker crashes", "notes")


def plan(quick: bool) -> list[tuple[str, Callable[[str], Row]]]:
    kills, seconds = (300, 10.0) if quick else (3000, 60.0)
    per_producer = 100 if quick else 2500
    return [
        ("kill-late", lambda t: scenarios.kill_workers(t, kills, seconds, acks_late=True)),
        ("kill-early", lambda t: scenarios.kill_workers(t, kills, seconds, acks_late=False)),
        ("producers", lambda t: scenarios.producers(t, per_producer)),
        ("sigstop", lambda t: scenarios.stop_past_lease(t, 40 if quick else 200)),
        ("copies", lambda t: scenarios.copies_under_load(t, 5 if quick else 30)),
        ("disk-full", lambda t: scenarios.disk_full(t, 100 if quick else 1000)),
        ("corpus", lambda t: scenarios.malformed_corpus(t, 1 if quick else 5)),
        ("redis-kill", lambda t: scenarios.redis_killed(t, 200 if quick else 2000)),
        ("lock", lambda t: scenarios.lock_held(t, 6 if quick else 20, 15.0 if quick else 30.0)),
        ("expiry", lambda t: scenarios.expiry(t, 2000 if quick else 50000)),
    ]


def _cell(value: object) -> str:
    return "n/a" if value is None else str(value)


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if row.notes == ["does not apply"]:
            continue  # does not apply to this transport
        cells = [row.scenario, row.transport, row.tasks, row.lost, row.duplicates,
                 row.explained, row.producer_errors, row.raw_errors, row.pending_forever,
                 row.crashes, "; ".join(row.notes)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--transports", default="sqlite,redis")
    parser.add_argument("--only", default="", help="comma-separated scenario keys: "
                        "kill-late,kill-early,producers,sigstop,copies,disk-full,corpus,"
                        "redis-kill,lock,expiry")
    args = parser.parse_args(argv)
    transports = [t for t in args.transports.split(",") if t]
    if "redis" in transports and shutil.which("redis-server") is None:
        print("redis-server is not on PATH: Redis rows skipped", file=sys.stderr)
        transports.remove("redis")
    wanted = {k for k in args.only.split(",") if k}
    rows = []
    started = time.monotonic()
    for key, run in plan(args.quick):
        if wanted and key not in wanted:
            continue
        for transport in transports:
            print(f"... {key} on {transport}", file=sys.stderr, flush=True)
            try:
                rows.append(run(transport))
            except Exception as exc:  # a scenario that breaks is a row, not a stop
                rows.append(Row(key, transport, 0, None, None, None, None, None, None, None,
                                [f"harness error: {type(exc).__name__}: {exc}"]))
            cleanup()
    print(table(rows))
    print(f"\n{'quick' if args.quick else 'full'} size, {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
