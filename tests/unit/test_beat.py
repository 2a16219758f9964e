"""The beat with an injected clock: ticks, missed ticks, several beats, retired entries."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from liteq import ImproperlyConfigured, LiteQ, crontab
from liteq.beat import MISSED_AFTER, Beat, describe
from liteq.testing import drain


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(tmp_path: Path, **settings: object) -> LiteQ:
    app = LiteQ("beatapp", broker=str(tmp_path / "beat.db"), **settings)

    @app.task(name="ping")
    def ping(word: str = "") -> str:
        return word

    return app


def queued(app: LiteQ) -> int:
    depth = app.broker.depth()
    return sum(d.ready + d.scheduled for d in depth.values())


def test_interval_entry_fires_every_period(tmp_path: Path) -> None:
    app = make_app(tmp_path, beat_schedule={"p": {"task": "ping", "schedule": 10.0}})
    clock = Clock(1_000_000.0)
    beat = Beat(app, clock=clock)
    (entry,) = beat.setup()
    assert entry.next_run_at == 1_000_010.0  # first run one period after start, as Celery
    assert beat.tick() == 10.0 and queued(app) == 0
    clock.now += 10
    assert beat.tick() == 10.0 and queued(app) == 1
    clock.now += 10.5
    beat.tick()
    assert queued(app) == 2
    (entry,) = app.broker.beat_entries()
    assert entry.next_run_at == 1_000_030.0  # anchored to the schedule, not to lateness
    assert entry.total_run_count == 2 and entry.last_run_at == clock.now


def test_many_beats_fire_each_tick_once(tmp_path: Path) -> None:
    app = make_app(tmp_path, beat_schedule={"p": {"task": "ping", "schedule": 1.0}})
    clock = Clock(2_000_000.0)
    beats = [Beat(app, clock=clock) for _ in range(3)]
    for beat in beats:
        beat.setup()
    for _ in range(20):
        clock.now += 1
        for beat in beats:
            beat.tick()
    assert queued(app) == 20
    assert sum(beat.fired for beat in beats) == 20


def test_missed_ticks_fire_once_or_are_skipped(tmp_path: Path) -> None:
    schedule = {"p": {"task": "ping", "schedule": 5.0}}
    app = make_app(tmp_path, beat_schedule=schedule)
    clock = Clock(3_000_000.0)
    Beat(app, clock=clock).setup()
    clock.now += 3600  # the beat was down for an hour: 720 ticks missed
    beat = Beat(app, clock=clock)
    beat.setup()
    beat.tick()
    assert queued(app) == 1
    (entry,) = app.broker.beat_entries()
    assert entry.next_run_at == clock.now + 5
    app.conf.beat_missed_policy = "skip"
    clock.now += 3600
    skipper = Beat(app, clock=clock)
    skipper.setup()
    skipper.tick()
    assert queued(app) == 1  # skipped, but advanced
    assert app.broker.beat_entries()[0].next_run_at == clock.now + 5
    clock.now += 5 + MISSED_AFTER / 2  # merely late: fired
    skipper.tick()
    assert queued(app) == 2


def test_crontab_in_the_app_timezone(tmp_path: Path) -> None:
    app = make_app(tmp_path, timezone="Asia/Shanghai",
                   beat_schedule={"daily": {"task": "ping", "schedule": crontab(0, 7)}})
    clock = Clock(1_767_225_600.0)  # 2026-01-01 00:00 UTC = 08:00 in Shanghai
    beat = Beat(app, clock=clock)
    (entry,) = beat.setup()
    assert entry.next_run_at == clock.now + timedelta(hours=23).total_seconds()


def test_removed_entries_are_retired_and_changed_ones_reset(tmp_path: Path) -> None:
    app = make_app(tmp_path, beat_schedule={
        "a": {"task": "ping", "schedule": 10.0}, "b": {"task": "ping", "schedule": 20.0},
    })
    clock = Clock(4_000_000.0)
    Beat(app, clock=clock).setup()
    app.conf.beat_schedule = {"a": {"task": "ping", "schedule": 10.0},
                              "c": {"task": "ping", "schedule": 30.0, "args": ["x"]}}
    clock.now += 5
    names = {entry.name: entry for entry in Beat(app, clock=clock).setup()}
    assert set(names) == {"a", "c"}
    assert names["a"].next_run_at == 4_000_010.0  # unchanged: keeps its time
    assert names["c"].next_run_at == 4_000_035.0


def test_add_periodic_task_in_on_after_configure(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.on_after_configure.connect
    def setup(sender: LiteQ, **kwargs: object) -> None:
        sender.add_periodic_task(10.0, app.tasks["ping"].s("hello"), name="add every 10")
        sender.add_periodic_task(30.0, app.tasks["ping"].s("world"), expires=10)
        sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1),
                                 app.tasks["ping"].s("Happy Mondays!"))

    clock = Clock(5_000_000.0)
    beat = Beat(app, clock=clock)
    stored = {entry.name for entry in beat.setup()}
    assert "add every 10" in stored and len(stored) == 3
    clock.now += 30
    beat.tick()
    assert queued(app) == 2
    assert next(r["name"] for r in describe(app, now=clock.now)) in stored
    assert drain(app) == 2


def test_expires_option_applies_to_each_run(tmp_path: Path) -> None:
    app = make_app(tmp_path, beat_schedule={
        "p": {"task": "ping", "schedule": 1.0, "options": {"expires": 0.0}},
    })
    clock = Clock(6_000_000.0)
    beat = Beat(app, clock=clock)
    beat.setup()
    clock.now = 6_000_001.0
    beat.tick()
    assert queued(app) == 1
    drain(app, fail_fast=False)
    states = app.broker.database.conn.execute("SELECT state FROM liteq_results").fetchall()
    assert states == [("REVOKED",)]  # each run expires "expires" seconds after sending


@pytest.mark.parametrize("entry,error", [
    ({"schedule": 10}, "has no 'task'"),
    ({"task": "ping", "schedule": "often"}, "schedule"),
    ({"task": "ping", "schedule": -1}, "beat_schedule\\['bad'\\]"),
    ({"task": "ping", "schedule": 1, "args": "x"}, "args must be a list"),
])
def test_bad_entries_are_named(tmp_path: Path, entry: dict, error: str) -> None:
    app = make_app(tmp_path, beat_schedule={"bad": entry})
    with pytest.raises(ImproperlyConfigured, match=error):
        Beat(app).setup()


def test_bad_missed_policy(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="beat_missed_policy"):
        Beat(make_app(tmp_path, beat_missed_policy="twice"))
