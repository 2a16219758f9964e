"""Facts about a Redis server for ``liteq doctor``: version, AOF, eviction policy, and
how the servers are laid out (one, Sentinel with its replicas, or a Cluster)."""

from __future__ import annotations

from typing import Any

from liteq.transports.redis.connection import Connection


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_health(conn: Connection, location: str, wait_for_replicas: int = 0,
                 anchor: str = "") -> dict[str, Any]:
    """What ``INFO`` says of the server: version, append-only file, maxmemory policy;
    on Sentinel the master's connected replicas (and how many each write waits for),
    on a Cluster the shard holding the app's slot (``anchor`` is one of its keys)."""
    topology = conn.servers.kind
    facts: dict[str, Any] = {"kind": "redis", "location": location, "topology": topology}
    if topology == "cluster":
        def shard(client: Any) -> tuple[dict[str, Any], str, int]:
            node = client.get_node_from_key(anchor)
            return client.info(target_nodes=node), node.name, client.keyslot(anchor)

        info, facts["shard"], facts["slot"] = conn.run(shard)
    else:
        info = conn.run(lambda client: client.info())
    facts.update({
        "version": _text(info.get("redis_version", "?")),
        "aof_enabled": str(info.get("aof_enabled", "0")) == "1",
        "maxmemory_policy": _text(info.get("maxmemory_policy", "unknown")),
        "maxmemory": int(info.get("maxmemory", 0) or 0),
        "connected_replicas": int(info.get("connected_slaves", 0) or 0),
        "wait_for_replicas": wait_for_replicas,
    })
    return facts


__all__ = ["redis_health"]
