"""Celery's ``celery.contrib.testing`` import paths: ``liteq.contrib.testing.worker``
(``start_worker``) and ``liteq.contrib.testing.tasks`` (``ping``)."""

from __future__ import annotations
