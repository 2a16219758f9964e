"""The SQLite transport: messages, results and workers in one local file (WAL mode).

Producers and workers on one host share the file. Claims lease rows inside
``BEGIN IMMEDIATE`` transactions; acks, results and retries are fenced by the lease
token; idle workers and waiting callers sleep on wake-up pipes beside the file.

The transport is assembled from its roles, one module each, as the contract groups
them: ``messages.py`` (the queue and its leases), ``results.py``, ``coordination.py``
(beat, control, rate limits, workers); ``connection.py`` owns transactions,
``queries.py`` names the hot SQL, ``schema.py`` holds the tables.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from liteq._clock import boot_id
from liteq.exceptions import ImproperlyConfigured
from liteq.transports.base import Transport
from liteq.transports.sqlite import queries
from liteq.transports.sqlite.connection import (
    MIN_SQLITE_VERSION,
    Database,
    check_local_filesystem,
    create_private_file,
    sqlite_version_ok,
)
from liteq.transports.sqlite.coordination import CoordinationRole
from liteq.transports.sqlite.messages import MessagesRole
from liteq.transports.sqlite.results import ResultsRole
from liteq.transports.sqlite.schema import ensure_schema, make_models
from liteq.transports.sqlite.wakeup import WakeDir

logger = logging.getLogger(__name__)

#: While tasks flow, a worker's housekeeping checkpoints the WAL this often (seconds),
#: off the task path; committing connections of workers never checkpoint themselves.
CHECKPOINT_EVERY = 0.1
#: Seconds between looks at an idle WAL.
MAINTAIN_IDLE = 1.0


def path_from_url(url: str) -> tuple[str, dict[str, str]]:
    """The file path and query options of ``sqlite:///rel.db``, ``sqlite:////abs.db``
    or a plain path.

    Example:
        >>> path_from_url("sqlite:///tasks.db?synchronous=full")
        ('tasks.db', {'synchronous': 'full'})
    """
    if "://" not in url:
        path, _, query = url.partition("?")
        return path, dict(parse_qsl(query))
    parts = urlsplit(url)
    if parts.scheme not in ("sqlite", "sqlite3", "file"):
        raise ImproperlyConfigured(f"not a SQLite URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise ImproperlyConfigured(
            f"{url!r}: a SQLite URL has no host; write sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)
    # sqlite:///tasks.db -> "/tasks.db" -> relative "tasks.db"; sqlite:////abs.db -> "//abs.db"
    path = path[1:] if parts.scheme != "file" else path
    if not path or path == ":memory:":
        raise ImproperlyConfigured(
            f"{url!r}: liteq needs a database file that workers can share, not an "
            "in-memory database"
        )
    return path, dict(parse_qsl(parts.query))


class SQLiteTransport(MessagesRole, ResultsRole, CoordinationRole, Transport):
    """The default transport: one SQLite file in WAL mode on a local filesystem.

    Example:
        >>> transport = SQLiteTransport("sqlite:///tasks.db", {})  # doctest: +SKIP
        >>> transport.depth()  # doctest: +SKIP
        {}
    """

    schemes = ("sqlite", "sqlite3", "file", "")
    supports_app_transactions = True

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        path, query = path_from_url(url)
        self.path = os.path.abspath(path)
        settings = {**options, **query}
        try:
            busy_timeout = float(settings.get("busy_timeout", 10.0))
        except ValueError:
            raise ImproperlyConfigured(
                f"busy_timeout must be a number of seconds, not {settings['busy_timeout']!r}"
            ) from None
        self._db = Database(
            self.path,
            synchronous=str(settings.get("synchronous", "NORMAL")),
            busy_timeout=busy_timeout,
        )
        self._models = make_models(self._db.peewee)
        self._wake = WakeDir(self.path)
        self._opened = False
        self._open_lock = threading.Lock()
        #: holder -> lease-clock time this process last wrote its lease row
        self._leases_held: dict[str, float] = {}
        self._wal_changed = -1
        self._checkpointed = 0.0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.path

    @property
    def database(self) -> Database:
        """The file's connection manager (for ``app.transaction()`` and tools)."""
        self._ensure_open()
        return self._db

    def open(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            if not sqlite_version_ok():
                raise ImproperlyConfigured(
                    f"liteq needs SQLite {'.'.join(map(str, MIN_SQLITE_VERSION))} or newer; "
                    f"Python here links SQLite {sqlite3.sqlite_version}"
                )
            check_local_filesystem(self.path)
            create_private_file(self.path)
            ensure_schema(self._db, self._models)
            self._check_boot()
            self._opened = True

    def _ensure_open(self) -> None:
        if not self._opened:
            self.open()

    def _check_boot(self) -> None:
        """Expire every lease taken before the machine last booted."""
        current = boot_id()
        meta = self._models.Meta
        stored = self._db.read(lambda _c: meta.get_or_none(meta.key == "boot_id"))
        if stored is not None and stored.value == current:
            return

        def record(conn: sqlite3.Connection) -> None:
            row = meta.get_or_none(meta.key == "boot_id")
            if row is not None and row.value != current:
                conn.execute(queries.EXPIRE_ALL_LEASES)
            meta.replace(key="boot_id", value=current).execute()

        self._db.write(record)

    def close(self) -> None:
        self._db.close()
        self._wake.close()

    def after_fork(self) -> None:
        self._db.forget_connections()

    def worker_mode(self) -> None:
        # A commit that crosses the WAL's size threshold would otherwise checkpoint
        # (copy pages, fsync) in the middle of a task's round trip.
        self._db.defer_checkpoints()

    def maintain(self) -> float:
        self._ensure_open()
        try:
            changed = os.stat(self.path + "-wal").st_mtime_ns
        except FileNotFoundError:
            return MAINTAIN_IDLE
        if changed == self._wal_changed:
            return MAINTAIN_IDLE
        now = time.monotonic()
        if now - self._checkpointed >= CHECKPOINT_EVERY:
            self._db.checkpoint()
            self._checkpointed = now
            # a commit during the checkpoint changes the WAL again: look once more
            self._wal_changed = os.stat(self.path + "-wal").st_mtime_ns
        return CHECKPOINT_EVERY


__all__ = ["SQLiteTransport", "path_from_url"]
