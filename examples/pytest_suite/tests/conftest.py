"""The fixtures come from liteq's pytest plugin (installed with liteq): ``liteq_app``,
``liteq_worker`` and Celery's ``celery_app``, ``celery_worker``, ``celery_config``..."""

import pytest


@pytest.fixture(scope="session")
def celery_config():
    # Celery's suites point this at a test broker; here each test gets a fresh file.
    return {"task_track_started": True}
