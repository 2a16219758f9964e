"""The current app: the one global liteq keeps.

``current_app()`` is the app set in this context (a ``ContextVar``), or else the app
most recently created with ``set_as_current=True`` (so threads a web server starts see
it too). Nothing here connects to anything.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from liteq.exceptions import ImproperlyConfigured

_current: ContextVar[Any] = ContextVar("liteq_current_app", default=None)
#: The request of the task executing in this context (None outside tasks).
current_request: ContextVar[Any] = ContextVar("liteq_current_request", default=None)
_fallback: list[Any] = []  # the last app created as current, for contexts that set none


def set_current_app(app: Any) -> None:
    """Make ``app`` the current app of this context and the fallback of others."""
    _current.set(app)
    _fallback[:] = [app]


def current_app() -> Any:
    """The current :class:`~liteq.app.LiteQ` app.

    Raises:
        ImproperlyConfigured: no app was created yet.
    """
    app = _current.get()
    if app is None and _fallback:
        app = _fallback[0]
    if app is None:
        raise ImproperlyConfigured(
            "no liteq app: create one with LiteQ('name', broker='sqlite:///tasks.db')"
        )
    return app


def reset_current_app() -> None:
    """Forget the current app (test fixtures use this between tests)."""
    _current.set(None)
    _fallback.clear()


__all__ = ["current_app", "current_request", "reset_current_app", "set_current_app"]
