"""liteq's tables (peewee models), their version, and forward-only migrations.

Every table is prefixed ``liteq_`` so the file can also hold the application's own
tables. The schema version lives in ``PRAGMA user_version`` as ``MAGIC + version``:
the magic high bits tell liteq's files from files another program versions the same way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from types import SimpleNamespace

import peewee as pw

from liteq.exceptions import OperationalError, StorageError
from liteq.transports.sqlite.connection import Database, open_read_only, storage_error

#: High 16 bits of ``user_version`` in a liteq file ("LQ").
MAGIC = 0x4C51 << 16
#: The schema this liteq writes.
SCHEMA_VERSION = 6

_ZERO = pw.SQL("DEFAULT 0")

# Message states (the ``state`` column).
READY, LEASED, SCHEDULED = 0, 1, 2
#: Waiting for a concurrency slot or a rate token (flow control, schema 6): never
#: claimed; the settle that frees a slot, or the claim once a token is due, makes it
#: ready (``flow.py``).
BLOCKED = 3
#: The states by the names ``inspect`` and the contract use (``StoredMessage.state``).
STATE_NAMES = {READY: "ready", LEASED: "leased", SCHEDULED: "scheduled", BLOCKED: "blocked"}


def make_models(database: pw.Database) -> SimpleNamespace:
    """The peewee models bound to one database (two files in one process don't mix)."""

    class Base(pw.Model):
        class Meta:
            legacy_table_names = False

    Base._meta.set_database(database)

    class Message(Base):
        """A task message waiting, scheduled or leased."""

        id = pw.AutoField()  # arrival order
        task_id = pw.TextField()
        task_name = pw.TextField()
        queue = pw.TextField()
        priority = pw.IntegerField(default=0, constraints=[_ZERO])
        run_at = pw.FloatField()  # eta, or the time it was published (epoch seconds)
        expires = pw.FloatField(null=True)
        state = pw.IntegerField()  # READY, LEASED or SCHEDULED
        acks_late = pw.BooleanField(default=False, constraints=[_ZERO])
        deliveries = pw.IntegerField(default=0, constraints=[_ZERO])
        worker_id = pw.TextField(null=True)  # the lease holder (see Lease)
        token = pw.IntegerField(null=True)
        content_type = pw.TextField()
        header = pw.BlobField()
        body = pw.BlobField()
        #: flow control, json (messages.Flow.dumps); NULL for most messages (schema 6)
        flow = pw.TextField(null=True)
        #: the flow key a BLOCKED message waits on (schema 6)
        gate = pw.TextField(null=True)

        class Meta:
            table_name = "liteq_messages"

    Message.add_index(
        pw.ModelIndex(
            Message,
            # Entries end with the rowid (the id) anyway: ties in run_at go by arrival.
            (Message.queue, Message.priority.desc(), Message.run_at),
            name="liteq_messages_ready",
            where=(Message.state == READY),
        )
    )
    Message.add_index(
        pw.ModelIndex(
            Message,
            (Message.queue, Message.run_at),
            name="liteq_messages_scheduled",
            where=(Message.state == SCHEDULED),
        )
    )
    Message.add_index(
        pw.ModelIndex(
            Message, (Message.worker_id,), name="liteq_messages_worker",
            where=(Message.state == LEASED),
        )
    )

    class Lease(Base):
        """One lease holder (a worker process) and the deadline of all it holds.

        A holder renews every message it holds with one update of its own row, so a
        heartbeat costs the same with one task in flight or a thousand.
        """

        holder = pw.TextField(primary_key=True)
        lease_until = pw.FloatField()  # lease clock (CLOCK_BOOTTIME) seconds

        class Meta:
            table_name = "liteq_leases"
            without_rowid = True

    class Result(Base):
        """A task's latest state and result."""

        task_id = pw.TextField(primary_key=True)
        state = pw.TextField()
        content_type = pw.TextField()
        payload = pw.BlobField(null=True)
        traceback = pw.TextField(null=True)
        task_name = pw.TextField(null=True)
        worker = pw.TextField(null=True)
        retries = pw.IntegerField(default=0, constraints=[_ZERO])
        date_done = pw.FloatField()
        expires_at = pw.FloatField(null=True)
        extended = pw.BlobField(null=True)
        #: json result tuples of the tasks it sent while it ran (schema 3); NULL: none
        children = pw.BlobField(null=True)
        #: when a worker claimed it and when it started running (schema 5)
        date_received = pw.FloatField(null=True)
        date_started = pw.FloatField(null=True)

        class Meta:
            table_name = "liteq_results"
            without_rowid = True

    Result.add_index(
        pw.ModelIndex(
            Result, (Result.expires_at,), name="liteq_results_expiry",
            where=Result.expires_at.is_null(False),
        )
    )

    class Worker(Base):
        """A worker process that heartbeats while it lives."""

        id = pw.TextField(primary_key=True)
        hostname = pw.TextField()
        pid = pw.IntegerField()
        queues = pw.TextField()  # json list
        concurrency = pw.IntegerField()
        pool = pw.TextField()
        started_at = pw.FloatField()
        heartbeat_at = pw.FloatField()
        info = pw.TextField(default="{}")  # json object

        class Meta:
            table_name = "liteq_workers"

    class BeatEntry(Base):
        """A periodic task: its definition and its run times (see liteq.beat)."""

        name = pw.TextField(primary_key=True)
        definition = pw.BlobField()  # json: task, args, kwargs, options
        schedule = pw.TextField()  # json: liteq.schedules to_dict()
        next_run_at = pw.FloatField()  # epoch seconds
        last_run_at = pw.FloatField(null=True)
        total_run_count = pw.IntegerField(default=0, constraints=[_ZERO])

        class Meta:
            table_name = "liteq_beat"

    class Revoked(Base):
        """A revoked task id (see Transport.revoke)."""

        task_id = pw.TextField(primary_key=True)
        terminate = pw.BooleanField(default=False, constraints=[_ZERO])
        signal = pw.TextField(null=True)
        expires_at = pw.FloatField(null=True)  # epoch seconds

        class Meta:
            table_name = "liteq_revoked"
            without_rowid = True

    class RateLimit(Base):
        """A token bucket shared by all workers (see liteq.ratelimits)."""

        key = pw.TextField(primary_key=True)
        tokens = pw.FloatField()
        updated = pw.FloatField()  # lease clock seconds

        class Meta:
            table_name = "liteq_ratelimits"
            without_rowid = True

    class ChordPart(Base):
        """A header task of a chord whose final result is stored (see liteq.canvas)."""

        chord_id = pw.TextField()
        member_id = pw.TextField()
        position = pw.IntegerField()  # its place in the header
        #: 1 on the one row whose insertion completed the chord: its task sends the body
        completes = pw.BooleanField(default=False, constraints=[_ZERO])
        expires_at = pw.FloatField(null=True)  # epoch seconds

        class Meta:
            table_name = "liteq_chord_parts"
            primary_key = pw.CompositeKey("chord_id", "member_id")
            without_rowid = True

    ChordPart.add_index(
        pw.ModelIndex(
            ChordPart, (ChordPart.expires_at,), name="liteq_chord_parts_expiry",
            where=ChordPart.expires_at.is_null(False),
        )
    )

    class Group(Base):
        """A group's members, saved by ``GroupResult.save()`` (schema 3)."""

        group_id = pw.TextField(primary_key=True)
        payload = pw.BlobField()  # json: the GroupResult as a result tuple
        expires_at = pw.FloatField(null=True)  # epoch seconds

        class Meta:
            table_name = "liteq_groups"
            without_rowid = True

    Group.add_index(
        pw.ModelIndex(
            Group, (Group.expires_at,), name="liteq_groups_expiry",
            where=Group.expires_at.is_null(False),
        )
    )

    class Meta(Base):
        """Facts about the file itself (the boot its leases belong to)."""

        key = pw.TextField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "liteq_meta"

    return SimpleNamespace(Message=Message, Lease=Lease, Result=Result, Worker=Worker,
                           BeatEntry=BeatEntry, RateLimit=RateLimit, Revoked=Revoked,
                           Meta=Meta, ChordPart=ChordPart, Group=Group,
                           v1=[Message, Lease, Result, Worker, BeatEntry, RateLimit,
                               Revoked, Meta])


def _v1(models: SimpleNamespace) -> None:
    for model in models.v1:
        model.create_table(safe=True)


def _v2(models: SimpleNamespace) -> None:
    models.ChordPart.create_table(safe=True)


def _v3(models: SimpleNamespace) -> None:
    result = models.Result
    database = result._meta.database
    columns = {column.name for column in database.get_columns(result._meta.table_name)}
    if "children" not in columns:  # a file made by schema 1 got it in _v1 already
        database.execute_sql(f"ALTER TABLE {result._meta.table_name} ADD COLUMN children BLOB")
    models.Group.create_table(safe=True)


def _v4(models: SimpleNamespace) -> None:
    # Remote control commands (liteq.control): AUTOINCREMENT, so an id is never reused
    # and a worker's cursor never skips a command.
    database = models.Message._meta.database
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_control (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "ticket TEXT NOT NULL, name TEXT NOT NULL, arguments TEXT NOT NULL, "
        "destination TEXT, reply INTEGER NOT NULL DEFAULT 0, sent_at REAL NOT NULL, "
        "expires_at REAL NOT NULL)"
    )
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_control_replies (ticket TEXT NOT NULL, "
        "hostname TEXT NOT NULL, reply TEXT NOT NULL, expires_at REAL NOT NULL, "
        "PRIMARY KEY (ticket, hostname)) WITHOUT ROWID"
    )


def _v5(models: SimpleNamespace) -> None:
    # Per-minute task counters (Transport.task_counts), written in the settle
    # transaction; minute 0 holds the sums of the minutes no longer kept.
    result = models.Result
    database = result._meta.database
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_stats (minute REAL NOT NULL, task_name TEXT NOT "
        "NULL, state TEXT NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, "
        "runtime REAL NOT NULL DEFAULT 0, PRIMARY KEY (minute, task_name, state, bucket)) "
        "WITHOUT ROWID"
    )
    # The task's timeline: claimed and started (a file made by schema 5 has them).
    table = result._meta.table_name
    columns = {column.name for column in database.get_columns(table)}
    for column in ("date_received", "date_started"):
        if column not in columns:
            database.execute_sql(f"ALTER TABLE {table} ADD COLUMN {column} REAL")


def _v6(models: SimpleNamespace) -> None:
    # Flow control (liteq.flow, transports/sqlite/flow.py): two columns on messages,
    # BLOCKED messages by the key they wait on, and three small tables.
    database = models.Message._meta.database
    table = models.Message._meta.table_name
    columns = {column.name for column in database.get_columns(table)}
    for column in ("flow", "gate"):
        if column not in columns:  # a file made by this schema has them from _v1
            database.execute_sql(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
    database.execute_sql(
        f"CREATE INDEX IF NOT EXISTS liteq_messages_blocked ON {table} "
        f"(gate, priority DESC, run_at) WHERE state = {BLOCKED}"
    )
    # A flow key: slots taken (ready or leased messages of a concurrency key), messages
    # blocked on it, and for a rate key, when its next token is due (lease clock).
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_flow (key TEXT PRIMARY KEY, "
        "used INTEGER NOT NULL DEFAULT 0, waiting INTEGER NOT NULL DEFAULT 0, "
        "due REAL) WITHOUT ROWID"
    )
    database.execute_sql(
        "CREATE INDEX IF NOT EXISTS liteq_flow_due ON liteq_flow (due) WHERE due IS NOT NULL"
    )
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_unique (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, "
        "expires_at REAL) WITHOUT ROWID"
    )
    # app.control.rate_limit(): a task's rate as set at run time (NULL: no limit)
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_rate_overrides (task TEXT PRIMARY KEY, rate REAL) "
        "WITHOUT ROWID"
    )
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS liteq_paused (queue TEXT PRIMARY KEY, since REAL NOT NULL) "
        "WITHOUT ROWID"
    )


#: version -> migration that brings the schema from version - 1 to version
MIGRATIONS: dict[int, Callable[[SimpleNamespace], None]] = {
    1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6}


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _liteq_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'liteq\\_%' ESCAPE '\\'"
    ).fetchall()
    return [row[0] for row in rows]


def check_version(path: str, raw: int, tables: list[str]) -> int:
    """The liteq schema version of a file, or a clear error for a foreign one."""
    if raw == 0:
        if tables:
            raise StorageError(
                f"{path} has liteq tables ({', '.join(sorted(tables))}) but no liteq schema "
                "version: it was not made by liteq, or was damaged"
            )
        return 0
    if raw & ~0xFFFF != MAGIC:
        raise StorageError(
            f"{path} holds another program's schema (PRAGMA user_version = {raw}); "
            "give liteq a file of its own"
        )
    version = raw & 0xFFFF
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} was written by a newer liteq (schema {version}; this liteq knows up "
            f"to {SCHEMA_VERSION}); upgrade liteq"
        )
    return version


def enable_wal(database: Database) -> None:
    """Switch the file to WAL mode (a no-op when it already is)."""

    def switch() -> str:
        conn = database.conn
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        return str(mode).lower()

    mode = database.read(lambda _conn: switch())
    if mode != "wal":
        raise StorageError(
            f"cannot put {database.path} in WAL mode (journal_mode stays {mode!r}); "
            "liteq needs a local filesystem with shared memory"
        )


def probe_store(path: str) -> int:
    """The liteq schema version of an existing file, read without changing anything.

    Raises:
        StoreNotFound: no such file (or a directory).
        StorageError: not a SQLite database, a SQLite database without liteq's tables,
            another program's schema, or a newer liteq's.
    """
    conn = open_read_only(path)
    try:
        raw = _version(conn)
        tables = _liteq_tables(conn)
    except sqlite3.DatabaseError as exc:
        raise storage_error(path, exc) from exc
    finally:
        conn.close()
    version = check_version(path, raw, tables)
    if version == 0:
        raise StorageError(
            f"{path} is not a liteq store: a SQLite database without liteq's tables "
            "(is it the right file? workers and producers create the store)"
        )
    return version


def ensure_schema(database: Database, models: SimpleNamespace) -> None:
    """Create or migrate liteq's tables; refuse files liteq cannot use.

    Raises:
        StorageError: not a SQLite file, a foreign schema, or a newer liteq's schema.
    """
    try:
        raw = database.read(lambda conn: _version(conn))
        tables = database.read(_liteq_tables)
    except (StorageError, OperationalError):
        raise
    except sqlite3.Error as exc:
        raise storage_error(database.path, exc) from exc
    except Exception as exc:
        raise StorageError(f"{database.path} is not a SQLite database: {exc}") from exc
    version = check_version(database.path, raw, tables)
    enable_wal(database)
    if version == SCHEMA_VERSION:
        return

    def migrate(conn: sqlite3.Connection) -> None:
        current = check_version(database.path, _version(conn), _liteq_tables(conn))
        for step in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[step](models)
        if current != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {MAGIC + SCHEMA_VERSION}")

    database.write(migrate)


__all__ = [
    "BLOCKED",
    "LEASED",
    "MAGIC",
    "READY",
    "SCHEDULED",
    "SCHEMA_VERSION",
    "STATE_NAMES",
    "check_version",
    "ensure_schema",
    "make_models",
    "probe_store",
]
