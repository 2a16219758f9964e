"""Utilities Celery users import from ``celery.utils``: ``liteq.utils.log``."""

from __future__ import annotations
