"""What every role of the SQLite transport shares (the roles are mixins)."""

from __future__ import annotations

from types import SimpleNamespace

from liteq.transports.sqlite.connection import Database
from liteq.transports.sqlite.wakeup import WakeDir


class SQLiteState:
    """The state the roles use; :class:`~liteq.transports.sqlite.SQLiteTransport`
    sets it up and opens the file on first use."""

    path: str
    _db: Database
    _models: SimpleNamespace
    _wake: WakeDir
    #: holder -> lease-clock time this process last wrote its lease row
    _leases_held: dict[str, float]

    def _ensure_open(self) -> None:
        raise NotImplementedError


__all__ = ["SQLiteState"]
