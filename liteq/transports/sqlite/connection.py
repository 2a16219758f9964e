"""The one place that opens SQLite connections and runs transactions.

Every connection gets the same pragmas (WAL, ``synchronous``, ``trusted_schema=OFF``)
and runs in autocommit mode, so nothing opens a transaction behind our back. Writes go
through :meth:`Database.write`, which starts with ``BEGIN IMMEDIATE`` (take the write
lock first, so a transaction never fails half-way with ``SQLITE_BUSY``) and retries a
busy lock with short backoff until ``sqlite_busy_timeout``, then raises
:class:`liteq.OperationalError` naming the file. ``database is locked`` never reaches
a user.

Connections are per thread (peewee's connection state holds them) and are forgotten,
never closed, in a forked child: closing a connection inherited across ``fork()`` can
disturb the parent's locks.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import peewee

from liteq import platforms
from liteq.exceptions import (
    LiteQError,
    NetworkFilesystemError,
    OperationalError,
    StorageError,
    StoreNotFound,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Oldest SQLite liteq runs on: RETURNING (3.35) is on the claim path.
MIN_SQLITE_VERSION = (3, 35, 0)

#: Filesystems where WAL's shared memory does not work across processes.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "9p", "virtiofs",
        "afs", "coda", "davfs", "glusterfs", "ceph", "lustre", "gpfs", "beegfs", "orangefs",
        "ocfs2", "gfs2", "fuse.sshfs", "sshfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse",
        "fuse.glusterfs", "fuse.cephfs", "fuse.davfs", "fuse.juicefs", "fuse.goofys",
        "fuse.mountpoint-s3", "fuse.blobfuse", "fuse.blobfuse2", "fuse.smbnetfs",
    }
)

#: WAL pages after which a committing connection outside a worker (a producer)
#: checkpoints in its commit (SQLite's default is 1,000). Running workers checkpoint
#: every 0.1 s off the task path, which keeps the WAL under this, so a producer next to
#: them never pays a checkpoint (copying pages, two fsyncs) inside a ``delay()``; alone,
#: it pays one every 16 MB of WAL instead of every 4 MB.
AUTOCHECKPOINT_PAGES = 4000

#: Bytes the WAL file is cut back to after a checkpoint resets it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024

# Connections inherited across fork(): kept referenced so they are never closed in
# the child (sqlite3.Connection closes itself when collected).
_inherited: list[Any] = []
_databases: weakref.WeakSet[Database] = weakref.WeakSet()


#: Times this process found the write lock (or a read) busy and retried: each process
#: counts its own (a worker reports it in its heartbeat; see ``busy_retries``).
_busy_retries = 0


def busy_retries() -> int:
    """How many times this process retried a busy SQLite operation since it started."""
    return _busy_retries


def _forget_after_fork() -> None:
    global _busy_retries
    _busy_retries = 0  # a child counts its own
    for database in list(_databases):
        database.forget_connections()


platforms.at_fork(_forget_after_fork)


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name:
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    text = str(exc)
    return "locked" in text or "busy" in text


def storage_error(path: str, exc: sqlite3.Error) -> Exception:
    """liteq's error for a SQLite error on ``path``, by SQLite's error code.

    A full disk and I/O errors are :class:`OperationalError` (a writer may retry once
    space is freed); only a file SQLite says is not a database, or corrupt, is called so.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL"):
        return OperationalError(f"{path}: the disk is full ({exc})")
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")):
        return OperationalError(f"{path}: {exc} ({name}; is the disk full, or the file or "
                                "its directory not writable?)")
    if name.startswith("SQLITE_NOTADB"):
        return StorageError(f"{path} is not a SQLite database ({exc})")
    if name.startswith("SQLITE_CORRUPT"):
        return StorageError(f"{path} is corrupt: {exc}")
    if isinstance(exc, sqlite3.OperationalError):
        return OperationalError(f"{path}: {exc}")
    return StorageError(f"{path}: {exc}")


def mount_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The filesystem type of the mount holding ``path`` (Linux), or None if unknown."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0] if right.split() else None
    return best_type


def filesystem_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The filesystem the database at ``path`` really lives on: a network one if any
    of its directory, its resolved directory or the resolved file (a symlink may point
    elsewhere) is on one, else the type of the file's resolved directory.

    Example:
        >>> filesystem_of("/tmp/x.db", "/nonexistent") is None
        True
    """
    absolute = os.path.abspath(path)
    places = [os.path.dirname(absolute) or ".", os.path.realpath(absolute)]
    places.append(os.path.dirname(places[-1]) or ".")
    kinds = [mount_type(place, mountinfo) for place in places]
    for kind in kinds:
        if kind is not None and kind in NETWORK_FILESYSTEMS:
            return kind
    return kinds[-1]


def check_local_filesystem(path: str) -> None:
    """Refuse a database on a network filesystem, where WAL mode corrupts data.

    Symlinks are followed: the file and its directory are checked where they resolve.

    Raises:
        NetworkFilesystemError: the file or its directory is on nfs, cifs, sshfs, 9p, ...
    """
    mountinfo = os.environ.get("LITEQ_MOUNTINFO", "/proc/self/mountinfo")
    kind = filesystem_of(path, mountinfo)
    if kind is not None and kind in NETWORK_FILESYSTEMS:
        resolved = os.path.realpath(path)
        where = path if resolved == os.path.abspath(path) else f"{path} (-> {resolved})"
        raise NetworkFilesystemError(
            f"{where} is on a network filesystem ({kind}); SQLite's WAL mode needs a local "
            "filesystem on one host. Put the database on a local disk (a volume shared by "
            "containers on one host is fine), or use broker='redis://...' across hosts."
        )


def create_private_file(path: str) -> None:
    """Create ``path`` with mode 0600 unless it exists, so -wal and -shm inherit 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StorageError(f"cannot create {path}: directory {directory} does not exist")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
    os.close(fd)


def open_read_only(path: str, timeout: float = 10.0) -> sqlite3.Connection:
    """Open an existing file read-only: nothing is created, and the file is not changed.

    (A WAL-mode database gets its ``-wal`` and ``-shm`` files, as any reader makes.)

    Raises:
        StoreNotFound: ``path`` does not exist, or is a directory.
        StorageError: SQLite cannot open it.
    """
    if os.path.isdir(path):
        raise StoreNotFound(f"{path} is a directory, not a database file")
    if not os.path.exists(path):
        raise StoreNotFound(
            f"{path} does not exist: there is no liteq store to read (nothing was created)"
        )
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc


class _PeeweeDatabase(peewee.SqliteDatabase):
    """peewee's SQLite database, with connections made by :class:`Database`."""

    def __init__(self, owner: Database) -> None:
        super().__init__(owner.path, autoconnect=True)
        self._owner = owner

    def _connect(self) -> sqlite3.Connection:
        return self._owner.new_connection()

    def connect(self, reuse_if_open: bool = False) -> bool:
        try:
            return bool(super().connect(reuse_if_open))
        except peewee.PeeweeException as exc:
            # peewee re-raises an error by its class name (liteq's OperationalError
            # would become peewee's): give the caller liteq's own, as it was raised
            original = getattr(exc, "orig", None)
            if isinstance(original, LiteQError):
                raise original from None
            raise


class Database:
    """A SQLite file opened the liteq way.

    Example:
        >>> db = Database("/tmp/example.db")  # doctest: +SKIP
        >>> db.write(lambda conn: conn.execute("CREATE TABLE t (x)"))  # doctest: +SKIP
    """

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 10.0):
        self.path = path
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA", "OFF"):
            raise StorageError(
                f"sqlite_synchronous must be NORMAL or FULL, not {synchronous!r}"
            )
        self.busy_timeout = busy_timeout
        #: False in worker processes: a background thread checkpoints instead
        self.autocheckpoint = True
        self.peewee = _PeeweeDatabase(self)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        _databases.add(self)

    # -- connections -----------------------------------------------------------------

    def new_connection(self) -> sqlite3.Connection:
        """A new connection with liteq's pragmas; used by peewee for each thread."""
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.0
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._retry(lambda: self._configure(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -16000")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            pages = AUTOCHECKPOINT_PAGES if self.autocheckpoint else 0
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise
            raise storage_error(self.path, exc) from exc

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        return self.peewee.connection()  # type: ignore[no-any-return,no-untyped-call]

    def defer_checkpoints(self) -> None:
        """Stop committing connections from checkpointing (call :meth:`checkpoint`)."""
        self.autocheckpoint = False
        if not self.peewee.is_closed():
            self._retry(lambda: self.conn.execute("PRAGMA wal_autocheckpoint = 0"))

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking readers or writers."""
        self._retry(lambda: self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

    def forget_connections(self) -> None:
        """Drop inherited connections without closing them (after ``fork()``)."""
        state = self.peewee._state  # type: ignore[attr-defined]
        if state.conn is not None:
            _inherited.append(state.conn)
        self.peewee._state = type(state)()  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        """Close this thread's connection."""
        if os.getpid() != self._pid:
            self.forget_connections()
            return
        if not self.peewee.is_closed():
            try:
                self.peewee.close()
            except peewee.PeeweeException as exc:
                logger.debug("closing %s: %s", self.path, exc)

    # -- transactions ----------------------------------------------------------------

    def _retry(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying while the database is busy, up to the deadline."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0001
        while True:
            try:
                return operation()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._wrap(exc) from exc
                global _busy_retries
                _busy_retries += 1  # under the GIL; a lost increment is harmless
                if time.monotonic() >= deadline:
                    raise OperationalError(
                        f"database {self.path} stayed locked by another writer for more "
                        f"than {self.busy_timeout:g}s (sqlite_busy_timeout)"
                    ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.005)

    def _wrap(self, exc: sqlite3.Error) -> Exception:
        return storage_error(self.path, exc)

    def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body(conn)`` in one ``BEGIN IMMEDIATE`` transaction and commit.

        The whole body is retried if the lock cannot be taken; it must not have effects
        outside the database.
        """
        conn = self.conn
        if conn.in_transaction:  # inside app.transaction(): join it, the block commits
            return body(conn)

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        try:
            return self._retry(attempt)
        except sqlite3.DatabaseError as exc:
            raise self._wrap(exc) from exc

    def write_one(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run one write statement as its own transaction (SQLite's autocommit).

        One statement is atomic by itself: this costs one call into SQLite instead of
        three (``BEGIN IMMEDIATE``, the statement, ``COMMIT``) and holds the write lock
        only while the statement runs. A busy lock fails the statement before it
        changes anything, so it is retried like :meth:`write`. Inside
        ``app.transaction()`` the statement joins the open transaction.
        """
        conn = self.conn
        if conn.in_transaction:
            return conn.execute(sql, params)
        try:
            return self._retry(lambda: conn.execute(sql, params))
        except sqlite3.DatabaseError as exc:
            raise self._wrap(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An open ``BEGIN IMMEDIATE`` transaction for the caller's own statements."""
        conn = self.conn
        if conn.in_transaction:
            yield conn  # joined: the outer block commits
            return
        self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            if _open_transaction(conn):  # the block may have ended it itself
                conn.execute("ROLLBACK")
            raise
        else:
            if _open_transaction(conn):
                self._retry(lambda: conn.execute("COMMIT"))

    def read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``body(conn)`` (a consistent snapshot when it is one statement)."""
        conn = self.conn
        try:
            return self._retry(lambda: body(conn))
        except sqlite3.DatabaseError as exc:
            raise self._wrap(exc) from exc


def _open_transaction(conn: sqlite3.Connection) -> bool:
    return bool(conn.in_transaction)


def sqlite_version_ok() -> bool:
    return sqlite3.sqlite_version_info >= MIN_SQLITE_VERSION


__all__ = [
    "MIN_SQLITE_VERSION",
    "NETWORK_FILESYSTEMS",
    "Database",
    "busy_retries",
    "check_local_filesystem",
    "create_private_file",
    "filesystem_of",
    "mount_type",
    "open_read_only",
    "storage_error",
]
