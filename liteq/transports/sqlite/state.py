"""What every role of the SQLite transport shares: one store file, opened once.

:class:`SQLiteStore` owns the file's connection manager (:class:`Database`), its
peewee models, its wake-up pipes and the leases this process holds; the transport
makes one and hands it to each role object (messages, results, coordination), which
read it through :class:`SQLiteRole`.
"""

from __future__ import annotations

import sqlite3
import threading

from liteq._clock import boot_id
from liteq.exceptions import ImproperlyConfigured
from liteq.transports.sqlite import queries
from liteq.transports.sqlite.connection import (
    MIN_SQLITE_VERSION,
    Database,
    check_local_filesystem,
    create_private_file,
    sqlite_version_ok,
)
from liteq.transports.sqlite.schema import ensure_schema, make_models
from liteq.transports.sqlite.wakeup import WakeDir


class SQLiteStore:
    """One liteq store file as the transport's roles use it.

    Args:
        path: the absolute path of the database file.
        db: its connection manager (pragmas, transactions, busy retries).
    """

    def __init__(self, path: str, db: Database) -> None:
        self.path = path
        self.db = db
        self.models = make_models(db.peewee)
        self.wake = WakeDir(path)
        #: holder -> lease-clock time this process last wrote its lease row
        self.leases_held: dict[str, float] = {}
        self._opened = False
        self._open_lock = threading.Lock()

    def open(self) -> None:
        """Check SQLite and the filesystem, create the file and its tables (once).

        Raises:
            ImproperlyConfigured: SQLite is too old, or the file is on a network share.
        """
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
            ensure_schema(self.db, self.models)
            self._check_boot()
            self._opened = True

    def ensure_open(self) -> None:
        """Open the store on first use (every role method starts with this)."""
        if not self._opened:
            self.open()

    def _check_boot(self) -> None:
        """Expire every lease taken before the machine last booted."""
        current = boot_id()
        meta = self.models.Meta
        stored = self.db.read(lambda _c: meta.get_or_none(meta.key == "boot_id"))
        if stored is not None and stored.value == current:
            return

        def record(conn: sqlite3.Connection) -> None:
            row = meta.get_or_none(meta.key == "boot_id")
            if row is not None and row.value != current:
                conn.execute(queries.EXPIRE_ALL_LEASES)
            meta.replace(key="boot_id", value=current).execute()

        self.db.write(record)

    def close(self) -> None:
        self.db.close()
        self.wake.close()


class SQLiteRole:
    """A role of the transport working on a shared :class:`SQLiteStore`: the names
    its methods use, bound once."""

    def __init__(self, store: SQLiteStore) -> None:
        self.path = store.path
        self._db = store.db
        self._models = store.models
        self._wake = store.wake
        self._leases_held = store.leases_held
        self._ensure_open = store.ensure_open


__all__ = ["SQLiteRole", "SQLiteStore"]
