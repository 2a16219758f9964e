"""Does result expiry keep up? A producer sends at a steady rate to real workers whose
results expire after a few seconds; every 10 s it prints the rows in the result table,
how many of them are past their expiry, and the size of the file and its WAL.

Not part of ``python -m bench`` (it measures a bound, not a speed)::

    .venv/bin/python -m bench.expiry --rate 400 --expires 5 --seconds 60

Without clean-up keeping up, the expired rows and the file grow for the whole run;
with it they stay bounded (about rate x (expires + one expiry pass)).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TASKS = """
from liteq import LiteQ

app = LiteQ(__name__, broker="sqlite:///{db}", result_expires={expires})


@app.task
def add(x, y):
    return x + y
"""


def _count(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        total = conn.execute("SELECT count(*) FROM liteq_results").fetchone()[0]
        expired = conn.execute("SELECT count(*) FROM liteq_results WHERE expires_at < ?",
                               (time.time(),)).fetchone()[0]
    finally:
        conn.close()
    return int(total), int(expired)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="tasks sent per second")
    parser.add_argument("--expires", type=float, default=5.0, help="result_expires (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="liteq-expiry-"))
    db = root / "q.db"
    (root / "expiry_tasks.py").write_text(
        textwrap.dedent(TASKS).format(db=db, expires=args.expires))
    sys.path.insert(0, str(root))
    import expiry_tasks  # type: ignore[import-not-found]  # written just above

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "liteq", "worker", "-A", "expiry_tasks", "-P", "prefork",
         "-c", str(args.concurrency), "-l", "warning"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        print("| t (s) | sent | result rows | expired rows | db MB | wal MB |")
        print("|---:|---:|---:|---:|---:|---:|")
        start = time.monotonic()
        sent, next_report = 0, 10.0
        batch = max(1, int(args.rate / 50))  # send in 50 small batches a second
        while (elapsed := time.monotonic() - start) < args.seconds:
            due = int(elapsed * args.rate)
            while sent < due:
                for _ in range(min(batch, due - sent)):
                    expiry_tasks.add.delay(sent, 1)
                    sent += 1
            if elapsed >= next_report:
                total, expired = _count(db)
                print(f"| {elapsed:.0f} | {sent} | {total} | {expired} | "
                      f"{_size(db) / 1e6:.1f} | {_size(Path(f'{db}-wal')) / 1e6:.1f} |",
                      flush=True)
                next_report += 10.0
            time.sleep(0.02)
        total, expired = _count(db)
        print(f"| end | {sent} | {total} | {expired} | {_size(db) / 1e6:.1f} | "
              f"{_size(Path(f'{db}-wal')) / 1e6:.1f} |")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
