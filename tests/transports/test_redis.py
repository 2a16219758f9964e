"""What only the Redis transport does: key prefixes, retried calls applied once,
credentials, TLS, lost connections, restarts and forks (the shared contract:
test_contract.py)."""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

import liteq
import liteq.transports.redis as redis_transport
from liteq.transports.base import QueueDepth, ResultRecord, Settlement
from liteq.transports.redis import RedisTransport, _version
from liteq.transports.redis.connection import redacted
from tests.redis_fixtures import RedisServer, free_port
from tests.transports.support import envelope, forged, ids

pytestmark = pytest.mark.redis


@pytest.fixture
def transport(redis_url: str):
    t = RedisTransport(redis_url, {})
    t.open()
    yield t
    t.close()


def test_a_key_prefix_keeps_apps_apart(redis_url: str) -> None:
    one = RedisTransport(redis_url, {"global_keyprefix": "app1:"})
    two = RedisTransport(redis_url, {"global_keyprefix": "app2:"})
    one.publish([envelope("a")])
    two.publish([envelope("b")])
    assert ids(one.claim(["celery"], 5, "w", 30)) == ["a"]
    assert ids(two.claim(["celery"], 5, "w", 30)) == ["b"]
    names = {name.decode() for name in one._conn.client.keys("*")}
    assert names and all(name.startswith(("app1:", "app2:")) for name in names)
    app = liteq.LiteQ("x", broker=redis_url,
                      broker_transport_options={"global_keyprefix": "myapp:"})
    assert app.broker.keys.prefix == "myapp:"  # type: ignore[attr-defined]


def test_a_retried_publish_is_applied_once(transport: RedisTransport) -> None:
    """A publish whose reply was lost is retried with the same publish id."""
    client = transport._conn.client
    now = time.time()
    for _ in range(2):
        transport._scripts.publish(client, [envelope("x"), envelope("y")], now, "pub-1", 60_000)
    assert transport.depth()["celery"] == QueueDepth(ready=2)


def test_a_retried_claim_returns_the_same_messages(transport: RedisTransport) -> None:
    """A claim whose reply was lost, retried, must not strand leased messages."""
    transport.publish([envelope(f"m{i}") for i in range(5)])
    client = transport._conn.client
    args = (["celery"], 2, "w", 30.0, None, time.time(), "claim-1", 100)
    first = transport._scripts.claim(client, *args)
    again = transport._scripts.claim(client, *args)
    assert ids(first) == ids(again) == ["m0", "m1"]
    assert [d.token for d in first] == [d.token for d in again]
    assert all(d.deliveries == 1 for d in again)
    assert transport.settle([Settlement(d, ResultRecord(d.task_id, "SUCCESS"))
                             for d in again]) == [True, True]
    assert transport.depth()["celery"] == QueueDepth(ready=3)


def test_a_retried_settle_is_still_accepted_and_applied_once(transport: RedisTransport) -> None:
    """Redis died after applying a settlement but before replying: the retry must not
    report the lease as lost, nor apply anything twice."""
    transport.publish([envelope("x")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    client = transport._conn.client
    done = [Settlement(delivery, ResultRecord("x", "SUCCESS"), (envelope("next"),))]
    settle = transport._scripts.settle
    assert settle(client, done, time.time(), 60_000, False) == [True]
    assert settle(client, done, time.time(), 60_000, True) == [True]  # the retry
    assert settle(client, done, time.time(), 60_000, False) == [False]  # not a retry
    stale = [Settlement(replace(delivery, token=forged(delivery.token)))]
    assert settle(client, stale, time.time(), 60_000, True) == [False]
    assert transport.depth()["celery"] == QueueDepth(ready=1)  # "next", once


def test_a_unix_socket_url(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "redis", extra=["--unixsocket", str(sock),
                                                    "--unixsocketperm", "700"]).start()
    try:
        transport = RedisTransport(f"unix://{sock}?db=3", {})
        transport.publish([envelope("a")])
        assert transport.location == f"unix://{sock}?db=3"
        assert ids(transport.claim(["celery"], 5, "w", 30)) == ["a"]
    finally:
        server.stop()


def test_messages_name_the_url_without_its_password() -> None:
    assert redacted("redis://:pw@h:1/0") == "redis://h:1/0"
    assert redacted("rediss://user:pw@h/3?ssl_cert_reqs=none") == \
        "rediss://user@h/3?ssl_cert_reqs=none"
    assert redacted("unix:///run/redis.sock?db=2&password=pw") == "unix:///run/redis.sock?db=2"
    assert RedisTransport("redis://:pw@h:1/0", {}).location == "redis://h:1/0"
    assert _version("7.0.15") >= (6, 2) > _version("6.0.9")


def test_results_expire_by_themselves(transport: RedisTransport) -> None:
    transport.store_results([ResultRecord("r", "SUCCESS", expires_in=100)])
    ttl = transport._conn.client.pttl(transport.keys.result("r"))
    assert 99_000 < ttl <= 100_000
    assert transport.expire_results() == 0


def test_running_without_aof_is_warned_about_once_at_start(redis_url: str, caplog,
                                                          monkeypatch) -> None:
    monkeypatch.setattr(redis_transport, "_WARNED", set())
    with caplog.at_level(logging.WARNING, "liteq.transports.redis"):
        RedisTransport(redis_url, {}).publish([envelope("a")])  # a producer: no warning
        assert not caplog.records
        RedisTransport(redis_url, {}).open()  # a worker starting
        RedisTransport(redis_url, {}).open()
    warnings = [r for r in caplog.records if "append-only" in r.getMessage()]
    assert len(warnings) == 1 and "appendonly yes" in warnings[0].getMessage()


@pytest.fixture
def protected(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", password="s3cret-pw").start()
    yield server
    server.stop()


def test_passwords_in_the_url(protected: RedisServer) -> None:
    good = RedisTransport(protected.url(0), {})
    good.publish([envelope("a")])
    assert good.depth()["celery"].ready == 1
    for url, expected in [(protected.url(0, password="wrong-pw"), "refused liteq's credentials"),
                          (f"redis://127.0.0.1:{protected.port}/0", "needs a password")]:
        started = time.monotonic()
        with pytest.raises(liteq.OperationalError) as caught:
            RedisTransport(url, {}).open()
        message = str(caught.value)
        assert expected in message and f"127.0.0.1:{protected.port}/0" in message
        assert "wrong-pw" not in message and "\n" not in message
        assert time.monotonic() - started < 2  # not retried


def test_an_unreachable_redis_is_retried_then_named(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    transport = RedisTransport(f"redis://:hidden@127.0.0.1:{port}/0",
                               {"retry_policy": {"timeout": 1.0}})
    started = time.monotonic()
    with pytest.raises(liteq.OperationalError) as caught:
        transport.publish([envelope("a")])
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert 0.5 < elapsed < 5
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in message
    assert "gave up after" in message and "hidden" not in message
    no_retry = liteq.LiteQ("x", broker=f"redis://127.0.0.1:{port}/0",
                           broker_connection_retry=False)
    started = time.monotonic()
    with pytest.raises(liteq.OperationalError, match="1 attempt in"):
        no_retry.broker.open()
    assert time.monotonic() - started < 1


def test_a_restarted_redis_is_reconnected_without_losing_data(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        transport = RedisTransport(server.url(0), {})
        transport.publish([envelope("before")])
        listener = transport.listen(["celery"])
        listener.drain()
        server.kill()
        threading.Timer(0.5, server.start).start()
        transport.publish([envelope("during")])  # waits for the restart, then succeeds
        assert select.select([listener.fileno()], [], [], 10)[0]  # the listener came back
        listener.drain()
        transport.publish([envelope("after")])
        assert select.select([listener.fileno()], [], [], 5)[0]
        listener.close()
        assert ids(transport.claim(["celery"], 5, "w", 30)) == ["before", "during", "after"]
    finally:
        server.stop()


def test_a_forked_child_uses_its_own_connections(transport: RedisTransport) -> None:
    transport.publish([envelope("parent-1")])
    parent_client = transport._conn.client
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            transport.after_fork()
            assert transport._conn.client is not parent_client
            transport.publish([envelope("child")])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert transport._conn.client is parent_client
    transport.publish([envelope("parent-2")])  # the parent's sockets still work
    assert ids(transport.claim(["celery"], 5, "w", 30)) == ["parent-1", "child", "parent-2"]


@pytest.fixture
def tls_server(tmp_path: Path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    directory = tmp_path / "tls"
    directory.mkdir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    made = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate: {made.stderr.decode()[-200:]}")
    port = free_port()
    server = RedisServer(directory, password="tls-pw", extra=[
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no"])
    server.port = port
    server.ready = lambda: _tls_ready(port)  # type: ignore[method-assign]
    try:
        server.start(timeout=10)
    except RuntimeError as exc:
        pytest.skip(f"this redis-server has no TLS: {exc}")
    yield server, cert
    server.stop()


def _tls_ready(port: int) -> bool:
    try:
        RedisTransport(f"rediss://:tls-pw@127.0.0.1:{port}/0?ssl_cert_reqs=none",
                       {"retry_policy": {"timeout": 0}})._conn.client.ping()
        return True
    except Exception:
        return False


def test_rediss_with_tls_and_a_password(tls_server) -> None:  # type: ignore[no-untyped-def]
    server, cert = tls_server
    url = f"rediss://:tls-pw@127.0.0.1:{server.port}/0"
    trusting = liteq.LiteQ("x", broker=url, broker_use_ssl={"ssl_ca_certs": str(cert),
                                                            "ssl_cert_reqs": "CERT_REQUIRED"})
    trusting.broker.publish([envelope("a")])
    unverified = RedisTransport(f"{url}?ssl_cert_reqs=CERT_NONE", {})
    assert ids(unverified.claim(["celery"], 5, "w", 30)) == ["a"]
    distrusting = RedisTransport(url, {})
    started = time.monotonic()
    with pytest.raises(liteq.OperationalError, match="TLS certificate not trusted"):
        distrusting.open()
    assert time.monotonic() - started < 2  # not retried
