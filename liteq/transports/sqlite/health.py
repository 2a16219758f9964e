"""Facts about a SQLite store for ``liteq doctor``, read without changing the file."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from liteq.transports.sqlite.connection import (
    NETWORK_FILESYSTEMS,
    filesystem_of,
    open_read_only,
)
from liteq.transports.sqlite.schema import MAGIC, SCHEMA_VERSION

#: PRAGMA synchronous values by number.
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
#: Bytes of a WAL frame header (each frame is one page plus this).
WAL_FRAME_HEADER = 24
WAL_HEADER = 32


def sqlite_health(path: str, synchronous: str) -> dict[str, Any]:
    """Filesystem, journal mode, synchronous, WAL size, schema version and file modes.

    ``synchronous`` is the setting liteq's connections use (a per-connection pragma,
    so it is the configured one, not read from the file).
    """
    mountinfo = os.environ.get("LITEQ_MOUNTINFO", "/proc/self/mountinfo")
    filesystem = filesystem_of(path, mountinfo)
    facts: dict[str, Any] = {
        "kind": "sqlite", "path": path, "filesystem": filesystem,
        "network_filesystem": filesystem in NETWORK_FILESYSTEMS if filesystem else None,
        "synchronous": synchronous.upper(), "expected_schema_version": SCHEMA_VERSION,
        "file_modes": {},
    }
    for suffix in ("", "-wal", "-shm"):
        try:
            facts["file_modes"][path + suffix] = os.stat(path + suffix).st_mode & 0o777
        except FileNotFoundError:
            pass
    conn = open_read_only(path)
    try:
        facts["journal_mode"] = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        raw = int(conn.execute("PRAGMA user_version").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        facts["error"] = str(exc)
        return facts
    finally:
        conn.close()
    facts["schema_version"] = raw & 0xFFFF if raw & ~0xFFFF == MAGIC else None
    try:
        wal = os.stat(path + "-wal").st_size
    except FileNotFoundError:
        wal = 0
    facts["wal_bytes"] = wal
    # frames in the WAL not yet copied back: an upper bound of the checkpoint lag
    facts["wal_frames"] = max(0, wal - WAL_HEADER) // (page_size + WAL_FRAME_HEADER)
    return facts


__all__ = ["sqlite_health"]
