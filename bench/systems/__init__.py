"""The systems the harness can measure, by name (the rows of the table)."""

from __future__ import annotations

from bench.systems.base import Environment, System
from bench.systems.celery_sys import CelerySystem
from bench.systems.floor_sys import FloorSystem
from bench.systems.huey_sys import HueySystem
from bench.systems.liteq import LiteQSystem
from bench.systems.potatoq_sys import PotatoqSystem


def all_systems() -> list[System]:
    """Every system, in table order."""
    return [
        LiteQSystem("liteq-normal", "NORMAL"),
        LiteQSystem("liteq-full", "FULL"),
        LiteQSystem("liteq-redis", redis=True),
        CelerySystem(),
        HueySystem(),
        PotatoqSystem(),
        FloorSystem(1),
        FloorSystem(64),
    ]


def by_name() -> dict[str, System]:
    return {system.name: system for system in all_systems()}


__all__ = ["Environment", "System", "all_systems", "by_name"]
