"""What machine and software a result was measured on (the header of every table)."""

from __future__ import annotations

import datetime
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import peers
from bench.systems.liteq import liteq_dir


def _git(directory: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return ""


def liteq_commit() -> str:
    """The last commit that changed the liteq package being measured (``+dirty`` when
    its files differ from that commit)."""
    package = liteq_dir()
    if package is None:
        return "liteq not importable"
    commit = _git(package, "log", "-1", "--format=%h", "--", ".")
    if not commit:
        return f"unknown commit ({package})"
    dirty = _git(package, "status", "--porcelain", "--", ".")
    return commit + ("+dirty" if dirty else "")


def _redis_version() -> str:
    try:
        text = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "missing"
    for part in text.split():
        if part.startswith("v="):
            return part[2:]
    return text.strip() or "unknown"


def _filesystem(path: str) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 2 and path.startswith(fields[1]) and len(fields[1]) >= len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def describe(tmp_root: str | None = None) -> dict[str, Any]:
    """Facts about this machine and the software under test."""
    tmp = tmp_root or tempfile.gettempdir()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "liteq_commit": liteq_commit(),
        "liteq_path": str(liteq_dir()),
        "peers": peers.versions(),
        "redis_server": _redis_version(),
        "tmp": f"{tmp} ({_filesystem(os.path.realpath(tmp))})",
        "loadavg": os.getloadavg(),
    }
