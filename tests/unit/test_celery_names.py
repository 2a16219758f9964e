"""Celery's names in liteq, piece by piece: ``current_task``/``current_app`` proxies,
``liteq.utils.log``, ``solar``, signal senders by name, ``WorkerThread`` start-up errors."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

import liteq
from liteq import LiteQ, _state, signals
from liteq.schedules import solar
from liteq.utils.log import (
    LoggingProxy,
    TaskFormatter,
    get_task_logger,
    mlevel,
    setup_task_loggers,
    task_logger,
)
from liteq.worker.background import WorkerThread


@pytest.fixture
def app(tmp_path) -> LiteQ:
    return LiteQ("proj", broker=str(tmp_path / "t.db"), task_always_eager=True)


def test_current_task_proxy_outside_and_inside_tasks(app: LiteQ) -> None:
    from liteq import current_task

    assert not current_task and current_task == None  # noqa: E711 - the proxy's __eq__
    assert _state.get_current_task() is None and _state.get_current_worker_task() is None

    @app.task(bind=True)
    def outer(self):
        return self.request.id, inner(), _state.get_current_worker_task() is self

    @app.task
    def inner():
        # called directly from outer: it is current, but the worker task is still outer
        return (current_task.name, current_task.request.called_directly,
                _state.get_current_worker_task().name)

    result = outer.delay()
    task_id, seen_inner, outer_is_worker_task = result.get()
    assert task_id == result.id and outer_is_worker_task
    assert seen_inner == (inner.name, True, outer.name)
    assert not current_task


def test_current_app_proxy_and_celery_state_names(app: LiteQ) -> None:
    assert liteq.current_app.main == "proj"
    assert liteq.current_app._get_current_object() is app
    assert liteq.current_app == app and _state.get_current_app() is app
    assert _state.current_app() is app  # liteq's own spelling keeps working
    liteq.current_app.conf.task_default_queue = "via-proxy"
    assert app.conf.task_default_queue == "via-proxy"
    other = LiteQ("other", broker=str(app.broker_url), set_as_current=False)
    with _state.current_app_as(other):
        assert liteq.current_app.main == "other"
    assert liteq.current_app.main == "proj"


def test_task_logger_hierarchy_and_reserved_names() -> None:
    logger = get_task_logger("proj.tasks")
    assert logger is logging.getLogger("proj.tasks")
    assert logger.parent is task_logger and task_logger.name == "liteq.task"
    assert get_task_logger("proj.tasks") is logger  # stable
    for reserved in ("liteq", "liteq.task"):
        with pytest.raises(RuntimeError, match="reserved"):
            get_task_logger(reserved)
    assert mlevel("info") == logging.INFO and mlevel(logging.ERROR) == logging.ERROR


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """A root handler in the worker's format, as ``liteq worker`` sets up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("W %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_task_records_in_the_task_format(app: LiteQ, root_stream: io.StringIO) -> None:
    setup_task_loggers("T %(levelname)s %(task_name)s[%(task_id)s]: %(message)s")
    setup_task_loggers("T %(levelname)s %(task_name)s[%(task_id)s]: %(message)s")  # again
    logger = get_task_logger("proj.tasks")

    @app.task
    def add(x, y):
        logger.info("Adding %s + %s", x, y)
        logging.getLogger("proj.other").warning("plain logger")
        return x + y

    result = add.delay(2, 3)
    logger.info("outside")
    lines = root_stream.getvalue().splitlines()
    assert lines == [f"T INFO {add.name}[{result.id}]: Adding 2 + 3",
                     "W WARNING plain logger", "T INFO ???[???]: outside"]


def test_task_formatter_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
    assert TaskFormatter("%(task_name)s[%(task_id)s] %(message)s").format(record) == \
        "???[???] hi"


def test_logging_proxy_writes_lines_to_a_logger(caplog: pytest.LogCaptureFixture) -> None:
    proxy = LoggingProxy(logging.getLogger("proj.stdout"), "warning")
    with caplog.at_level(logging.WARNING, logger="proj.stdout"):
        print("hello from print", file=proxy)
        proxy.writelines(["one\n", "  \n"])
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == \
        [(logging.WARNING, "hello from print"), (logging.WARNING, "one")]
    assert not proxy.isatty()


def test_solar_is_a_clear_error_naming_crontab() -> None:
    assert liteq.solar is solar
    with pytest.raises(liteq.ImproperlyConfigured) as info:
        solar("sunset", -37.81753, 144.96715)
    message = str(info.value)
    assert "solar('sunset', -37.81753, 144.96715)" in message
    assert "crontab(hour=18, minute=30)" in message and "ephem" in message
    with pytest.raises(liteq.ImproperlyConfigured, match="'sundown' is not a solar event"):
        solar("sundown", 0, 0)


def test_signal_senders_match_names_by_value() -> None:
    seen = []

    def receiver(sender=None, **kwargs):
        seen.append(sender)

    signals.celeryd_init.connect(receiver, sender="w1@example.com")
    try:
        signals.celeryd_init.send(sender="".join(["w1@", "example.com"]))  # not the same object
        signals.celeryd_init.send(sender="w2@example.com")
    finally:
        signals.celeryd_init.disconnect(receiver)
    assert seen == ["w1@example.com"]


def test_worker_thread_start_errors_reach_the_caller(tmp_path) -> None:
    app = LiteQ("proj", broker=str(tmp_path / "t.db"),
                beat_schedule={"bad": {"task": "x", "schedule": "often"}})
    worker = WorkerThread(app, pool="solo", beat=True)
    with pytest.raises(Exception, match="often"):
        worker.start()
    assert not worker.is_alive()
