"""The beat: sends periodic tasks (``beat_schedule``, ``add_periodic_task``) on time.

Entries and their run times live in the database. Firing a tick advances the entry
and publishes its task in one transaction, guarded by a compare-and-set on the entry's
``next_run_at``, so any number of beats on one file (or one Redis) fire each tick once.
A beat that was down fires a missed entry once when it comes back (``beat_missed_policy
= "once"``, the default) or not at all (``"skip"``); never once per missed tick.
Entries removed from the code are retired from the database when a beat starts.

Schedules are pure functions of time (:mod:`liteq.schedules`); the clock is injectable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from liteq import serialization, signals
from liteq.exceptions import ImproperlyConfigured
from liteq.schedules import BaseSchedule, crontab, from_dict, to_schedule
from liteq.transports.base import BeatEntry

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger("liteq.beat")

#: A tick later than this (seconds) was missed (the beat was down), not just late.
MISSED_AFTER = 2.0
#: Longest sleep between looks at the schedule (entries may change under other beats).
MAX_SLEEP = 60.0
MISSED_POLICIES = ("once", "skip")
#: ``beat_scheduler`` / ``liteq beat -S`` values that name what liteq's beat does: a
#: schedule kept between runs (in the store, where Celery keeps a shelve file).
OWN_SCHEDULERS = frozenset({
    "celery.beat:PersistentScheduler", "celery.beat.PersistentScheduler",
    "celery.beat:Scheduler", "celery.beat.Scheduler", "liteq.beat:Beat", "liteq.beat.Beat",
})


def check_scheduler(name: Any) -> None:
    """Refuse a ``beat_scheduler`` liteq cannot honour (it would silently run none of
    the entries that scheduler keeps, such as django_celery_beat's database ones).

    Raises:
        ImproperlyConfigured: ``name`` is not empty and not one of :data:`OWN_SCHEDULERS`.
    """
    if not name or (isinstance(name, str) and name.strip() in OWN_SCHEDULERS):
        return
    raise ImproperlyConfigured(
        f"beat_scheduler {name!r} is not supported: liteq's beat reads its entries from "
        "beat_schedule and app.add_periodic_task and keeps them in the store (entries "
        "kept by another scheduler, such as django_celery_beat's DatabaseScheduler, would "
        "never run); remove the setting, or move the entries into beat_schedule"
    )


@dataclass(frozen=True)
class Definition:
    """One periodic task as the code defines it."""

    name: str
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    schedule: BaseSchedule

    def stored(self, next_run_at: float) -> BeatEntry:
        definition = serialization.json_dumps(
            {"task": self.task, "args": list(self.args), "kwargs": self.kwargs,
             "options": self.options}
        )
        schedule = serialization.json_dumps(self.schedule.to_dict()).decode()
        return BeatEntry(self.name, definition, schedule, next_run_at)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def definitions(app: LiteQ) -> dict[str, Definition]:
    """The periodic tasks in ``beat_schedule`` (``add_periodic_task`` writes there too).

    Raises:
        ImproperlyConfigured: an entry without a task, or with a bad schedule (named).
    """
    zone = app.timezone or timezone.utc
    found = {}
    schedule_setting = app.conf.beat_schedule or {}
    if not isinstance(schedule_setting, Mapping):
        raise ImproperlyConfigured("beat_schedule must be a dict of name -> entry")
    for name, entry in schedule_setting.items():
        if not isinstance(entry, Mapping):
            raise ImproperlyConfigured(f"beat_schedule[{name!r}] must be a dict")
        task = entry.get("task")
        if not task or not isinstance(task, str):
            raise ImproperlyConfigured(f"beat_schedule[{name!r}] has no 'task' name")
        try:
            schedule = to_schedule(entry.get("schedule"))
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"beat_schedule[{name!r}]: {exc}") from None
        if isinstance(schedule, crontab) and not schedule.tz_given:
            schedule = schedule.with_timezone(zone)
        args = entry.get("args") or ()
        kwargs = entry.get("kwargs") or {}
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
            raise ImproperlyConfigured(
                f"beat_schedule[{name!r}]: args must be a list or tuple, kwargs a dict"
            )
        found[name] = Definition(str(name), task, tuple(args), dict(kwargs),
                                 dict(entry.get("options") or {}), schedule)
    return found


class Beat:
    """Sends due periodic tasks; run several on one file safely.

    Example:
        >>> beat = Beat(app)  # doctest: +SKIP
        >>> beat.setup()  # sync the code's entries into the database  # doctest: +SKIP
        >>> beat.run(stop=threading.Event())  # doctest: +SKIP
    """

    def __init__(self, app: LiteQ, *, clock: Callable[[], float] = time.time,
                 lock: Any = None, max_sleep: float | None = None) -> None:
        self.app = app
        self.transport = app.broker
        self.clock = clock
        #: held around database work (a worker's fork guard, for ``worker -B``)
        self.lock = lock or contextlib.nullcontext()
        configured = app.conf.beat_max_loop_interval
        self.max_sleep = max_sleep or (float(configured) if configured else MAX_SLEEP)
        self.policy = str(app.conf.beat_missed_policy or "once")
        if self.policy not in MISSED_POLICIES:
            raise ImproperlyConfigured(
                f"beat_missed_policy must be one of {', '.join(MISSED_POLICIES)}, "
                f"not {self.policy!r}"
            )
        self.definitions: dict[str, Definition] = {}
        self.fired = 0

    def setup(self) -> list[BeatEntry]:
        """Read the code's schedule and make the database match it.

        Raises:
            ImproperlyConfigured: an unsupported ``beat_scheduler``, or a bad entry.
        """
        check_scheduler(self.app.conf.beat_scheduler)
        self.app.finalize()
        self.definitions = definitions(self.app)
        now = self.clock()
        wanted = [d.stored(d.schedule.next_after(_utc(now)).timestamp())
                  for d in self.definitions.values()]
        with self.lock:
            stored = self.transport.beat_sync(wanted)
        signals.beat_init.send(sender=self)
        logger.info("beat: %d periodic task(s): %s", len(stored),
                    ", ".join(entry.name for entry in stored) or "none")
        return stored

    def tick(self, now: float | None = None) -> float:
        """Fire every due entry once; returns seconds until the next one is due."""
        now = self.clock() if now is None else now
        with self.lock:
            entries = self.transport.beat_entries()
        upcoming = []
        for entry in entries:
            if entry.next_run_at <= now:
                next_run_at = self._fire(entry, now)
                upcoming.append(next_run_at)
            else:
                upcoming.append(entry.next_run_at)
        if not upcoming:
            return self.max_sleep
        return max(0.0, min(min(upcoming) - now, self.max_sleep))

    def _fire(self, entry: BeatEntry, now: float) -> float:
        definition = self.definitions.get(entry.name)
        if definition is None:  # defined by another beat's (newer) code: leave it to it
            return now + self.max_sleep
        missed = now - entry.next_run_at > MISSED_AFTER
        send = not missed or self.policy == "once"
        anchor = now if missed else entry.next_run_at  # coalesce missed ticks into one
        next_run_at = definition.schedule.next_after(_utc(anchor)).timestamp()
        if next_run_at <= now:  # a slow beat: never schedule into the past
            next_run_at = definition.schedule.next_after(_utc(now)).timestamp()
        envelope = None
        if send:
            # The tick in the headers lets a task tell ticks apart (and deduplicate).
            options = dict(definition.options)
            options["headers"] = {**options.get("headers", {}), "beat_entry": entry.name,
                                  "beat_tick": entry.next_run_at}
            message = self.app.producer.build_message(
                definition.task, definition.args, definition.kwargs,
                task=self.app.tasks.get(definition.task), **options,
            )
            envelope = message.encode()
        with self.lock:
            fired = self.transport.beat_fire(entry.name, entry.next_run_at, next_run_at,
                                             now, envelope)
        if fired and send:
            self.fired += 1
            logger.info("beat: sending %s (%s)%s", entry.name, definition.task,
                        " after a missed tick" if missed else "")
        elif fired:
            logger.info("beat: skipped a missed tick of %s (beat_missed_policy=skip)",
                        entry.name)
        return next_run_at

    def run(self, stop: threading.Event) -> None:
        """Fire due entries until ``stop`` is set."""
        if not self.definitions:
            self.setup()
        while not stop.is_set():
            try:
                sleep = self.tick()
            except Exception:
                logger.exception("beat: tick failed; retrying in 1s")
                sleep = 1.0
            stop.wait(sleep)


def describe(app: LiteQ, now: float | None = None) -> list[dict[str, Any]]:
    """The stored schedule, for ``liteq beat --show``."""
    now = time.time() if now is None else now
    rows = []
    for entry in app.broker.beat_entries():
        definition = serialization.json_loads(entry.definition)
        schedule = from_dict(serialization.json_loads(entry.schedule))
        rows.append({
            "name": entry.name,
            "task": definition.get("task"),
            "schedule": repr(schedule),
            "next_run_at": entry.next_run_at,
            "due_in": entry.next_run_at - now,
            "last_run_at": entry.last_run_at,
            "total_run_count": entry.total_run_count,
        })
    return rows


__all__ = ["OWN_SCHEDULERS", "Beat", "Definition", "check_scheduler", "definitions", "describe"]
