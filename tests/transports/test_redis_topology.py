"""Redis in production: ``sentinel://`` URLs as Celery and kombu write them, and Redis
Cluster with every key of an app in one slot. (The whole transport contract runs on a
Sentinel set and on a cluster too: test_contract.py; a failover during a run:
tests/reliability/test_redis_failover.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import liteq
from liteq.doctor import diagnose
from liteq.exceptions import ImproperlyConfigured
from liteq.transports.base import ResultRecord, Settlement
from liteq.transports.redis import RedisTransport
from liteq.transports.redis.connection import redacted
from liteq.transports.redis.keys import hash_tagged
from liteq.transports.redis.topology import parse
from tests.conftest import Project
from tests.redis_fixtures import ClusterSet, SentinelSet, fresh_prefix, fresh_sentinel_database
from tests.transports.support import envelope, ids


@pytest.fixture
def opened() -> Iterator[list[RedisTransport]]:
    """Transports a test makes, closed after it."""
    transports: list[RedisTransport] = []
    yield transports
    for transport in transports:
        transport.close()


# -- URLs (no server) ----------------------------------------------------------------

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,5})?", fullmatch=True)
ports = st.integers(1, 65535)
secrets = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1,
                  max_size=12)


@given(nodes=st.lists(st.tuples(hosts, ports), min_size=1, max_size=5),
       password=st.none() | secrets, db=st.integers(0, 15))
def test_a_sentinel_url_names_every_sentinel(nodes: list[tuple[str, int]],
                                             password: str | None, db: int) -> None:
    auth = f":{password}@" if password else ""
    first, *others = nodes
    url = ";".join([f"sentinel://{auth}{first[0]}:{first[1]}/{db}",
                    *(f"sentinel://{host}:{port}" for host, port in others)])
    servers = parse(url, "x")
    assert (servers.kind, servers.nodes, servers.password, servers.db) == \
        ("sentinel", nodes, password, db)
    if password:
        assert f":{password}@" not in redacted(url)


def test_sentinel_and_cluster_urls_as_written() -> None:
    servers = parse("sentinel://localhost:26379;sentinel://localhost:26380;"
                    "sentinel://localhost", "x")
    assert servers.nodes == [("localhost", 26379), ("localhost", 26380),
                             ("localhost", 26379)]
    assert servers.db == 0 and servers.password is None
    cluster = parse("redis+cluster://app:pw@10.0.0.1:7000;redis+cluster://10.0.0.2:7001", "x")
    assert (cluster.kind, cluster.nodes, cluster.username, cluster.password) == \
        ("cluster", [("10.0.0.1", 7000), ("10.0.0.2", 7001)], "app", "pw")
    assert parse("rediss+cluster://h:7000", "x").tls
    assert redacted("sentinel://:pw@a:1/0;sentinel://b:2") == "sentinel://a:1/0;sentinel://b:2"


@pytest.mark.parametrize(("url", "error"), [
    ("sentinel://a:1;redis://b:2", "every part joined by ';' must start with sentinel://"),
    ("sentinel://a:x", "port is not a number"),
    ("sentinel://:26379", "names no host"),
    ("sentinel://a:1/zero", "the database must be a number"),
    ("redis+cluster://a:7000/3", "a Redis Cluster has only database 0"),
])
def test_a_bad_url_is_one_clear_error(url: str, error: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=error):
        RedisTransport(url, {"master_name": "m"})


def test_sentinel_needs_a_master_name() -> None:
    app = liteq.LiteQ("x", broker="sentinel://127.0.0.1:1;sentinel://127.0.0.1:2")
    with pytest.raises(ImproperlyConfigured) as caught:
        app.broker.depth()
    message = str(caught.value)
    assert 'broker_transport_options={"master_name": "mymaster"}' in message
    assert "result_backend_transport_options" in message


def test_bad_sentinel_options_are_named() -> None:
    with pytest.raises(ImproperlyConfigured, match="wait_for_replicas must be"):
        RedisTransport("sentinel://h:1", {"master_name": "m", "wait_for_replicas": "1"})
    transport = RedisTransport("sentinel://h:1", {"master_name": "m", "sentinel_kwargs": 3})
    with pytest.raises(ImproperlyConfigured, match="sentinel_kwargs must be a dict"):
        transport.depth()


def test_hash_tags() -> None:
    assert hash_tagged("liteq:") == "{liteq}:"
    assert hash_tagged("myapp:") == "{myapp}:"
    assert hash_tagged("{shop}:jobs:") == "{shop}:jobs:"
    assert hash_tagged("") == "{liteq}:"


# -- Sentinel ------------------------------------------------------------------------

@pytest.mark.redis
def test_celery_sentinel_settings_work_as_written(sentinel_set: SentinelSet) -> None:
    """Celery's documented Sentinel settings, upper-case names and all, for the broker
    and for a result backend on another database of the same master."""
    broker, results = (fresh_sentinel_database(sentinel_set) for _ in range(2))
    options = sentinel_set.options()

    class Config:
        CELERY_BROKER_URL = broker
        CELERY_BROKER_TRANSPORT_OPTIONS = options
        CELERY_RESULT_BACKEND = results
        CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"master_name": options["master_name"],
                                                   "sentinel_kwargs":
                                                       options["sentinel_kwargs"]}

    app = liteq.LiteQ("sentinel-app")
    app.config_from_object(Config, namespace="CELERY")
    try:
        _check_celery_sentinel_app(app, sentinel_set)
    finally:
        app.close()


def _check_celery_sentinel_app(app: liteq.LiteQ, sentinel_set: SentinelSet) -> None:
    assert app.broker is not app.backend
    app.broker.publish([envelope("a")])
    assert ids(app.broker.claim(["celery"], 5, "w", 30)) == ["a"]
    app.backend.store_result(ResultRecord("a", "SUCCESS", payload=b"5"))
    assert app.backend.get_result("a") is not None
    assert app.broker.get_result("a") is None  # another database
    assert str(sentinel_set.password) not in app.broker.location


@pytest.mark.redis
def test_a_wrong_sentinel_password_is_named(sentinel_set: SentinelSet,
                                            opened: list[RedisTransport]) -> None:
    transport = RedisTransport(sentinel_set.url(0), {
        "master_name": SentinelSet.MASTER, "sentinel_kwargs": {"password": "WRONG"},
        "retry_policy": {"timeout": 0.5}})
    opened.append(transport)
    with pytest.raises(liteq.OperationalError) as caught:
        transport.depth()
    assert "mymaster" in str(caught.value)
    assert "WRONG" not in str(caught.value)


@pytest.mark.redis
def test_an_unknown_master_name_is_named(sentinel_set: SentinelSet,
                                        opened: list[RedisTransport]) -> None:
    transport = RedisTransport(sentinel_set.url(0), {
        **sentinel_set.options(), "master_name": "nosuchmaster",
        "retry_policy": {"timeout": 0.5}})
    opened.append(transport)
    with pytest.raises(liteq.OperationalError, match="nosuchmaster"):
        transport.depth()


# -- Cluster -------------------------------------------------------------------------


@pytest.mark.redis
def test_every_key_of_an_app_is_in_one_slot(cluster_set: ClusterSet,
                                            opened: list[RedisTransport]) -> None:
    prefix = fresh_prefix()
    transport = RedisTransport(cluster_set.url(), {"global_keyprefix": prefix})
    opened.append(transport)
    assert transport.keys.prefix == hash_tagged(prefix)
    transport.publish([envelope("a"), envelope("b", queue="q2"),
                       envelope("c", eta=time.time() + 60)])
    claimed = transport.claim(["celery", "q2"], 5, "w", 30)
    transport.settle([Settlement(claimed[0], ResultRecord("a", "SUCCESS", payload=b"1"))])
    transport.heartbeat("w", 30, {})
    client = transport._conn.client
    names = [name for node in client.get_primaries()
             for name in client.keys(f"{transport.keys.prefix}*", target_nodes=node)]
    assert len(names) > 5
    assert {client.keyslot(name) for name in names} == {client.keyslot(transport.keys.seq)}


@pytest.mark.redis
def test_a_worker_runs_tasks_on_a_cluster(tmp_path: Path, cluster_set: ClusterSet) -> None:
    project = Project(tmp_path, "redis", cluster_set.url())
    try:
        tasks = project.module(f'''
            from liteq import LiteQ
            app = LiteQ(__name__, broker="{cluster_set.url()}",
                        broker_transport_options={{"global_keyprefix": "{fresh_prefix()}"}})

            @app.task
            def add(x, y):
                return x + y
            ''')
        project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
        results = [tasks.add.delay(i, i) for i in range(20)]
        assert [res.get(timeout=20) for res in results] == [2 * i for i in range(20)]
        assert tasks.app.broker.depth() == {}
    finally:
        project.close()


@pytest.mark.redis
def test_apps_with_their_own_prefix_spread_over_the_shards(
        cluster_set: ClusterSet, opened: list[RedisTransport]) -> None:
    """Each app's calls go to the shard of its slot; apps on every shard work at once."""
    opened.append(RedisTransport(cluster_set.url(), {}))
    client = opened[0]._conn.client
    by_shard: dict[str, RedisTransport] = {}
    while len(by_shard) < len(cluster_set.nodes):
        transport = RedisTransport(cluster_set.url(), {"global_keyprefix": fresh_prefix()})
        opened.append(transport)
        by_shard.setdefault(client.get_node_from_key(transport.keys.seq).name, transport)
    for shard, transport in by_shard.items():
        transport.publish([envelope(shard)])
    for shard, transport in by_shard.items():
        assert ids(transport.claim(["celery"], 5, "w", 30)) == [shard]
    assert isinstance(client, redis.RedisCluster)


# -- liteq doctor --------------------------------------------------------------------


@pytest.mark.redis
def test_doctor_reports_the_sentinel_replicas(sentinel_set: SentinelSet) -> None:
    app = liteq.LiteQ("doctor", broker=fresh_sentinel_database(sentinel_set),
                      broker_transport_options=sentinel_set.options())
    try:
        checks = {check.name: check for check in diagnose(app)}
        assert checks["redis replicas"].status == "ok"
        assert checks["redis replicas"].detail == \
            "1 connected to the master; each write waits for 1"
        app.conf.broker_transport_options = {**sentinel_set.options(),
                                             "wait_for_replicas": 2}
        checks = {check.name: check for check in diagnose(app)}
        assert checks["redis replicas"].status == "warn"
        assert "writes go unconfirmed" in checks["redis replicas"].detail
    finally:
        app.close()


@pytest.mark.redis
def test_doctor_names_the_shard_of_the_app(cluster_set: ClusterSet) -> None:
    app = liteq.LiteQ("doctor", broker=cluster_set.url(),
                      broker_transport_options={"global_keyprefix": "shop:"})
    try:
        checks = {check.name: check for check in diagnose(app)}
        slot = app.broker._conn.client.keyslot("{shop}:seq")  # type: ignore[attr-defined]
        assert checks["redis cluster"].status == "ok"
        assert checks["redis cluster"].detail.startswith(
            f"every key of the app in slot {slot} on ")
    finally:
        app.close()
