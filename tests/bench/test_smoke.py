"""The benchmark harness still runs: a smoke-size run of liteq and the floor.

Timings are never asserted here (they belong to ``python -m bench``); this checks that
every cell of the table holds a measurement and the run's results were verified.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_smoke_run_measures_every_cell(tmp_path: Path) -> None:
    raw = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--systems", "liteq-normal,floor-1",
         "--workloads", "W1,W2,W3", "--json", str(raw), "--tmp", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| liteq-normal")]
    assert table and "error" not in table[0] and "not available" not in table[0], done.stdout
    records = json.loads(raw.read_text())["results"]
    measured = {(r["system"], r["workload"]) for r in records if r.get("value") is not None}
    for system in ("liteq-normal", "floor-1"):
        for workload in ("W1", "W2", "W2b", "W3"):
            assert (system, workload) in measured, (system, workload, records)
