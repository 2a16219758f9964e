"""``broker="django://default"``: the SQLite file of a Django ``DATABASES`` entry.

The alias after ``django://`` names the entry (``default`` when empty). Its file is
read when the transport is made, so a test run that renames the database (Django's
test databases) uses the renamed file. With the broker in Django's own file, a
``delay()`` inside ``transaction.atomic()`` joins the transaction
(:mod:`liteq.contrib.django.transactions`); liteq's tables are prefixed ``liteq_`` and
live beside the project's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured
from django.db import connections

from liteq.contrib.django.transactions import sqlite_path
from liteq.exceptions import ImproperlyConfigured
from liteq.transports.sqlite import SQLiteTransport


def database_file(url: str) -> str:
    """The SQLite file a ``django://alias`` URL stands for.

    Raises:
        ImproperlyConfigured: Django is not configured, no such alias, or the database
            is not a SQLite file.
    """
    parts = urlsplit(url)
    alias = parts.netloc or parts.path.strip("/") or "default"
    try:
        databases = connections.settings
        entry = databases[alias]
    except DjangoImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            f"{url}: Django's settings are not configured ({exc})"
        ) from None
    except KeyError:
        raise ImproperlyConfigured(
            f"{url}: no DATABASES entry {alias!r} in {settings.SETTINGS_MODULE or 'settings'} "
            f"(there are {', '.join(sorted(databases))})"
        ) from None
    path = sqlite_path(entry)
    if path is None:
        raise ImproperlyConfigured(
            f"{url}: Django's database {alias!r} is not a SQLite file "
            f"(ENGINE {entry.get('ENGINE')!r}, NAME {entry.get('NAME')!r}); point the broker "
            "at a file (sqlite:///tasks.db) or a redis:// URL instead"
        )
    return path


class DjangoTransport(SQLiteTransport):
    """The SQLite transport on the file of a Django database (``django://alias``)."""

    schemes = ("django",)  # type: ignore[assignment]  # SQLite's tuple is inferred as 4 names

    @classmethod
    def check_store(cls, url: str) -> None:
        """Read-only commands: the Django database's file holds a liteq store."""
        super().check_store(database_file(url))

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url_given = url
        super().__init__(database_file(url), options)


__all__ = ["DjangoTransport", "database_file"]
