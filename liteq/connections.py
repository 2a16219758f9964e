"""The app's transports: opened from the settings on first use, reopened when they change.

:class:`Connections` is the component a :class:`~liteq.app.LiteQ` owns
(``app.connections``) behind ``app.broker`` and ``app.backend``: it reads
``broker_url``, ``result_backend`` and their options, opens one transport per store (the
results share the broker's unless ``result_backend`` names another store), and closes
both when one of those settings changes, so a send never goes to the old store.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from liteq.config import Settings, result_store, seconds
from liteq.transports import transport_for
from liteq.transports.base import Transport

logger = logging.getLogger("liteq.app")

#: Where messages go when no setting or environment variable names a store.
DEFAULT_BROKER_URL = "sqlite:///liteq.db"


class Connections:
    """The broker and result transports of one app's settings.

    Example:
        >>> connections = Connections(app.conf)  # doctest: +SKIP
        >>> connections.broker.depth()  # doctest: +SKIP
        {}
    """

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self._lock = threading.RLock()
        self._broker: Transport | None = None
        self._backend: Transport | None = None
        #: the settings the open transports were made from, and when they were read
        self._opened_with: tuple[Any, ...] | None = None
        self._generation = -1

    @property
    def broker_url(self) -> str:
        """``broker_url``, else ``LITEQ_BROKER_URL`` or ``CELERY_BROKER_URL``, else
        ``sqlite:///liteq.db``."""
        url = self.conf.broker_url or os.environ.get("LITEQ_BROKER_URL") or \
            os.environ.get("CELERY_BROKER_URL")
        return str(url) if url else DEFAULT_BROKER_URL

    @property
    def broker(self) -> Transport:
        """The transport holding messages (opened on first use)."""
        if self._broker is None or self.conf._generation != self._generation:
            with self._lock:
                self._follow_settings()
                if self._broker is None:
                    url = self.broker_url
                    self._broker = transport_for(url, self._options(url))
        return self._broker

    @property
    def backend(self) -> Transport:
        """The transport holding results: the broker's unless ``result_backend`` names
        another store (see :func:`liteq.config.result_store`)."""
        if self._backend is None or self.conf._generation != self._generation:
            with self._lock:
                self._follow_settings()
                if self._backend is None:
                    url = result_store(self.conf.result_backend)
                    broker = self.broker
                    if url is None or url == self.broker_url:
                        self._backend = broker
                    else:
                        self._backend = transport_for(url, self._options(url, backend=True),
                                                      setting="result_backend")
        return self._backend

    def close(self) -> None:
        """Close both transports (reopened on next use)."""
        with self._lock:
            if self._broker is not None or self._backend is not None:
                logger.debug("settings changed: transports will reopen")
            for transport in {id(t): t for t in (self._broker, self._backend) if t}.values():
                transport.close()
            self._broker = self._backend = None

    def _options(self, url: str, backend: bool = False) -> dict[str, Any]:
        """A transport's options: ``broker_transport_options``, and for a separate result
        store ``result_backend_transport_options`` over them (Celery's names, e.g. a
        sentinel:// result backend's ``master_name``)."""
        conf = self.conf
        return {
            "synchronous": conf.sqlite_synchronous,
            "busy_timeout": seconds(conf.sqlite_busy_timeout, "sqlite_busy_timeout"),
            **(conf.broker_transport_options or {}),
            **((conf.result_backend_transport_options or {}) if backend else {}),
            "conf": conf,
        }

    def _follow_settings(self) -> None:
        """Close the transports if a setting they were opened with has changed."""
        generation = self.conf._generation
        if generation == self._generation:
            return
        conf = self.conf
        current = (self.broker_url, conf.result_backend,
                   dict(conf.broker_transport_options or {}),
                   dict(conf.result_backend_transport_options or {}),
                   conf.sqlite_synchronous, conf.sqlite_busy_timeout)
        if current != self._opened_with:
            if self._opened_with is not None:
                self.close()
            self._opened_with = current
        self._generation = generation


__all__ = ["DEFAULT_BROKER_URL", "Connections"]
