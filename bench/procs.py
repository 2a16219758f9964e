"""Processes the harness starts: spawned in their own session, stopped only by pid.

Every process started here is remembered until it is reaped, so an error, Ctrl-C or
exit still stops it (:func:`stop_all`, registered with ``atexit``). A group's process
tree (the started processes and all their descendants, found with psutil) can be
frozen with SIGSTOP, thawed, and measured for CPU time.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

#: Seconds a process gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0

_live: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class Command:
    """What to run: argv, working directory and extra environment."""

    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    label: str = "process"


def spawn(command: Command, log_path: Path, stdin: int | None = None,
          stdout: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session, stderr (and stdout unless piped) to a log."""
    env = {**os.environ, **command.env}
    log = open(log_path, "ab")  # the child keeps its own copy; ours is closed below
    try:
        process = subprocess.Popen(
            command.argv, cwd=command.cwd, env=env, stdin=stdin,
            stdout=stdout if stdout is not None else log, stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()
    _live[process.pid] = process
    logger.debug("started %s pid %d: %s", command.label, process.pid, " ".join(command.argv))
    return process


def _tree(pids: Sequence[int]) -> list[psutil.Process]:
    """The processes ``pids`` and their descendants that are still alive."""
    found: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            found[pid] = parent
            for child in parent.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def _signal_all(processes: Sequence[psutil.Process], signum: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.send_signal(signum)  # psutil refuses a pid that was reused


def stop(processes: Sequence[subprocess.Popen[bytes]], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each process (its descendants are noted first), SIGKILL what is left."""
    tree = _tree([p.pid for p in processes if p.poll() is None])
    _signal_all(tree, signal.SIGCONT)  # a frozen process cannot handle SIGTERM
    _signal_all([t for t in tree if t.pid in {p.pid for p in processes}], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("pid %d ignored SIGTERM for %gs: SIGKILL", process.pid, timeout)
            process.kill()
            process.wait()
    _, alive = psutil.wait_procs(tree, timeout=max(0.0, min(2.0, deadline - time.monotonic())))
    _signal_all(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    for process in processes:
        _live.pop(process.pid, None)


def stop_all() -> None:
    """Stop everything still running that this harness started (errors, Ctrl-C, exit)."""
    if _live:
        stop(list(_live.values()), timeout=5.0)


atexit.register(stop_all)


class ProcessGroup:
    """The worker processes of one run (one or more started commands, with children)."""

    def __init__(self, commands: Sequence[Command], logdir: Path) -> None:
        self.commands = list(commands)
        self.logdir = logdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.started_at = 0.0

    def start(self) -> ProcessGroup:
        self.started_at = time.monotonic()
        for index, command in enumerate(self.commands):
            log = self.logdir / f"{command.label}-{index}.log"
            self.logs.append(log)
            self.processes.append(spawn(command, log))
        return self

    def top_pids(self) -> set[int]:
        """The pids the harness started (a worker's main process), without children."""
        return {p.pid for p in self.processes}

    def pids(self) -> list[int]:
        """Every live process of the group, descendants included."""
        return [p.pid for p in _tree([p.pid for p in self.processes])]

    def check(self) -> None:
        """Raise if a started process has exited (with the last line of its log)."""
        for process, log in zip(self.processes, self.logs, strict=True):
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"worker pid {process.pid} exited with {code}: {tail(log)}")

    def freeze(self) -> None:
        """SIGSTOP the whole tree (children first, so none sees its parent stop)."""
        tree = _tree([p.pid for p in self.processes])
        _signal_all(list(reversed(tree)), signal.SIGSTOP)

    def thaw(self) -> None:
        _signal_all(_tree([p.pid for p in self.processes]), signal.SIGCONT)

    def cpu_times(self) -> dict[tuple[int, float, str], float]:
        """CPU seconds of each live process of the tree, keyed by (pid, start time, kind).

        Kind ``"self"`` is the process's own time (all threads); ``"reaped"`` is the time
        of its children that exited and were waited for (a pool that recycles its
        processes, like potatoq's every 1,000 tasks, would otherwise hide their work).
        """
        times = {}
        for process in _tree([p.pid for p in self.processes]):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                key = (process.pid, process.create_time())
                times[(*key, "self")] = process_cpu(process)
                cpu = process.cpu_times()
                times[(*key, "reaped")] = float(cpu.children_user + cpu.children_system)
        return times

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        stop(self.processes, timeout)


#: Linux's clock id for a process's scheduler CPU time: MAKE_PROCESS_CPUCLOCK(pid, SCHED).
_CPUCLOCK_SCHED = 2


def process_cpu(process: psutil.Process) -> float:
    """CPU seconds a process (all its threads) has used.

    Read from the kernel's per-process scheduler clock (nanoseconds) where Linux offers
    it; else psutil's user + system time, which counts in 10 ms ticks.
    """
    try:
        return time.clock_gettime(((~process.pid) << 3) | _CPUCLOCK_SCHED)
    except (OSError, OverflowError, AttributeError):
        cpu = process.cpu_times()
        return float(cpu.user + cpu.system)


def tail(path: Path, lines: int = 1) -> str:
    """The last non-empty line(s) of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"


def cpu_delta(before: dict[tuple[int, float, str], float],
              after: dict[tuple[int, float, str], float], only: set[int] | None = None,
              kinds: tuple[str, ...] = ("self", "reaped")) -> float:
    """CPU seconds spent between two :meth:`ProcessGroup.cpu_times` snapshots
    (of the pids in ``only``, if given; of the ``kinds`` of time asked for).

    A process that appeared in between counts from zero. One that exited in between
    counts through its parent's reaped time (10 ms ticks), if its parent reaped it.
    """
    return sum(value - before.get(key, 0.0) for key, value in after.items()
               if (only is None or key[0] in only) and key[2] in kinds)
