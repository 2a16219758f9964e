"""Silent misconfigurations made loud: settings changed after connecting, result
backends liteq has not got, print() in tasks, serializers a worker refuses."""

from __future__ import annotations

import types
import uuid
from pathlib import Path

import pytest

import liteq
from liteq.config import UnsupportedSettingWarning
from liteq.messages import Envelope, Message
from liteq.testing import wait_for
from tests.conftest import Project


def _ready(url: str) -> int:
    """How many messages wait in the default queue of the store at ``url``."""
    app = liteq.LiteQ("probe", broker=url, set_as_current=False)
    try:
        depth = app.broker.depth()
        return depth["celery"].ready if "celery" in depth else 0
    finally:
        app.close()


@pytest.mark.parametrize("how", ["attribute", "update", "old-name-item", "old-name-attr",
                                 "config_from_object", "config_from_object-namespace"])
def test_changing_broker_url_after_sending_moves_the_next_send(project: Project,
                                                                how: str) -> None:
    tasks = project.module()
    app = tasks.app
    first = tasks.add.delay(1, 1)
    assert _ready(project.broker_url) == 1
    moved = project.root / "moved.db"
    url = f"sqlite:///{moved}"
    if how == "attribute":
        app.conf.broker_url = url
    elif how == "update":
        app.conf.update(broker_url=url)
    elif how == "old-name-item":
        app.conf["BROKER_URL"] = url
    elif how == "old-name-attr":
        app.conf.BROKER_URL = url
    elif how == "config_from_object":
        app.config_from_object(types.SimpleNamespace(broker_url=url))
    else:
        app.config_from_object({"CELERY_BROKER_URL": url}, namespace="CELERY")
    second = tasks.add.delay(2, 2)
    assert app.broker.location == str(moved)
    assert _ready(url) == 1
    assert _ready(project.broker_url) == 1  # the old store got nothing more
    # A worker on the new store runs it, and the result is read from there.
    project.worker(database=str(moved))
    assert second.get(timeout=15) == 4
    assert first.state == "PENDING"


def test_changing_result_backend_after_connecting_reads_the_new_store(
        project: Project) -> None:
    tasks = project.module()
    app = tasks.app
    assert app.backend is app.broker
    results = project.root / "results.db"
    app.conf.result_backend = f"sqlite:///{results}"
    assert app.backend.location == str(results)
    # a worker whose app stores results there; the client reads them there
    other = project.module(f"""
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", backend="sqlite:///{results}")

        @app.task
        def add(x, y):
            return x + y
        """)
    project.worker("-A", other.__name__, database="")
    res = app.send_task(f"{other.__name__}.add", (3, 4))
    assert res.get(timeout=15) == 7
    app.conf.result_backend = None
    assert app.backend is app.broker


def test_changing_transport_options_reopens_the_transport(project: Project) -> None:
    tasks = project.module()
    app = tasks.app
    tasks.add.delay(1, 1)
    opened = app.broker
    app.conf.task_default_queue = "other"  # not about the transport: kept open
    assert app.broker is opened
    app.conf.broker_transport_options = {"visibility_timeout": 30}
    assert app.broker is not opened
    assert tasks.add.delay(1, 2).id


@pytest.mark.parametrize("name", ["CELERY_RESULT_BACKEND", "result_backend"])
@pytest.mark.parametrize("value", ["django-db", "django-cache"])
def test_django_result_backends_use_the_brokers_store_with_one_warning(
        project: Project, name: str, value: str) -> None:
    tasks = project.module(f"""
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@")
        app.conf.update({name}={value!r})

        @app.task
        def add(x, y):
            return x + y
        """)
    app = tasks.app
    with pytest.warns(UnsupportedSettingWarning) as caught:
        backend = app.backend
    assert len(caught) == 1
    message = str(caught[0].message)
    assert value in message and "django-celery-results" in message
    assert "\n" not in message
    assert backend is app.broker
    worker = project.worker("-A", tasks.__name__, database="")
    assert tasks.add.delay(20, 22).get(timeout=15) == 42
    assert worker.output().count(f"{value!r}") == 1, worker.output()
    assert not (project.root / value).exists()
    assert not Path(value).exists()


def test_print_in_a_task_reaches_the_log_file(project: Project) -> None:
    tasks = project.module("""
        import sys
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@")

        @app.task
        def shout(text):
            print(text)
            print(text + "-err", file=sys.stderr)
            return text
        """)
    for pool, start in (("solo", ()), ("threads", ()), ("prefork", ()),
                        ("prefork", ("--start-method", "spawn"))):
        log = project.root / f"{pool}{len(start)}.log"
        worker = project.worker("-f", str(log), "-c", "2", *start, pool=pool,
                                loglevel="info", wait=False)
        wait_for(lambda: log.exists() and "ready." in log.read_text(), 30)  # noqa: B023
        word = f"hello-{pool}-{uuid.uuid4().hex[:6]}"
        assert tasks.shout.delay(word).get(timeout=15) == word
        wait_for(lambda: f"{word}-err" in log.read_text(), 10)  # noqa: B023
        text = log.read_text()
        assert "WARNING/" in text
        lines = [line for line in text.splitlines() if word in line]
        assert any(line.endswith(f"] {word}") and "WARNING" in line for line in lines), text
        assert any(line.endswith(f"] {word}-err") for line in lines), text
        assert word not in worker.output()  # not on the terminal
        worker.stop()


def test_print_without_a_log_file_goes_to_stderr_as_a_log_line(project: Project) -> None:
    tasks = project.module("""
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", worker_redirect_stdouts_level="INFO")

        @app.task
        def shout(text):
            print(text)
            return text
        """)
    worker = project.worker("-A", tasks.__name__, database="", pool="prefork",
                            loglevel="info")
    assert tasks.shout.delay("quietly").get(timeout=15) == "quietly"
    wait_for(lambda: "quietly" in worker.output(), 10)
    line = next(line for line in worker.output().splitlines() if "quietly" in line)
    assert "INFO/" in line and line.endswith("] quietly"), line


def test_print_goes_to_stdout_when_redirect_is_off(project: Project) -> None:
    tasks = project.module("""
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", worker_redirect_stdouts=False)

        @app.task
        def shout(text):
            print(text, flush=True)
            return text
        """)
    log = project.root / "off.log"
    worker = project.worker("-A", tasks.__name__, "-f", str(log), database="", wait=False)
    wait_for(lambda: log.exists() and "ready." in log.read_text(), 30)
    assert tasks.shout.delay("plain").get(timeout=15) == "plain"
    wait_for(lambda: "plain" in worker.output(), 10)
    assert "plain\n" in worker.output()
    assert not [line for line in log.read_text().splitlines() if line.endswith("] plain")]


def test_a_refused_message_names_its_serializer(project: Project) -> None:
    tasks = project.module()
    task_id = str(uuid.uuid4())
    header = Message(id=task_id, task=f"{tasks.__name__}.add").encode().header
    import pickle

    tasks.app.broker.publish([Envelope(task_id, f"{tasks.__name__}.add", "celery", 0, None,
                                       None, False, "application/x-python-serialize",
                                       header, pickle.dumps([[1, 2], {}]))])
    project.worker()
    res = tasks.app.AsyncResult(task_id)
    with pytest.raises(liteq.ContentDisallowed) as caught:
        res.get(timeout=15)
    message = str(caught.value)
    assert "'pickle' (application/x-python-serialize)" in message, message
    assert "not in accept_content ['json']" in message, message


def test_a_refused_result_names_its_serializer(project: Project) -> None:
    worker_side = project.module("""
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", accept_content=["json", "pickle"],
                    result_serializer="pickle")

        @app.task
        def add(x, y):
            return x + y
        """)
    project.worker("-A", worker_side.__name__, database="")
    client = liteq.LiteQ("client", broker=project.broker_url, set_as_current=False)
    res = client.send_task(f"{worker_side.__name__}.add", (1, 2))
    wait_for(lambda: worker_side.app.AsyncResult(res.id).ready(), 15)
    with pytest.raises(liteq.ContentDisallowed) as caught:
        res.get(timeout=5)
    message = str(caught.value)
    assert "'pickle' (application/x-python-serialize)" in message, message
    assert "result_accept_content" in message or "accept_content" in message
    client.close()


@pytest.mark.sqlite_only("URL checks; nothing is opened")
@pytest.mark.parametrize("value", [
    "amqp://guest@localhost//", "cache+memcached://127.0.0.1:11211/", "mongodb://localhost",
    "db+postgresql://user@localhost/results", "redis", "disabled", "elasticsearch://x:9200",
])
def test_result_backends_liteq_has_not_are_one_clear_error(project: Project,
                                                           value: str) -> None:
    done = project.run(f"""
        import liteq
        app = liteq.LiteQ("x", broker="sqlite:///tasks.db", backend={value!r})
        try:
            app.backend
        except liteq.ImproperlyConfigured as exc:
            print(exc)
        """)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "\n" not in message and "result_backend" in message, message
    assert value.split(":")[0] in message
    assert sorted(p.name for p in project.root.iterdir()) == [], list(project.root.iterdir())


@pytest.mark.sqlite_only("db+sqlite maps to a SQLite file")
def test_a_sqlalchemy_sqlite_result_backend_is_that_file(project: Project) -> None:
    app = liteq.LiteQ("x", broker=f"sqlite:///{project.db}",
                      backend=f"db+sqlite:///{project.root / 'results.sqlite'}",
                      set_as_current=False)
    assert app.backend.location == str(project.root / "results.sqlite")
    assert app.backend is not app.broker
    app.close()


@pytest.mark.sqlite_only("URL checks; nothing is opened")
@pytest.mark.parametrize("url", ["amqp://guest@localhost//", "pyamqp://", "amqp", "amqp:",
                                 "librabbitmq://", "sqs://"])
def test_broker_urls_of_other_brokers_name_what_liteq_needs(project: Project,
                                                            url: str) -> None:
    done = project.run(f"""
        import liteq
        try:
            liteq.LiteQ("x", broker={url!r}).broker
        except liteq.ImproperlyConfigured as exc:
            print(exc)
        """)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "sqlite:///" in message and "redis://" in message, message
    assert list(project.root.iterdir()) == []
