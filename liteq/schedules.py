"""Periodic schedules: intervals and crontabs, as pure functions of time.

Two kinds, with Celery's names and API:

* :class:`schedule` -- every ``run_every`` (a number of seconds or a ``timedelta``);
* :class:`crontab` -- cron's five fields in Celery's argument forms, evaluated in a
  time zone (UTC unless given one), with croniter doing the calendar arithmetic.

The core of both is :meth:`BaseSchedule.next_after`: the first fire time strictly after
an aware datetime, returned in UTC (Python compares two datetimes of one zone by wall
time, which goes wrong in a repeated hour; UTC values compare safely with anything).
Celery's ``remaining_estimate`` and ``is_due`` are built on it and take the current time
as a ``now=`` argument, so the beat and the tests inject the clock.

Interval anchoring: ``schedule.next_after(t)`` is ``t + run_every`` in elapsed (UTC)
time, whatever the zone of ``t``. The beat passes an entry's last run as ``t``, so an
interval entry fires ``run_every`` after it last ran; deciding the anchor (last run,
start time, missed ticks) is the beat's job, not this module's.

Daylight saving time (crontab): a crontab fires at the wall-clock minutes of its zone
that match its fields, each wall minute at most once.

* A matching wall time that occurs twice (fall back, e.g. 02:30 on the last Sunday of
  October in Europe/Berlin) fires **once**, at its first occurrence (``fold=0``). This
  holds for every crontab, so one that runs every few minutes pauses during the
  repeated hour. (croniter alone fires both occurrences.)
* A matching wall time that does not exist (spring forward, e.g. 02:30 on the last
  Sunday of March in Berlin) is treated as croniter treats it (after Vixie cron): a
  crontab that names its hours fires at the first instant after the gap (03:00), so a
  daily 02:30 job still runs that day -- several missing times collapse into that one
  firing, and a crontab that also matches 03:00 fires at 03:00 once; a crontab whose
  hour field is every hour (``*``) skips the missing times (``5 * * * *`` fires at
  01:05 and 03:05, one hour apart).

Storage: :meth:`BaseSchedule.to_dict` gives json-friendly data and :func:`from_dict`
rebuilds an equal schedule. This module imports only :mod:`liteq.cronfields`.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, NamedTuple, TypeAlias, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from liteq.cronfields import CRON_ORDER, FIELDS, MONTH_DAYS, CronSpec, orig_text
from liteq.exceptions import ImproperlyConfigured

UTC = timezone.utc


Clock: TypeAlias = Callable[[], datetime]


class schedstate(NamedTuple):  # Celery's name
    """What :meth:`BaseSchedule.is_due` returns (Celery's ``schedstate``).

    ``is_due`` says whether the entry should run now; ``next`` is how many seconds the
    caller may wait before asking again.
    """

    is_due: bool
    next: float


class BaseSchedule(ABC):
    """What every schedule offers: ``next_after``, Celery's API, and ``to_dict``.

    Args:
        nowfun: The default clock for ``remaining_estimate``/``is_due`` when they are
            not given ``now=`` (Celery's argument); defaults to the wall clock in UTC.
    """

    def __init__(self, nowfun: Clock | None = None) -> None:
        self.nowfun = nowfun

    @abstractmethod
    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware datetime ``t``, in UTC."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Plain json-friendly data that :func:`from_dict` turns back into this schedule."""

    def now(self) -> datetime:
        """The current time from ``nowfun``, or the wall clock in UTC."""
        return self.nowfun() if self.nowfun is not None else datetime.now(UTC)

    def remaining_estimate(
        self, last_run_at: datetime, *, now: datetime | None = None
    ) -> timedelta:
        """How long from ``now`` until the first fire time after ``last_run_at``.

        Negative when that fire time has passed. Naive datetimes are read in the
        schedule's zone (UTC for intervals).

        Args:
            last_run_at: When the entry last ran.
            now: The current time (default: :meth:`now`).

        Example:
            >>> from datetime import datetime, timezone
            >>> last = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
            >>> schedule(60).remaining_estimate(last, now=last + timedelta(seconds=45))
            datetime.timedelta(seconds=15)
        """
        current = self._aware(now if now is not None else self.now())
        return self.next_after(self._aware(last_run_at)) - current.astimezone(UTC)

    def is_due(self, last_run_at: datetime, *, now: datetime | None = None) -> schedstate:
        """Celery's check: is the entry due, and in how many seconds to check again.

        When due, ``next`` is the time from ``now`` to the following fire time;
        otherwise it is the time left until the entry is due.

        Example:
            >>> from datetime import datetime, timezone
            >>> last = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
            >>> schedule(60).is_due(last, now=last + timedelta(seconds=45))
            schedstate(is_due=False, next=15.0)
            >>> schedule(60).is_due(last, now=last + timedelta(seconds=60))
            schedstate(is_due=True, next=60.0)
        """
        current = self._aware(now if now is not None else self.now())
        remaining = self.remaining_estimate(last_run_at, now=current).total_seconds()
        if remaining > 0:
            return schedstate(is_due=False, next=remaining)
        following = self.next_after(current) - current.astimezone(UTC)
        return schedstate(is_due=True, next=following.total_seconds())

    def _aware(self, dt: datetime) -> datetime:
        if not isinstance(dt, datetime):
            raise TypeError(f"expected a datetime, got {type(dt).__name__}: {dt!r}")
        if dt.tzinfo is None or dt.utcoffset() is None:
            return dt.replace(tzinfo=self._naive_tz())
        return dt

    def _naive_tz(self) -> tzinfo:
        """The zone naive datetimes are read in: UTC here, a crontab's own zone there."""
        return UTC


def _require_aware(t: datetime) -> None:
    if not isinstance(t, datetime):
        raise TypeError(f"next_after() needs a datetime, got {type(t).__name__}: {t!r}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"next_after() needs an aware datetime, got naive {t!r}")


# -- intervals -----------------------------------------------------------------------


class schedule(BaseSchedule):  # Celery's name
    """Every ``run_every``: a number of seconds or a ``timedelta`` (more than zero).

    Intervals measure elapsed time, so they ignore time zones and DST.

    Args:
        run_every: The interval.
        relative: Celery's rounding option; only ``False`` is supported.
        nowfun: The default clock (see :class:`BaseSchedule`).

    Raises:
        TypeError: ``run_every`` is not a number or a timedelta.
        ValueError: ``run_every`` is not more than zero, or ``relative`` is true.

    Example:
        >>> from datetime import datetime, timezone
        >>> every = schedule(timedelta(minutes=5))
        >>> every.next_after(datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc))
        datetime.datetime(2024, 1, 1, 12, 5, tzinfo=datetime.timezone.utc)
        >>> every
        <freq: 5.00 minutes>
    """

    relative = False

    def __init__(self, run_every: float | timedelta, relative: bool = False,
                 nowfun: Clock | None = None) -> None:
        super().__init__(nowfun)
        if relative:
            raise ValueError("schedule(relative=True) is not supported by liteq")
        self.run_every: timedelta = _interval(run_every)

    @property
    def seconds(self) -> float:
        """The interval in seconds."""
        return self.run_every.total_seconds()

    def next_after(self, t: datetime) -> datetime:
        """``t + run_every`` in elapsed time, in UTC.

        Example:
            >>> from datetime import datetime, timezone
            >>> schedule(10).next_after(datetime(2024, 1, 1, tzinfo=timezone.utc))
            datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=datetime.timezone.utc)
        """
        _require_aware(t)
        # Add in UTC: aware arithmetic in a DST zone would add wall-clock time.
        return t.astimezone(UTC) + self.run_every

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "interval", "seconds": ...}``.

        Example:
            >>> schedule(10).to_dict()
            {'type': 'interval', 'seconds': 10.0}
        """
        return {"type": "interval", "seconds": self.seconds}

    def __repr__(self) -> str:
        return f"<freq: {_humanize_seconds(self.seconds)}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, schedule):
            return self.run_every == other.run_every
        if isinstance(other, timedelta):  # Celery compares with a bare timedelta too
            return self.run_every == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.run_every)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_interval(value: object) -> bool:
    return isinstance(value, (numbers.Real, timedelta)) and not isinstance(value, bool)


def _interval(value: object) -> timedelta:
    if not _is_interval(value):
        raise TypeError(f"an interval must be a number of seconds or a timedelta, "
                        f"got {type(value).__name__}: {value!r}")
    if isinstance(value, timedelta):
        interval = value
    else:
        seconds = float(cast(numbers.Real, value))
        if not math.isfinite(seconds):
            raise ValueError(f"an interval must be a finite number of seconds, got {value!r}")
        interval = timedelta(seconds=seconds)
    if interval <= timedelta(0):
        raise ValueError(f"an interval must be more than zero, got {value!r}")
    return interval


def _humanize_seconds(seconds: float) -> str:
    # Celery's humanize_seconds, so the repr reads the same: "10.00 seconds", "1.00 hour".
    seconds = float(format(seconds, ".2f"))
    for unit, divider in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0)):
        if seconds >= divider:
            amount = seconds / divider
            return f"{amount:.2f} {unit}{'' if amount == 1 else 's'}"
    return "now"


#: Candidates next_after may pass over: the minutes of a repeated hour, with room to spare.
_MAX_CANDIDATES = 10_000


# -- time zones ----------------------------------------------------------------------


def _zone(tz: tzinfo | str | None) -> tzinfo:
    """UTC, or a ``ZoneInfo`` with a name: the zones a crontab can be stored with."""
    if isinstance(tz, str):
        try:
            tz = UTC if tz.upper() == "UTC" else ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {tz!r}") from None
    if tz is None or tz is UTC or (isinstance(tz, ZoneInfo) and tz.key == "UTC"):
        return UTC
    if not isinstance(tz, ZoneInfo) or tz.key is None:
        raise TypeError(f"a crontab's time zone must be a zoneinfo.ZoneInfo with a name "
                        f"or a zone name, got {type(tz).__name__}: {tz!r}")
    return tz


def _zone_name(tz: tzinfo) -> str:
    return tz.key if isinstance(tz, ZoneInfo) else "UTC"


def _exists(wall: datetime, tz: tzinfo) -> bool:
    """True unless the naive wall time falls in a DST gap of ``tz``."""
    there = wall.replace(tzinfo=tz, fold=0)
    return there.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def _fire_time(wall: datetime, tz: tzinfo, shift: bool) -> datetime | None:
    """When (in UTC) a matching wall-clock minute fires (see the module docstring): its
    first occurrence; if it falls in a gap, the gap's end when ``shift`` is true, else never.
    """
    if tz is UTC:
        return wall.replace(tzinfo=UTC)
    if not shift and not _exists(wall, tz):
        return None
    probe = wall
    # A wall time in a gap fires when the gap ends: the first wall minute that exists.
    for _ in range(2 * 24 * 60):  # gaps are an hour or so; a whole day at most (Samoa 2011)
        if _exists(probe, tz):
            return probe.replace(tzinfo=tz, fold=0).astimezone(UTC)
        probe += timedelta(minutes=1)
    raise RuntimeError(f"no wall time after {wall} exists in {tz}")  # pragma: no cover


# -- crontab -------------------------------------------------------------------------


class crontab(BaseSchedule):  # Celery's name
    """Cron-like schedule with Celery's arguments, evaluated in a time zone.

    Each field takes an int, a string (``"*"``, ``"*/15"``, ``"0,30"``, ``"1-5"``,
    ``"mon-fri"``, ``"22-2"`` wrapping past midnight, ``"5/15"`` for 5-59/15), or an
    iterable of ints or strings (``{0, 30}``, ``range(0, 60, 15)``). Day of week counts
    from Sunday: 0 or 7 is Sunday, 1 Monday ... 6 Saturday, and names ``sun``..``sat``
    or ``sunday``..``saturday`` work (month names ``jan``..``dec`` too). As in Celery,
    a day must match both ``day_of_month`` and ``day_of_week`` (not either, as in cron).
    The parsed sets are the attributes ``minute``, ``hour``, ``day_of_week``,
    ``day_of_month`` and ``month_of_year``.

    Args:
        minute: 0-59.
        hour: 0-23.
        day_of_week: 0-7, Sunday = 0 = 7.
        day_of_month: 1-31.
        month_of_year: 1-12.
        tz: The zone the fields are read in: a ``zoneinfo.ZoneInfo`` or its name
            (default UTC). See the module docstring for DST transitions.
        nowfun: The default clock (see :class:`BaseSchedule`).

    Raises:
        ValueError: A field is invalid (the message names the field and the value),
            the days given never occur, or the zone is unknown.
        TypeError: A field or the zone has the wrong type.

    Example:
        >>> from datetime import datetime, timezone
        >>> quarterly = crontab(minute=0, hour=0, day_of_month="1", month_of_year="*/3")
        >>> quarterly.next_after(datetime(2024, 2, 10, tzinfo=timezone.utc))
        datetime.datetime(2024, 4, 1, 0, 0, tzinfo=datetime.timezone.utc)
        >>> crontab(minute=0, hour=7, day_of_month=1)
        <crontab: 0 7 1 * * (m/h/dM/MY/d)>
    """

    def __init__(
        self,
        minute: CronSpec = "*",
        hour: CronSpec = "*",
        day_of_week: CronSpec = "*",
        day_of_month: CronSpec = "*",
        month_of_year: CronSpec = "*",
        *,
        tz: tzinfo | str | None = None,
        nowfun: Clock | None = None,
    ) -> None:
        super().__init__(nowfun)
        given = {"minute": minute, "hour": hour, "day_of_week": day_of_week,
                 "day_of_month": day_of_month, "month_of_year": month_of_year}
        values = {name: FIELDS[name].expand(spec) for name, spec in given.items()}
        self.minute, self.hour, self.day_of_week, self.day_of_month, self.month_of_year = (
            values[name] for name in FIELDS)
        self.tz: tzinfo = _zone(tz)
        #: False when no zone was given: the beat then evaluates it in the app's timezone
        self.tz_given = tz is not None
        # The fields as given, for repr and storage (Celery keeps them as _orig_*).
        self._orig = {name: orig_text(spec, FIELDS[name], values[name])
                      for name, spec in given.items()}
        if not any(day <= MONTH_DAYS[month - 1]
                   for month in self.month_of_year for day in self.day_of_month):
            raise ValueError(f"crontab day_of_month {self._orig['day_of_month']!r} never "
                             f"occurs in month_of_year {self._orig['month_of_year']!r}")
        self._expr = " ".join(FIELDS[name].text(values[name]) for name in CRON_ORDER)

    def _naive_tz(self) -> tzinfo:
        return self.tz

    def with_timezone(self, tz: tzinfo | str | None) -> crontab:
        """A copy of this crontab evaluated in ``tz`` (a ``ZoneInfo`` or a zone name).

        Example:
            >>> crontab(minute=0, hour=7).with_timezone("Asia/Shanghai").tz
            zoneinfo.ZoneInfo(key='Asia/Shanghai')
        """
        o = self._orig
        return crontab(o["minute"], o["hour"], o["day_of_week"], o["day_of_month"],
                       o["month_of_year"], tz=tz, nowfun=self.nowfun)

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware datetime ``t``, in UTC.

        Raises:
            ValueError: ``t`` is naive.

        Example:
            >>> from zoneinfo import ZoneInfo
            >>> berlin = ZoneInfo("Europe/Berlin")
            >>> early = crontab(minute=30, hour=2, tz=berlin)
            >>> fire = early.next_after(datetime(2024, 3, 31, 1, 0, tzinfo=berlin))
            >>> fire.astimezone(berlin).isoformat()  # no 02:30 that day: the gap's end
            '2024-03-31T03:00:00+02:00'
        """
        _require_aware(t)
        after = t.astimezone(UTC)
        wall = t.astimezone(self.tz).replace(tzinfo=None)
        # croniter works on the naive wall clock, where it is plain calendar arithmetic;
        # the zone is applied here. Candidates come in wall order and their fire times
        # never decrease, so the first one after t is the answer. Only in a repeated
        # hour (t in its second pass) do some candidates fall at or before t, and only
        # in a gap are some skipped.
        candidates = croniter(self._expr, wall, ret_type=datetime, day_or=False)
        shift = len(self.hour) < 24  # the hours are named: a missing time fires late
        for _ in range(_MAX_CANDIDATES):
            fire = _fire_time(candidates.get_next(datetime), self.tz, shift)
            if fire is not None and fire > after:
                return fire
        raise RuntimeError(f"{self!r}: no fire time found after {t}")  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        """The fields as given (ints and sets as cron text) and the zone's name.

        Example:
            >>> crontab(minute="*/15", tz="Europe/Berlin").to_dict()["minute"]
            '*/15'
        """
        return {"type": "crontab", **self._orig, "tz": _zone_name(self.tz)}

    def _key(self) -> tuple[Any, ...]:
        return (self.minute, self.hour, self.day_of_week, self.day_of_month,
                self.month_of_year, _zone_name(self.tz))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, crontab):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        o = self._orig
        text = (f"<crontab: {o['minute']} {o['hour']} {o['day_of_month']} "
                f"{o['month_of_year']} {o['day_of_week']} (m/h/dM/MY/d)")
        zone = _zone_name(self.tz)
        return f"{text}>" if zone == "UTC" else f"{text} {zone}>"


# -- solar ---------------------------------------------------------------------------

#: The events Celery's ``solar`` schedule takes.
SOLAR_EVENTS = ("dawn_astronomical", "dawn_nautical", "dawn_civil", "sunrise", "solar_noon",
                "sunset", "dusk_civil", "dusk_nautical", "dusk_astronomical")


class solar:  # Celery's name
    """Celery's sun-position schedule (``solar("sunset", lat, lon)``): not supported.

    Celery computes sunrise, sunset and twilight with the ``ephem`` library; liteq does
    not, so a beat never silently skips or misfires such an entry. Creating one raises
    :class:`~liteq.exceptions.ImproperlyConfigured` that names what to use instead:
    a :class:`crontab` at fixed times in your ``timezone``.

    Raises:
        ImproperlyConfigured: always.

    Example:
        >>> solar("sunset", -37.81753, 144.96715)
        Traceback (most recent call last):
        ...
        liteq.exceptions.ImproperlyConfigured: solar('sunset', ...) schedules are not ...
    """

    def __init__(self, event: str, lat: float, lon: float, **_options: Any) -> None:
        known = "" if event in SOLAR_EVENTS else \
            f" ({event!r} is not a solar event either: {', '.join(SOLAR_EVENTS)})"
        raise ImproperlyConfigured(
            f"solar({event!r}, {lat}, {lon}) schedules are not supported by liteq{known}: "
            "they need astronomical calculations (Celery uses the ephem library). "
            "Use crontab at fixed times instead, e.g. crontab(hour=18, minute=30) with "
            "app.conf.timezone set to the place's zone, or compute the day's time in a "
            "task and send the work with apply_async(eta=...)."
        )


# -- conversion and storage ----------------------------------------------------------


def to_schedule(value: Any) -> BaseSchedule:
    """Turn what a beat entry's ``schedule`` may hold into a schedule object.

    Accepts a liteq schedule (returned as is), a number of seconds, a ``timedelta``,
    and Celery's own ``schedule``/``crontab`` objects (converted by their fields).

    Raises:
        TypeError: ``value`` is none of those.
        ValueError: The interval is not more than zero (or a Celery crontab is invalid).

    Example:
        >>> to_schedule(30)
        <freq: 30.00 seconds>
        >>> to_schedule(timedelta(hours=1))
        <freq: 1.00 hour>
    """
    if isinstance(value, BaseSchedule):
        return value
    if _is_interval(value):
        return schedule(_interval(value))
    if all(hasattr(value, f"_orig_{name}") for name in FIELDS):  # celery.schedules.crontab
        return crontab(**{name: getattr(value, f"_orig_{name}") for name in FIELDS})
    if isinstance(getattr(value, "run_every", None), timedelta):  # celery.schedules.schedule
        return schedule(value.run_every, relative=bool(getattr(value, "relative", False)))
    raise TypeError("a periodic schedule must be a number of seconds, a timedelta, a schedule "
                    f"or a crontab, got {type(value).__name__}: {value!r}")


_DICT_KEYS = {
    "interval": {"type", "seconds"},
    "crontab": {"type", "tz", *FIELDS},
}


def from_dict(data: Mapping[str, Any]) -> BaseSchedule:
    """Rebuild a schedule from :meth:`BaseSchedule.to_dict`'s data.

    A crontab's missing fields default to ``"*"`` and its zone to UTC.

    Raises:
        ValueError: Unknown ``type``, unknown keys, or invalid values.
        TypeError: ``data`` is not a mapping.

    Example:
        >>> from_dict({"type": "crontab", "minute": "0", "hour": "*/3", "tz": "UTC"})
        <crontab: 0 */3 * * * (m/h/dM/MY/d)>
        >>> from_dict(schedule(10).to_dict()) == schedule(10)
        True
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"a stored schedule must be a mapping, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in _DICT_KEYS:
        raise ValueError(f"unknown schedule type {kind!r} (expected 'interval' or 'crontab')")
    unknown = set(data) - _DICT_KEYS[kind]
    if unknown:
        raise ValueError(f"unknown keys for a stored {kind}: {', '.join(sorted(unknown))}")
    if kind == "interval":
        if "seconds" not in data:
            raise ValueError("a stored interval needs 'seconds'")
        return schedule(data["seconds"])
    return crontab(**{name: data.get(name, "*") for name in FIELDS}, tz=data.get("tz"))


__all__ = [
    "UTC",
    "BaseSchedule",
    "crontab",
    "from_dict",
    "schedstate",
    "schedule",
    "solar",
    "to_schedule",
]
