"""``python -m bench``: measure liteq against Celery, Huey, potatoq and the SQLite floor.

Examples:
    python -m bench --all                                   # everything, 3 runs, full size
    python -m bench --quick --systems liteq-normal,floor-1  # the CI smoke run
    python -m bench --systems liteq-normal,floor-1 --workloads W1,W3 --runs 5
    python -m bench --list

The Markdown table goes to stdout (and to ``--markdown PATH``); progress goes to
stderr. Exit code 1 when a measured (installed) system failed somewhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import machine, procs, report, systems, workloads
from bench.harness import Runner
from bench.trial import Sizes

logger = logging.getLogger("bench")



def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Workloads: W1 drain, W2 delay() and bulk (W2b), W3 round trip, W4 idle CPU, "
               "W5 deep-queue drain, W6 mixed, W7 scaling (W7c1, W7c2, W7c4, W7x2), "
               "WL limited drain (concurrency_limit=1 per key over 100 keys).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--all", action="store_true",
                      help="every system and workload, full size, 3 runs (the default)")
    mode.add_argument("--quick", action="store_true",
                      help="smoke size: 1,000 tasks, 20,000 deep, 50 round trips, 3 s idle, 1 run")
    parser.add_argument("--systems", help="comma-separated names (see --list); default all")
    parser.add_argument("--workloads", help="comma-separated, e.g. W1,W3 (W2 = W2+W2b, "
                                            "W7 = all shapes); default all")
    parser.add_argument("--runs", type=int, help="runs per cell (default 3; --quick 1)")
    parser.add_argument("--size", type=int, help="tasks per W1/W2/W5/W6/W7 run")
    parser.add_argument("--deep", type=int, help="tasks queued behind W5's")
    parser.add_argument("--roundtrips", type=int, help="W3 timed round trips")
    parser.add_argument("--idle-seconds", type=float, help="W4 window")
    parser.add_argument("--json", metavar="PATH", help="write raw per-run numbers here")
    parser.add_argument("--markdown", metavar="PATH", help="write the table here too")
    parser.add_argument("--tmp", metavar="DIR", help="where run directories go (local disk!)")
    parser.add_argument("--keep", action="store_true", help="keep run directories and logs")
    parser.add_argument("--list", action="store_true", help="list systems and workloads")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.size:
        sizes.tasks = args.size
    if args.deep is not None:
        sizes.deep = args.deep
    if args.roundtrips:
        sizes.roundtrips = args.roundtrips
    if args.idle_seconds:
        sizes.idle_seconds = args.idle_seconds
    return sizes


def select(args: argparse.Namespace) -> tuple[list[systems.System], list[workloads.Workload]]:
    known = systems.by_name()
    chosen = list(known.values())
    if args.systems:
        names = [n.strip() for n in args.systems.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"unknown system(s) {', '.join(unknown)}: choose from "
                             f"{', '.join(known)}")
        chosen = [known[n] for n in names]
    keys = list(workloads.by_key())
    if args.workloads:
        try:
            keys = workloads.expand(args.workloads.split(","))
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    table = workloads.by_key()
    return chosen, [table[k] for k in keys]


def list_all() -> None:
    print("systems:")
    for system in systems.all_systems():
        reason = system.unavailable()
        print(f"  {system.name:14} {system.description}" + (f"  [{reason}]" if reason else ""))
    print("workloads:")
    for workload in workloads.by_key().values():
        print(f"  {workload.key:5} {workload.title} ({workload.unit})")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if args.list:
        list_all()
        return 0
    chosen, selected = select(args)
    sizes = sizes_from(args)
    runs = args.runs or (1 if args.quick else 3)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop our processes on these too
        signal.signal(signum, _interrupt)
    meta = machine.describe(args.tmp)
    started = time.monotonic()
    runner = Runner(chosen, selected, runs=runs, sizes=sizes, keep=args.keep, root=args.tmp)
    try:
        results = runner.run()
    except KeyboardInterrupt:
        logger.error("interrupted: stopping every process the harness started")
        procs.stop_all()
        return 130
    finally:
        procs.stop_all()
    duration = time.monotonic() - started
    meta["loadavg_end"] = os.getloadavg()
    text = report.render(results, meta, duration)
    print(text, end="", flush=True)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        payload = {"meta": meta, "sizes": asdict(sizes), "runs": runs,
                   "duration_seconds": duration, "results": results.records()}
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    logger.info("done in %.1f s", duration)
    failed = any(cell.errors for cell in results.cells.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
