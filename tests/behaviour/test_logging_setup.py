"""Logging set-up of ``liteq worker`` as Celery projects configure it: the
``setup_logging`` signal (Django's ``dictConfig(settings.LOGGING)``) and
``worker_hijack_root_logger = False``."""

from __future__ import annotations

from pathlib import Path

import pytest

from liteq.testing import wait_for
from tests.conftest import Project

DICTCONFIG_TASKS = '''
import logging.config

from liteq import LiteQ
from liteq.signals import after_setup_logger, setup_logging
from liteq.utils.log import get_task_logger

app = LiteQ("logs", broker="@BROKER@")
logger = get_task_logger(__name__)


@setup_logging.connect
def config_loggers(*args, **kwargs):
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,  # as Django's own LOGGING examples
        "formatters": {"mine": {"format": "MINE %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "mine",
                              "filename": "@LOG@"}},
        "root": {"handlers": ["file"], "level": "INFO"},
    })


@after_setup_logger.connect
def never(*args, **kwargs):  # liteq leaves logging to the receiver above
    raise AssertionError("after_setup_logger sent although setup_logging had a receiver")


@app.task
def shout(word):
    logger.info("shouting %s", word)
    return word.upper()
'''

NO_HIJACK_TASKS = '''
import logging

from liteq import LiteQ
from liteq.signals import after_setup_logger

logging.basicConfig(filename="@LOG@", format="OWN %(levelname)s %(message)s")
app = LiteQ("logs", broker="@BROKER@")
app.conf.worker_hijack_root_logger = False


@after_setup_logger.connect
def mark(logger=None, loglevel=None, **kwargs):
    logger.warning("after_setup_logger: level %s", loglevel)


@app.task
def shout(word):
    logging.getLogger("proj").warning("shouting %s", word)
    return word.upper()
'''


def _module(project: Project, source: str, log: Path) -> object:
    return project.module(source.replace("@LOG@", str(log)))


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_setup_logging_receiver_owns_the_worker_log(project: Project, pool: str) -> None:
    log = project.root / "app.log"
    tasks = _module(project, DICTCONFIG_TASKS, log)
    worker = project.worker("-c", "1", pool=pool, global_args=("-A", tasks.__name__),
                            database="", wait=False)
    wait_for(lambda: log.exists() and "ready." in log.read_text(), 30)
    assert tasks.shout.delay("hi").get(timeout=20) == "HI"  # type: ignore[attr-defined]
    wait_for(lambda: "shouting hi" in log.read_text(), 10)
    lines = log.read_text().splitlines()
    assert all(line.startswith("MINE ") for line in lines), lines
    assert "shouting hi" not in worker.output()


def test_without_hijack_the_applications_handlers_stay(project: Project) -> None:
    log = project.root / "own.log"
    tasks = _module(project, NO_HIJACK_TASKS, log)
    worker = project.worker(global_args=("-A", tasks.__name__), database="", wait=False)
    wait_for(lambda: log.exists() and "ready." in log.read_text(), 30)
    assert tasks.shout.delay("hi").get(timeout=20) == "HI"  # type: ignore[attr-defined]
    wait_for(lambda: "shouting hi" in log.read_text(), 10)
    text = log.read_text()
    assert "OWN WARNING after_setup_logger: level 20" in text
    assert "OWN WARNING shouting hi" in text
    assert "shouting hi" not in worker.output()
