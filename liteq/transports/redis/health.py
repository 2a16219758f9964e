"""Facts about a Redis server for ``liteq doctor``: version, AOF, eviction policy."""

from __future__ import annotations

from typing import Any

from liteq.transports.redis.connection import Connection


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_health(conn: Connection, location: str) -> dict[str, Any]:
    """What ``INFO`` says of the server: version, append-only file, maxmemory policy."""
    info: dict[str, Any] = conn.run(lambda client: client.info())
    return {
        "kind": "redis", "location": location,
        "version": _text(info.get("redis_version", "?")),
        "aof_enabled": str(info.get("aof_enabled", "0")) == "1",
        "maxmemory_policy": _text(info.get("maxmemory_policy", "unknown")),
        "maxmemory": int(info.get("maxmemory", 0) or 0),
    }


__all__ = ["redis_health"]
