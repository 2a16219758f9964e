"""Sending tasks inside Django's ``transaction.atomic()``.

When the Django database a transaction is open on and the liteq broker are the same
SQLite file (``broker="django://default"``, or the same path written twice), a task
sent in the block is written through Django's own connection, uncommitted: it exists
if and only if the transaction commits, and a rollback (of the block or of a savepoint
around it) takes it back. No extra call is needed.

When they are not the same file, the task is sent at once, whatever the transaction
does later; the first such send warns (:class:`NotAtomicWarning`) and points to
``delay_on_commit()``. Django's test cases wrap each test in a transaction; those
alone never warn.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from liteq.exceptions import LiteQError
from liteq.transports.sqlite import SQLiteTransport

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger(__name__)

_warned: set[tuple[int, str]] = set()
_lock = threading.Lock()


class NotAtomicWarning(UserWarning):
    """A task was sent inside ``transaction.atomic()`` on a database that is not the
    broker's file: it is sent now, even if the transaction rolls back."""


def sqlite_path(settings_dict: dict[str, Any]) -> str | None:
    """The real path of a Django SQLite database's file (None: not a file on disk)."""
    if "sqlite3" not in str(settings_dict.get("ENGINE", "")):
        return None
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return os.path.realpath(name)


def broker_path(app: LiteQ) -> str | None:
    """The real path of the app's SQLite broker file (None: not SQLite)."""
    broker = app.broker
    if not isinstance(broker, SQLiteTransport):
        return None
    return os.path.realpath(broker.location)


def django_transaction(app: LiteQ) -> Any:
    """The raw connection of an open Django transaction on the broker's file, or None.

    A transaction hook of the app (``app.transaction_hooks``): every send asks it.
    """
    open_on = [c for c in connections.all(initialized_only=True) if _in_transaction(c)]
    if not open_on:
        return None
    path = broker_path(app)
    for connection in open_on:
        if path is not None and sqlite_path(connection.settings_dict) == path:
            if connection.in_atomic_block:  # wake workers at commit, when it is visible
                transaction.on_commit(app.broker.notify_workers,  # type: ignore[attr-defined]
                                      using=connection.alias)
            return connection.connection
    for connection in open_on:
        if connection.atomic_blocks and all(getattr(block, "_from_testcase", False)
                                            for block in connection.atomic_blocks):
            continue  # only a TestCase's wrapping transaction
        _warn_once(app, connection.alias, path)
        break
    return None


def _in_transaction(connection: Any) -> bool:
    """In ``atomic()``, or with autocommit turned off (``set_autocommit(False)``)."""
    return bool(connection.in_atomic_block or
                (connection.connection is not None and not connection.autocommit))


def _warn_once(app: LiteQ, alias: str, path: str | None) -> None:
    key = (id(app), alias)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    where = path or app.broker.location
    warnings.warn(
        f"a task sent inside transaction.atomic() on Django's database {alias!r} is not "
        f"part of that transaction (the broker is {where}, not that database's file): it "
        "is sent now, even if the transaction rolls back. Use delay_on_commit() or "
        "apply_async_on_commit() to send at commit, or broker='django://" + alias + "' "
        "to make the send atomic",
        NotAtomicWarning,
        stacklevel=5,
    )


def open_broker_with(app: LiteQ, connection: Any) -> None:
    """Create liteq's tables when Django first connects to the broker's file, before
    any transaction of Django's holds the write lock that creating them needs."""
    path = sqlite_path(connection.settings_dict)
    if path is None:
        return
    try:
        if path == broker_path(app):
            app.broker.open()
    except LiteQError as exc:  # a bad broker setting: said at the first send, not here
        logger.debug("not opening the broker with Django's connection: %s", exc)


__all__ = ["NotAtomicWarning", "broker_path", "django_transaction", "open_broker_with",
           "sqlite_path"]
