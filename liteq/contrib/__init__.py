"""Glue for frameworks and Celery's ``celery.contrib`` import paths."""

from __future__ import annotations
