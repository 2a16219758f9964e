"""Property tests for ``liteq.schedules``.

* ``crontab.next_after`` agrees with croniter (in UTC exactly; in DST zones except where
  croniter fires the second occurrence of a repeated wall time, which liteq does not);
* it agrees with a brute-force reference written from the documented rule, not from
  the implementation: a matching wall minute fires at the first instant the zone's
  clock reaches it;
* it is strictly after ``t``, monotone in ``t``, and really the *first* fire time;
* the field parser accepts the grammar (checked against a reference expansion built
  from the same random structure) and rejects what is outside it with ValueError.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from liteq.schedules import crontab, from_dict, schedule

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST moves the clock by 30 minutes

RANGES = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_week": (0, 6),
    "day_of_month": (1, 31),
    "month_of_year": (1, 12),
}
CRON_ORDER = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
               "september", "october", "november", "december")

Fields = dict[str, frozenset[int]]


def utc(moment: datetime) -> datetime:
    """Compare instants in UTC: Python compares datetimes of one zone by wall time, and
    never finds a datetime in a repeated hour equal to one of another zone."""
    return moment.astimezone(UTC)


# -- strategies: schedules and instants ----------------------------------------------


def _subset(name: str, max_size: int) -> st.SearchStrategy[frozenset[int]]:
    low, high = RANGES[name]
    every = st.just(frozenset(range(low, high + 1)))
    some = st.frozensets(st.integers(low, high), min_size=1, max_size=max_size)
    return st.one_of(every, some)


@st.composite
def field_sets(draw: st.DrawFn) -> Fields:
    """Random fields, biased so that fire times come often enough to search for."""
    fields = {
        "minute": draw(_subset("minute", 6)),
        # hours around 02:00, where the DST transitions of the zones below happen
        "hour": draw(st.one_of(_subset("hour", 8), st.frozensets(st.integers(0, 4),
                                                                  min_size=1))),
        "day_of_week": draw(_subset("day_of_week", 6)),
        "day_of_month": draw(_subset("day_of_month", 12)),
        "month_of_year": draw(_subset("month_of_year", 12)),
    }
    assume(any(day <= MONTH_DAYS[month - 1]
               for month in fields["month_of_year"] for day in fields["day_of_month"]))
    return fields


def build(fields: Fields, tz: tzinfo) -> crontab:
    return crontab(fields["minute"], fields["hour"], fields["day_of_week"],
                   fields["day_of_month"], fields["month_of_year"], tz=tz)


def cron_expression(fields: Fields) -> str:
    def text(name: str) -> str:
        low, high = RANGES[name]
        values = fields[name]
        return "*" if len(values) == high - low + 1 else ",".join(map(str, sorted(values)))

    return " ".join(text(name) for name in CRON_ORDER)


def _transitions(tz: tzinfo, first_year: int, last_year: int) -> list[datetime]:
    """The UTC instants at which ``tz`` changes its offset, found by scanning."""
    found = []
    day = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    offset = day.astimezone(tz).utcoffset()
    while day < end:
        following = day + timedelta(days=1)
        if following.astimezone(tz).utcoffset() != offset:
            instant = day
            while instant.astimezone(tz).utcoffset() == offset:
                instant += timedelta(minutes=1)
            found.append(instant)
            offset = instant.astimezone(tz).utcoffset()
        day = following
    return found


TRANSITIONS: dict[tzinfo, list[datetime]] = {
    zone: _transitions(zone, 2000, 2037) for zone in (BERLIN, NEW_YORK, LORD_HOWE)
}


@st.composite
def instants(draw: st.DrawFn, zone: tzinfo) -> datetime:
    """An aware datetime, often within days of one of the zone's DST transitions.

    It is given in UTC or in the zone at random: the zone of ``t`` must not matter.
    """
    if zone is UTC or draw(st.booleans()):
        naive = draw(st.datetimes(datetime(2000, 1, 1), datetime(2037, 12, 31)))
        moment = naive.replace(tzinfo=UTC)
    else:
        transition = draw(st.sampled_from(TRANSITIONS[zone]))
        offset = draw(st.one_of(st.integers(-3 * 86400, 86400), st.integers(-3 * 3600, 3600)))
        microseconds = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
        moment = transition + timedelta(seconds=offset, microseconds=microseconds)
    return moment.astimezone(draw(st.sampled_from([UTC, zone])))


DST_ZONES = st.sampled_from([UTC, BERLIN, NEW_YORK, LORD_HOWE])


# -- (1) croniter --------------------------------------------------------------------


def _second_occurrence(moment: datetime, tz: tzinfo) -> bool:
    """True when ``moment``'s wall time happened before, an hour (or so) earlier."""
    first = moment.replace(tzinfo=None).replace(tzinfo=tz, fold=0)
    return first.utcoffset() != moment.utcoffset()


def croniter_next(fields: Fields, tz: tzinfo, t: datetime) -> datetime:
    """croniter's next time, passing over the repeats it fires in a fall-back hour."""
    times = croniter(cron_expression(fields), t.astimezone(tz), ret_type=datetime,
                     day_or=False)
    fire: datetime = times.get_next(datetime)
    while _second_occurrence(fire, tz):
        fire = times.get_next(datetime)
    return fire


@settings(max_examples=300, deadline=None)
@given(data=st.data(), fields=field_sets(), zone=DST_ZONES)
def test_next_after_agrees_with_croniter(data: st.DataObject, fields: Fields,
                                         zone: tzinfo) -> None:
    t = data.draw(instants(zone))
    assert utc(build(fields, zone).next_after(t)) == utc(croniter_next(fields, zone, t))


# -- (2) brute force -----------------------------------------------------------------

REFERENCE_DAYS = 9 * 366  # long enough for a February 29 schedule


def first_reaching(wall: datetime, tz: tzinfo) -> datetime:
    """The first instant at which the zone's clock shows ``wall`` or later.

    Steps through instants a minute at a time from well before ``wall`` (no zone is
    ahead of UTC by more than 14 hours), so it relies on nothing but UTC -> local.
    """
    instant = (wall - timedelta(hours=15)).replace(tzinfo=UTC)
    while instant.astimezone(tz).replace(tzinfo=None) < wall:
        instant += timedelta(minutes=1)
    return instant


def reference_next(fields: Fields, tz: tzinfo, t: datetime) -> datetime | None:
    """Brute force over the zone's wall clock, from t's wall time forward.

    The documented rule: a matching wall minute fires at the first instant the clock
    reaches it; one that never shows (a spring-forward gap) fires when the gap ends if
    the hours are named, and not at all when the hour field is ``*``.
    """
    start = t.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    every_hour = len(fields["hour"]) == 24
    day = start.date()
    for _ in range(REFERENCE_DAYS):
        if (day.month in fields["month_of_year"] and day.day in fields["day_of_month"]
                and day.isoweekday() % 7 in fields["day_of_week"]):
            for hour in sorted(fields["hour"]):
                for minute in sorted(fields["minute"]):
                    wall = datetime.combine(day, time(hour, minute))
                    if wall < start:
                        continue
                    fire = first_reaching(wall, tz)
                    shows = fire.astimezone(tz).replace(tzinfo=None) == wall
                    if (shows or not every_hour) and fire > t:
                        return fire
        day += timedelta(days=1)
    return None


@settings(max_examples=200, deadline=None)
@given(data=st.data(), fields=field_sets(), zone=DST_ZONES)
def test_next_after_agrees_with_brute_force(data: st.DataObject, fields: Fields,
                                            zone: tzinfo) -> None:
    t = data.draw(instants(zone))
    expected = reference_next(fields, zone, t)
    assume(expected is not None)  # only a Feb 29 + weekday schedule gets this far
    assert utc(build(fields, zone).next_after(t)) == expected


@st.composite
def daily_fields(draw: st.DrawFn) -> Fields:
    """Every day, at hours near the transitions: the schedules DST gets in the way of."""
    every_day = {name: frozenset(range(low, high + 1))
                 for name, (low, high) in RANGES.items() if name not in ("minute", "hour")}
    hours = st.one_of(_subset("hour", 24), st.frozensets(st.integers(0, 4), min_size=1))
    return {"minute": draw(_subset("minute", 6)), "hour": draw(hours), **every_day}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), fields=daily_fields(),
       zone=st.sampled_from([BERLIN, NEW_YORK, LORD_HOWE]))
def test_dst_transitions_agree_with_both_references(data: st.DataObject, fields: Fields,
                                                    zone: ZoneInfo) -> None:
    transition = data.draw(st.sampled_from(TRANSITIONS[zone]))
    t = transition + timedelta(seconds=data.draw(st.integers(-2 * 3600, 2 * 3600)))
    fire = utc(build(fields, zone).next_after(t))
    assert fire == reference_next(fields, zone, t)
    assert fire == utc(croniter_next(fields, zone, t))


def test_reference_sees_the_documented_dst_cases() -> None:
    """The brute force itself encodes the rule the unit tests spell out."""
    daily = {**{name: frozenset(range(lo, hi + 1)) for name, (lo, hi) in RANGES.items()},
             "minute": frozenset({30}), "hour": frozenset({2})}
    spring = reference_next(daily, BERLIN, datetime(2024, 3, 31, 0, 0, tzinfo=UTC))
    assert spring == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)  # 03:00 CEST
    fall = reference_next(daily, BERLIN, datetime(2024, 10, 26, 12, 0, tzinfo=UTC))
    assert fall == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST, first pass
    hourly = {**daily, "hour": frozenset(range(24))}
    skipped = reference_next(hourly, BERLIN, datetime(2024, 3, 31, 0, 45, tzinfo=UTC))
    assert skipped == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 CEST


# -- (3) order -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.data(), fields=field_sets(), zone=DST_ZONES,
       gap=st.timedeltas(timedelta(0), timedelta(days=3)))
def test_next_after_is_after_t_monotone_and_first(data: st.DataObject, fields: Fields,
                                                  zone: tzinfo, gap: timedelta) -> None:
    cron = build(fields, zone)
    t = utc(data.draw(instants(zone)))
    later = t + gap
    fire, later_fire = utc(cron.next_after(t)), utc(cron.next_after(later))
    assert fire > t
    assert later_fire > later
    assert fire <= later_fire
    # fire is the first fire time after t: from anywhere in [t, fire) it comes next
    assert utc(cron.next_after(fire - timedelta(microseconds=1))) == fire
    assert utc(cron.next_after(t + (fire - t) / 2)) == fire
    assert utc(cron.next_after(fire.astimezone(zone))) > fire


@settings(max_examples=200)
@given(seconds=st.floats(0.001, 10 * 365 * 86400), zone=DST_ZONES, data=st.data())
def test_interval_next_after_adds_elapsed_time(seconds: float, zone: tzinfo,
                                               data: st.DataObject) -> None:
    every = schedule(seconds)
    t = data.draw(instants(zone))
    fire = every.next_after(t)
    assert fire.tzinfo is UTC
    assert fire > utc(t)
    assert fire - utc(t) == every.run_every


# -- (4) the field grammar -----------------------------------------------------------


def walk(start: int, end: int, low: int, high: int) -> list[int]:
    """start, start + 1, ... end, going round from high to low."""
    values = [start]
    while values[-1] != end:
        values.append(low if values[-1] == high else values[-1] + 1)
    return values


def reference_run(name: str, start: int, end: int) -> list[int]:
    """What ``start-end`` stands for, before any step: Celery's wrap-around ranges, and
    in day_of_week 7 as the Sunday that starts ("7-2") or ends ("5-7") the week."""
    low, high = RANGES[name]
    if name == "day_of_week":
        if start == 7:
            start, end = 0, 0 if end == 7 else end
        if end == 7:
            return [*range(start, 7), 0]
    return walk(start, end, low, high)


def _name_text(full: str, draw: st.DrawFn) -> str:
    size = draw(st.integers(3, len(full)))
    casing: Callable[[str], str] = draw(st.sampled_from([str.lower, str.upper, str.title]))
    return casing(full[:size])


@st.composite
def value_text(draw: st.DrawFn, name: str) -> tuple[str, int]:
    """A number of the field, as digits or (day of week, month) as a name."""
    low, high = RANGES[name]
    top = 7 if name == "day_of_week" else high
    value = draw(st.integers(low, top))
    names = {"day_of_week": DAY_NAMES, "month_of_year": MONTH_NAMES}.get(name)
    if names and value <= high and draw(st.booleans()):
        return _name_text(names[value - low], draw), value
    return draw(st.sampled_from([str(value), f"{value:02d}"])), value


@st.composite
def item(draw: st.DrawFn, name: str) -> tuple[str, set[int]]:
    """One list item of the grammar, with the set it stands for."""
    low, high = RANGES[name]
    kind = draw(st.sampled_from(["star", "number", "range", "from"]))
    steps = st.integers(1, 70)
    step = {"number": None, "from": draw(steps)}.get(kind, draw(st.one_of(st.none(), steps)))
    suffix = "" if step is None else f"/{step}"
    if kind == "star":
        text, run = "*", list(range(low, high + 1))
    elif kind == "range":
        (first, a), (last, b) = draw(value_text(name)), draw(value_text(name))
        text, run = f"{first}-{last}", reference_run(name, a, b)
    elif kind == "from":  # "N/S" means N-high/S
        text, a = draw(value_text(name))
        run = reference_run(name, a, high)
    else:
        text, a = draw(value_text(name))
        run = [a]
    values = run[:: step or 1]
    spaces = draw(st.sampled_from(["", " "]))
    if name == "day_of_week":
        values = [0 if value == 7 else value for value in values]  # 7 is Sunday too
    return f"{spaces}{text}{suffix}{spaces}", set(values)


@st.composite
def field_text(draw: st.DrawFn, name: str) -> tuple[str, frozenset[int]]:
    items = draw(st.lists(item(name), min_size=1, max_size=4))
    return ",".join(text for text, _ in items), frozenset().union(*(v for _, v in items))


def parse(name: str, spec: Any) -> frozenset[int]:
    kwargs: dict[str, Any] = {name: spec}
    result: frozenset[int] = getattr(crontab(**kwargs), name)
    return result


@settings(max_examples=400)
@given(data=st.data(), name=st.sampled_from(list(RANGES)))
def test_parser_accepts_the_grammar(data: st.DataObject, name: str) -> None:
    text, expected = data.draw(field_text(name))
    assert parse(name, text) == expected
    # the same values as ints, a list of strings, and stored text all mean the same
    assert parse(name, set(expected)) == expected
    assert parse(name, text.split(",")) == expected
    stored = crontab(**{name: text}).to_dict()  # type: ignore[arg-type]
    assert parse(name, stored[name]) == expected


def _invalid_items(name: str) -> st.SearchStrategy[str]:
    low, high = RANGES[name]
    top = 7 if name == "day_of_week" else high
    too_big = st.integers(top + 1, top + 1000).map(str)
    too_small = st.integers(-100, low - 1).map(str)
    letters = st.text(string.ascii_lowercase, min_size=1, max_size=8)
    known = (DAY_NAMES if name == "day_of_week" else MONTH_NAMES
             if name == "month_of_year" else ())
    unknown_name = letters.filter(
        lambda word: len(word) < 3 or not any(full.startswith(word) for full in known))
    zero_step = st.sampled_from(["*/0", f"{low}-{high}/0", f"{low}/0", "*/00"])
    garbage = st.sampled_from(["", " ", "*-5", "5-", "-", "/5", "*/", "1-2-3", "5//2",
                               "1-5/2/3", "L", "?", "#", "1.5", "5 5", "*/-1", "**", "1-*",
                               "*/a", "1-5/", "0x1", "+5", "½", "٣"])
    return st.one_of(too_big, too_small, unknown_name, zero_step, garbage)


@settings(max_examples=300)
@given(data=st.data(), name=st.sampled_from(list(RANGES)))
def test_parser_rejects_what_is_outside_the_grammar(data: st.DataObject, name: str) -> None:
    bad = data.draw(_invalid_items(name))
    good = [text for text, _ in data.draw(st.lists(item(name), max_size=2))]
    position = data.draw(st.integers(0, len(good)))
    spec = ",".join([*good[:position], bad, *good[position:]])
    with pytest.raises(ValueError, match=name) as caught:
        parse(name, spec)
    assert repr(spec) in str(caught.value)


# -- storage -------------------------------------------------------------------------


@settings(max_examples=200)
@given(data=st.data(), zone=st.sampled_from([UTC, BERLIN, NEW_YORK, "Asia/Shanghai"]))
def test_crontab_round_trips_through_json(data: st.DataObject, zone: Any) -> None:
    specs: dict[str, Any] = {name: data.draw(field_text(name))[0] for name in RANGES}
    try:
        cron = crontab(**specs, tz=zone)
    except ValueError:  # the days never occur (day 31 of February...)
        assume(False)
    stored = json.loads(json.dumps(cron.to_dict()))
    rebuilt = from_dict(stored)
    assert rebuilt == cron
    assert hash(rebuilt) == hash(cron)
    assert repr(rebuilt) == repr(cron)


@settings(max_examples=300)
@given(every=st.timedeltas(timedelta(microseconds=1), timedelta(days=3650)))
def test_interval_round_trips_through_json(every: timedelta) -> None:
    stored = json.loads(json.dumps(schedule(every).to_dict()))
    rebuilt = from_dict(stored)
    assert isinstance(rebuilt, schedule)
    assert rebuilt == schedule(every)
    assert rebuilt.run_every == every


@settings(max_examples=100, deadline=None)
@given(fields=field_sets(), day=st.dates(date(2001, 1, 1), date(2036, 12, 31)))
def test_crontab_fires_only_on_matching_minutes(fields: Fields, day: date) -> None:
    """In UTC, every fire time has its fields in the sets, at second 0."""
    cron = build(fields, UTC)
    fire = datetime.combine(day, time(), tzinfo=UTC)
    for _ in range(5):
        fire = cron.next_after(fire)
        assert (fire.second, fire.microsecond) == (0, 0)
        assert fire.minute in fields["minute"]
        assert fire.hour in fields["hour"]
        assert fire.day in fields["day_of_month"]
        assert fire.month in fields["month_of_year"]
        assert fire.isoweekday() % 7 in fields["day_of_week"]
