"""The runner: every selected system × workload × run, errors kept in their cells.

Runs are interleaved (run 1 of every cell, then run 2 of every cell, ...), and each
round starts one system further down the list, so slow drift of a shared machine (and
whatever the first minute of an invocation costs) touches all systems alike and the
ratios to the floor, measured in the same rounds, stay meaningful.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import stats
from bench.systems.base import Environment, System
from bench.trial import Sizes, Trial
from bench.workloads import SHAPES, Workload

logger = logging.getLogger(__name__)

SHAPE_KEYS = frozenset(w.key for w in SHAPES)

#: A cell that failed this many times is not tried again in later rounds.
MAX_ERRORS = 2


@dataclass
class Cell:
    """Every run of one system on one workload."""

    system: str
    workload: str
    values: list[float] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: why it was not measured ("not installed ...", "n/a ..."), or None
    skipped: str | None = None
    #: another workload whose runs this cell shares (W7 "-c 2" is W1)
    same_as: str | None = None

    def summary(self) -> stats.Summary | None:
        return stats.Summary.of(self.values) if self.values else None

    def extra_median(self, key: str) -> float | None:
        found = [e[key] for e in self.extras if isinstance(e.get(key), (int, float))]
        return stats.Summary.of(found).median if found else None


@dataclass
class Results:
    """All cells of one benchmark invocation."""

    systems: list[System]
    workloads: list[Workload]
    sizes: Sizes
    runs: int
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, system: str, workload: str) -> Cell:
        return self.cells[(system, workload)]

    def resolved(self, system: str, workload: str) -> Cell | None:
        """The cell, following ``same_as`` to the cell that holds the runs."""
        cell = self.cells.get((system, workload))
        while cell is not None and cell.same_as is not None:
            cell = self.cells.get((system, cell.same_as))
        return cell

    def records(self) -> list[dict[str, Any]]:
        """Raw per-run numbers, for ``--json``."""
        out = []
        for cell in self.cells.values():
            base = {"system": cell.system, "workload": cell.workload}
            if cell.skipped or cell.same_as:
                out.append({**base, "skipped": cell.skipped, "same_as": cell.same_as})
            for index, (value, extra) in enumerate(zip(cell.values, cell.extras, strict=True)):
                out.append({**base, "run": index + 1, "value": value, "extra": extra})
            for error in cell.errors:
                out.append({**base, "error": error})
        return out


def _plan(systems: Sequence[System], workloads: Sequence[Workload]) -> dict[tuple[str, str], Cell]:
    keys = {w.key for w in workloads}
    cells: dict[tuple[str, str], Cell] = {}
    for system in systems:
        reason = system.unavailable()
        for workload in workloads:
            cell = Cell(system.name, workload.key)
            scaling = workload.key.startswith("W7")
            if reason:
                cell.skipped = reason
            elif scaling and not system.scalable:
                cell.skipped = "n/a"
            elif workload.key in SHAPE_KEYS and workload.key not in system.shapes:
                cell.skipped = "n/a"
            elif workload.key == "W7c2" and "W1" in keys:
                cell.same_as = "W1"  # W1 is -c 2 already
            elif workload.key == "W7x2" and system.adapter == "floor":
                # The floor has no pool: 2 x -c 1 is 2 processes, as -c 2 is.
                cell.same_as = "W1" if "W1" in keys else "W7c2" if "W7c2" in keys else None
            cells[(system.name, workload.key)] = cell
    return cells


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class Runner:
    """Measures the cells; one trial at a time, each in a fresh directory."""

    def __init__(self, systems: Sequence[System], workloads: Sequence[Workload], *,
                 runs: int, sizes: Sizes, keep: bool = False, root: str | None = None) -> None:
        self.results = Results(list(systems), list(workloads), sizes, runs,
                               _plan(systems, workloads))
        self.keep = keep
        self.root = root
        self.env = Environment()

    def run(self) -> Results:
        try:
            systems = self.results.systems
            for index in range(self.results.runs):
                shift = index % len(systems) if systems else 0
                for system in systems[shift:] + systems[:shift]:
                    for workload in self.results.workloads:
                        self._run_cell(system, workload, index)
        finally:
            self.env.close()
        return self.results

    def _run_cell(self, system: System, workload: Workload, index: int) -> None:
        cell = self.results.cell(system.name, workload.key)
        if cell.skipped or cell.same_as or len(cell.errors) >= MAX_ERRORS:
            return
        label = f"{system.name} {workload.key} run {index + 1}/{self.results.runs}"
        try:
            with Trial(system, self.env, self.results.sizes, keep=self.keep,
                       root=self.root) as trial:
                measurement = workload.run(trial, **dict(workload.params))
        except NotImplementedError as exc:
            cell.skipped = f"n/a ({exc})"
            logger.info("%s: %s", label, cell.skipped)
            return
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            cell.errors.append(_one_line(exc))
            logger.warning("%s: error: %s", label, cell.errors[-1])
            logger.debug("%s", label, exc_info=True)
            return
        # The machine's 1-minute load after the trial: other work shows here (--json).
        measurement.extra["loadavg"] = os.getloadavg()[0]
        cell.values.append(measurement.value)
        cell.extras.append(measurement.extra)
        logger.info("%s: %s %s", label, stats.number(measurement.value), workload.unit)
