"""Celery's ``platforms`` names that code moving over still touches.

``platforms.C_FORCE_ROOT = True`` is harmless here: liteq's default serializer is json
and pickle is accepted only when listed, so running as root needs no permission (a
worker started as root logs a warning, nothing more).
"""

from __future__ import annotations

#: Accepted for Celery compatibility; liteq never refuses to run as root.
C_FORCE_ROOT = False

__all__ = ["C_FORCE_ROOT"]
