"""Django support: Celery's Django layout, atomic enqueue, ``django.tasks``, commands.

Nothing here imports Django until a Django project is in use. When an app is created
with ``DJANGO_SETTINGS_MODULE`` set (as Celery's ``proj/celery.py`` does),
:func:`fixup` installs :class:`~liteq.contrib.django.fixups.DjangoFixup` on it:

- ``app.autodiscover_tasks()`` waits until Django's app registry is ready (or a worker
  starts), and workers call ``django.setup()``;
- tasks get ``delay_on_commit`` / ``apply_async_on_commit``
  (:class:`~liteq.contrib.django.task.DjangoTask`);
- a ``delay()`` inside ``transaction.atomic()`` joins Django's transaction when
  Django's database and the broker are the same SQLite file (``broker="django://default"``);
- workers close stale database connections around each task and never share one
  across a fork.

``liteq.contrib.django.tasks.LiteQBackend`` is a backend for Django's tasks framework,
and adding ``"liteq.contrib.django"`` to ``INSTALLED_APPS`` gives ``manage.py liteq``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger(__name__)


def fixup(app: LiteQ, env: str = "DJANGO_SETTINGS_MODULE") -> Any:
    """Install the Django fix-up on ``app`` if ``env`` names a settings module.

    Returns:
        The installed fix-up, or None (no settings module, or Django not installed).
    """
    if not os.environ.get(env):
        return None
    if importlib.util.find_spec("django") is None:
        logger.warning("%s is set but Django is not installed: no Django fix-ups", env)
        return None
    # Imported here: this module must stay importable without Django.
    module = importlib.import_module("liteq.contrib.django.fixups")
    return module.DjangoFixup(app).install()


__all__ = ["fixup"]
