"""Celery's fixtures for pytest, where Celery users load them from
(``pytest_plugins = ("celery.contrib.pytest",)``).

liteq registers them by itself once installed (the ``liteq.testing`` plugin); naming this
module in ``pytest_plugins`` is harmless. See :mod:`liteq.testing`.
"""

from __future__ import annotations

from liteq.testing import (
    celery_app,
    celery_class_tasks,
    celery_config,
    celery_enable_logging,
    celery_includes,
    celery_parameters,
    celery_session_app,
    celery_session_worker,
    celery_worker,
    celery_worker_parameters,
    celery_worker_pool,
    depends_on_current_app,
    use_celery_app_trap,
)

__all__ = [
    "celery_app",
    "celery_class_tasks",
    "celery_config",
    "celery_enable_logging",
    "celery_includes",
    "celery_parameters",
    "celery_session_app",
    "celery_session_worker",
    "celery_worker",
    "celery_worker_parameters",
    "celery_worker_pool",
    "depends_on_current_app",
    "use_celery_app_trap",
]
