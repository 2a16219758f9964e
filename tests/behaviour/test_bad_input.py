"""Bad input gets a clear error and loses nothing; bad messages never stop a worker."""

from __future__ import annotations

import json
import pickle
import sqlite3
import uuid
from decimal import Decimal

import pytest

import liteq
from liteq.messages import Envelope, Message
from tests.conftest import Project


class Unserializable:
    def __repr__(self) -> str:
        return "<Unserializable>"


def test_unserializable_argument_fails_at_delay_naming_it(project: Project) -> None:
    tasks = project.module()
    with pytest.raises(liteq.EncodeError, match=r"argument 1 \(Unserializable") as caught:
        tasks.add.delay(1, Unserializable())
    assert "add" in str(caught.value)
    with pytest.raises(liteq.EncodeError, match=r"keyword argument 'y'"):
        tasks.add.delay(1, y=Unserializable())
    # nothing was stored
    assert tasks.app.broker.depth() == {}


def test_wrong_arguments_fail_at_delay(project: Project) -> None:
    tasks = project.module()
    with pytest.raises(TypeError, match="missing a required argument"):
        tasks.add.delay(1)
    with pytest.raises(TypeError, match="args must be a list or a tuple"):
        tasks.add.apply_async("12")
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        tasks.add.apply_async((1, 2), [("y", 2)])
    with pytest.raises(TypeError, match=r"unexpected option.*countdwn"):
        tasks.add.apply_async((1, 2), countdwn=5)
    assert tasks.app.broker.depth() == {}


def _publish_raw(app: liteq.LiteQ, task_id: str, name: str, content_type: str,
                 header: bytes, body: bytes) -> None:
    """Store a message as a foreign or broken producer would, bypassing encoding."""
    app.broker.publish([Envelope(task_id, name, "celery", 0, None, None, False, content_type,
                                 header, body)])


def test_bad_messages_become_failures_and_the_worker_goes_on(project: Project) -> None:
    tasks = project.module()
    good_header = Message(id="x", task="x").encode().header
    cases = {
        "garbage-body": ("application/json", good_header, b"{not json"),
        "bad-shape": ("application/json", good_header, b'{"args": 1}'),
        "bad-header": ("application/json", b"\xff\xfe", b"[[], {}]"),
        "newer-protocol": ("application/json", json.dumps({"v": 99}).encode(), b"[[], {}]"),
        "pickle": ("application/x-python-serialize", good_header,
                   pickle.dumps([[1, 2], {}])),
    }
    ids = {}
    for case, (content_type, header, body) in cases.items():
        ids[case] = str(uuid.uuid4())
        _publish_raw(tasks.app, ids[case], f"{tasks.__name__}.add", content_type, header,
                     body)
    unknown = tasks.app.send_task("no.such.task", (1,))
    project.worker()
    after = tasks.add.delay(20, 22)
    assert after.get(timeout=15) == 42  # the worker went on
    expected = {
        "garbage-body": "cannot decode",
        "bad-shape": "malformed message body",
        "bad-header": "malformed message header",
        "newer-protocol": "protocol version 99",
        "pickle": "not in accept_content",
    }
    for case, task_id in ids.items():
        res = tasks.app.AsyncResult(task_id)
        error = res.get(timeout=10, propagate=False)
        assert res.state == "FAILURE", case
        assert expected[case] in str(error), (case, error)
    with pytest.raises(liteq.NotRegistered, match=r"no\.such\.task"):
        unknown.get(timeout=10)


def test_pickle_is_accepted_only_when_listed(project: Project) -> None:
    tasks = project.module(
        """
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", accept_content=["json", "pickle"],
                    task_serializer="pickle", result_serializer="pickle")

        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y

        @app.task
        def norm(point):
            return Point(point.x * 2, point.y * 2)
        """
    )
    project.worker("-A", tasks.__name__, database="")
    res = tasks.norm.delay(tasks.Point(1, 2))
    value = res.get(timeout=10)
    assert (value.x, value.y) == (2, 4)


def test_rich_json_arguments_round_trip_through_a_worker(project: Project) -> None:
    tasks = project.module(
        """
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@")

        @app.task
        def echo(*args, **kwargs):
            return [args, kwargs]
        """
    )
    project.worker()
    from datetime import date, datetime, timezone
    from uuid import UUID

    args = (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), date(2026, 1, 2),
            UUID(int=7), Decimal("1.10"), b"\x00\xff", (1, 2), {1: "one"})
    value = tasks.echo.delay(*args, when=datetime(2026, 1, 1)).get(timeout=10)
    assert tuple(value[0]) == args
    assert value[1] == {"when": datetime(2026, 1, 1)}


@pytest.mark.sqlite_only("URL checks; no broker is used")
def test_bad_broker_urls_give_one_clear_error(project: Project) -> None:
    with pytest.raises(liteq.ImproperlyConfigured, match="no amqp:// transport"):
        _ = liteq.LiteQ("x", broker="amqp://guest@localhost//").broker
    with pytest.raises(liteq.ImproperlyConfigured, match="unknown broker URL"):
        _ = liteq.LiteQ("x", broker="foo://bar").broker
    with pytest.raises(liteq.ImproperlyConfigured, match="in-memory"):
        _ = liteq.LiteQ("x", broker="sqlite:///:memory:").broker
    with pytest.raises(liteq.ImproperlyConfigured, match="has no host"):
        _ = liteq.LiteQ("x", broker="sqlite://host/tasks.db").broker
    with pytest.raises(liteq.StorageError, match="does not exist"):
        liteq.LiteQ("x", broker=str(project.root / "missing" / "tasks.db")).broker.open()


@pytest.mark.sqlite_only("SQLite files that are not liteq's")
def test_not_a_database_foreign_schema_and_newer_schema(project: Project) -> None:
    text = project.root / "notes.db"
    text.write_text("hello, this is not sqlite " * 100)
    with pytest.raises(liteq.StorageError, match="not a SQLite database"):
        liteq.LiteQ("x", broker=str(text)).broker.open()
    foreign = project.root / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE things (x)")
        conn.execute("PRAGMA user_version = 7")
    with pytest.raises(liteq.StorageError, match="another program's schema"):
        liteq.LiteQ("x", broker=str(foreign)).broker.open()
    impostor = project.root / "impostor.db"
    with sqlite3.connect(impostor) as conn:
        conn.execute("CREATE TABLE liteq_messages (x)")
    with pytest.raises(liteq.StorageError, match="not made by liteq"):
        liteq.LiteQ("x", broker=str(impostor)).broker.open()
    newer = project.root / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {(0x4C51 << 16) + 99}")
    with pytest.raises(liteq.StorageError, match="newer liteq"):
        liteq.LiteQ("x", broker=str(newer)).broker.open()
    # the files are untouched
    assert "hello" in text.read_text()


@pytest.mark.sqlite_only("the application's own tables in the SQLite file")
def test_app_tables_in_the_same_file_are_fine(project: Project) -> None:
    with sqlite3.connect(project.db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    tasks = project.module()
    project.worker()
    assert tasks.add.delay(1, 1).get(timeout=10) == 2


@pytest.mark.sqlite_only("a SQLite file that is not a database")
def test_worker_refuses_bad_files_with_one_line(project: Project) -> None:
    bad = project.root / "bad.db"
    bad.write_bytes(b"\x00garbage" * 200)
    done = project.liteq("worker", str(bad), "-P", "solo")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "not a SQLite database" in lines[0]


@pytest.mark.sqlite_only("SQLite's WAL on network filesystems")
def test_network_filesystem_is_refused(project: Project) -> None:
    mountinfo = project.root / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"40 22 0:35 / {project.root} rw,relatime shared:9 - nfs4 server:/export rw\n"
    )
    app = liteq.LiteQ("x", broker=str(project.db))
    import os

    os.environ["LITEQ_MOUNTINFO"] = str(mountinfo)
    try:
        with pytest.raises(liteq.NetworkFilesystemError, match="network filesystem"):
            app.broker.open()
    finally:
        del os.environ["LITEQ_MOUNTINFO"]
    assert not project.db.exists()


@pytest.mark.sqlite_only("SQLite's WAL on network filesystems")
@pytest.mark.parametrize("link", ["file", "directory"])
def test_network_filesystem_behind_a_symlink_is_refused(project: Project, link: str) -> None:
    import os

    share = project.root / "share"
    share.mkdir()
    local = project.root / "local"
    local.mkdir()
    mountinfo = project.root / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"40 22 0:35 / {share} rw,relatime shared:9 - nfs4 server:/export rw\n"
    )
    if link == "file":  # local/q.db -> share/q.db (dangling until SQLite creates it)
        path = local / "q.db"
        path.symlink_to(share / "q.db")
    else:  # local/data -> share; local/data/q.db
        (local / "data").symlink_to(share, target_is_directory=True)
        path = local / "data" / "q.db"
    app = liteq.LiteQ("x", broker=str(path))
    os.environ["LITEQ_MOUNTINFO"] = str(mountinfo)
    try:
        with pytest.raises(liteq.NetworkFilesystemError, match="nfs4"):
            app.broker.open()
    finally:
        del os.environ["LITEQ_MOUNTINFO"]
    assert not (share / "q.db").exists()
