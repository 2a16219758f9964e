"""Unit tests for ``liteq.schedules``: Celery's documented crontabs, bad input, Celery's
``is_due``/``remaining_estimate``, DST transitions, storage, conversion and repr.

Datetimes are compared in UTC throughout: Python compares two datetimes of one zone by
wall time, and never finds a datetime in a repeated hour equal to one of another zone.
"""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from liteq.schedules import (
    BaseSchedule,
    crontab,
    from_dict,
    schedstate,
    schedule,
    to_schedule,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")

#: Wednesday 15 May 2024, 10:07:30 UTC: the "now" of the documented examples.
WEDNESDAY = datetime(2024, 5, 15, 10, 7, 30, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def at(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz, fold=fold)


def fires(cron: BaseSchedule, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``start``, in UTC."""
    times = []
    for _ in range(count):
        start = cron.next_after(start)
        times.append(start.astimezone(UTC))
    return times


def local(times: list[datetime], tz: ZoneInfo) -> list[str]:
    return [moment.astimezone(tz).isoformat() for moment in times]


# -- Celery's documented examples ----------------------------------------------------

CELERY_EXAMPLES = [
    # (the crontab, its next two fire times after WEDNESDAY)
    (crontab(), [utc(2024, 5, 15, 10, 8), utc(2024, 5, 15, 10, 9)]),
    (crontab(minute=0, hour=0), [utc(2024, 5, 16, 0, 0), utc(2024, 5, 17, 0, 0)]),
    (crontab(minute=0, hour="*/3"), [utc(2024, 5, 15, 12, 0), utc(2024, 5, 15, 15, 0)]),
    (crontab(minute=0, hour="0,3,6,9,12,15,18,21"),
     [utc(2024, 5, 15, 12, 0), utc(2024, 5, 15, 15, 0)]),
    (crontab(minute="*/15"), [utc(2024, 5, 15, 10, 15), utc(2024, 5, 15, 10, 30)]),
    # every minute on Sundays
    (crontab(day_of_week="sunday"), [utc(2024, 5, 19, 0, 0), utc(2024, 5, 19, 0, 1)]),
    (crontab(minute="*", hour="*", day_of_week="sun"),
     [utc(2024, 5, 19, 0, 0), utc(2024, 5, 19, 0, 1)]),
    # every ten minutes, at 3am, 5pm and 10pm on Thursdays and Fridays
    (crontab(minute="*/10", hour="3,17,22", day_of_week="thu,fri"),
     [utc(2024, 5, 16, 3, 0), utc(2024, 5, 16, 3, 10)]),
    # every even hour and every hour divisible by three: not at 11
    (crontab(minute=0, hour="*/2,*/3"), [utc(2024, 5, 15, 12, 0), utc(2024, 5, 15, 14, 0)]),
    # hours divisible by five
    (crontab(minute=0, hour="*/5"), [utc(2024, 5, 15, 15, 0), utc(2024, 5, 15, 20, 0)]),
    # every hour divisible by three, and every hour in office hours (8-17)
    (crontab(minute=0, hour="*/3,8-17"), [utc(2024, 5, 15, 11, 0), utc(2024, 5, 15, 12, 0)]),
    # the second day of every month
    (crontab(0, 0, day_of_month="2"), [utc(2024, 6, 2, 0, 0), utc(2024, 7, 2, 0, 0)]),
    # every even-numbered day
    (crontab(0, 0, day_of_month="2-30/2"), [utc(2024, 5, 16, 0, 0), utc(2024, 5, 18, 0, 0)]),
    # the first and third weeks of the month
    (crontab(0, 0, day_of_month="1-7,15-21"),
     [utc(2024, 5, 16, 0, 0), utc(2024, 5, 17, 0, 0)]),
    # on the eleventh of May every year
    (crontab(0, 0, day_of_month="11", month_of_year="5"),
     [utc(2025, 5, 11, 0, 0), utc(2026, 5, 11, 0, 0)]),
    # every day in the first month of every quarter
    (crontab(0, 0, month_of_year="*/3"), [utc(2024, 7, 1, 0, 0), utc(2024, 7, 2, 0, 0)]),
]


@pytest.mark.parametrize(("cron", "expected"), CELERY_EXAMPLES, ids=repr)
def test_celerys_documented_examples(cron: crontab, expected: list[datetime]) -> None:
    assert fires(cron, WEDNESDAY, 2) == expected


def test_documented_examples_expand_to_the_documented_sets() -> None:
    assert crontab(minute=0, hour="*/3").hour == {0, 3, 6, 9, 12, 15, 18, 21}
    assert crontab(minute=0, hour="*/3") == crontab(minute=0, hour="0,3,6,9,12,15,18,21")
    assert crontab(minute=0, hour="*/2,*/3").hour == set(range(24)) - {
        1, 5, 7, 11, 13, 17, 19, 23}
    assert crontab(minute=0, hour="*/5").hour == {0, 5, 10, 15, 20}
    assert crontab(minute=0, hour="*/3,8-17").hour == {0, 3, 6, 8, 9, 10, 11, 12, 13, 14,
                                                       15, 16, 17, 18, 21}
    assert crontab(day_of_month="2-30/2").day_of_month == set(range(2, 31, 2))
    assert crontab(month_of_year="*/3").month_of_year == {1, 4, 7, 10}
    assert crontab(day_of_week="thu,fri").day_of_week == {4, 5}
    assert crontab(day_of_week="sunday") == crontab(minute="*", hour="*", day_of_week="sun")


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    """Celery's rule (cron's is either): the first and third Monday of each month."""
    cron = crontab(0, 0, day_of_week=1, day_of_month="1-7,15-21")
    assert fires(cron, WEDNESDAY, 3) == [utc(2024, 5, 20), utc(2024, 6, 3), utc(2024, 6, 17)]


def test_rare_dates() -> None:
    assert fires(crontab(0, 0, day_of_month=29, month_of_year=2), utc(2024, 3, 1), 2) == [
        utc(2028, 2, 29), utc(2032, 2, 29)]
    assert crontab(0, 0, day_of_month=31).next_after(utc(2024, 4, 1)) == utc(2024, 5, 31)
    # February 29 on a Monday: 2044 is the next one
    leap_monday = crontab(0, 0, day_of_week="mon", day_of_month=29, month_of_year="feb")
    assert leap_monday.next_after(utc(2024, 3, 1)) == utc(2044, 2, 29)


def test_next_after_is_strictly_after_and_ignores_seconds() -> None:
    cron = crontab(minute="*/15")
    assert cron.next_after(utc(2024, 5, 15, 10, 15)) == utc(2024, 5, 15, 10, 30)
    assert cron.next_after(utc(2024, 5, 15, 10, 14, 59, 999999)) == utc(2024, 5, 15, 10, 15)
    fire = cron.next_after(utc(2024, 5, 15, 10, 0, 1))
    assert fire == utc(2024, 5, 15, 10, 15)
    assert fire.tzinfo is UTC


def test_next_after_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        crontab().next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        schedule(5).next_after(datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="datetime"):
        crontab().next_after("2024-01-01")  # type: ignore[arg-type]


# -- the field forms ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "spec", "expected"),
    [
        ("minute", 5, {5}),
        ("minute", "5", {5}),
        ("minute", "05", {5}),
        ("minute", "*/15", {0, 15, 30, 45}),
        ("minute", "0,30", {0, 30}),
        ("minute", " 0 , 30 ", {0, 30}),
        ("minute", {0, 30}, {0, 30}),
        ("minute", [30, 0, 30], {0, 30}),
        ("minute", range(0, 60, 15), {0, 15, 30, 45}),
        ("minute", "5/15", {5, 20, 35, 50}),
        ("minute", "50-10/5", {50, 55, 0, 5, 10}),
        ("minute", None, set(range(60))),
        ("hour", "1-5", {1, 2, 3, 4, 5}),
        ("hour", "22-2", {22, 23, 0, 1, 2}),
        ("hour", "22-2/2", {22, 0, 2}),  # Celery steps through the wrapped run
        ("hour", "*/7", {0, 7, 14, 21}),
        ("hour", "*/100", {0}),
        ("hour", ["1-3", 9], {1, 2, 3, 9}),
        ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
        ("day_of_week", "fri-mon", {5, 6, 0, 1}),
        ("day_of_week", "sat,sun", {6, 0}),
        ("day_of_week", "sun", {0}),
        ("day_of_week", "Sunday", {0}),
        ("day_of_week", "SUN", {0}),
        ("day_of_week", "thurs", {4}),
        ("day_of_week", "tues", {2}),
        ("day_of_week", 0, {0}),
        ("day_of_week", 7, {0}),
        ("day_of_week", "7", {0}),
        ("day_of_week", "0-7", set(range(7))),
        ("day_of_week", "5-7", {5, 6, 0}),
        ("day_of_week", "7-2", {0, 1, 2}),
        ("day_of_week", "*/2", {0, 2, 4, 6}),
        ("day_of_week", "*/3", {0, 3, 6}),
        ("day_of_week", ["mon", "wed"], {1, 3}),
        ("day_of_week", {0, 7}, {0}),
        ("day_of_month", "*/3", set(range(1, 32, 3))),
        ("day_of_month", "28-3", {28, 29, 30, 31, 1, 2, 3}),
        ("month_of_year", "2-12/2", {2, 4, 6, 8, 10, 12}),
        ("month_of_year", "jan-mar", {1, 2, 3}),
        ("month_of_year", "nov-feb", {11, 12, 1, 2}),
        ("month_of_year", "December", {12}),
    ],
)
def test_field_forms(field: str, spec: Any, expected: set[int]) -> None:
    assert getattr(crontab(**{field: spec}), field) == expected


def test_fields_are_frozensets() -> None:
    cron = crontab(minute="*/30", hour=7)
    assert isinstance(cron.minute, frozenset)
    assert (cron.minute, cron.hour) == (frozenset({0, 30}), frozenset({7}))
    assert cron.day_of_week == set(range(7))
    assert cron.day_of_month == set(range(1, 32))
    assert cron.month_of_year == set(range(1, 13))


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"minute": 60}, "minute", "60"),
        ({"minute": -1}, "minute", "-1"),
        ({"minute": "-5"}, "minute", "'-5'"),
        ({"minute": "1-60"}, "minute", "'1-60'"),
        ({"hour": 24}, "hour", "24"),
        ({"hour": "*/0"}, "hour", "'*/0'"),
        ({"hour": "1-5/0"}, "hour", "'1-5/0'"),
        ({"hour": "*/"}, "hour", "'*/'"),
        ({"hour": "1-"}, "hour", "'1-'"),
        ({"hour": "*-5"}, "hour", "'*-5'"),
        ({"hour": "1-5/2/3"}, "hour", "'1-5/2/3'"),
        ({"hour": "3,,4"}, "hour", "'3,,4'"),
        ({"hour": ""}, "hour", "''"),
        ({"hour": "L"}, "hour", "'L'"),
        ({"hour": "1.5"}, "hour", "'1.5'"),
        ({"hour": "mon"}, "hour", "'mon'"),
        ({"day_of_week": "funday"}, "day_of_week", "'funday'"),
        ({"day_of_week": "su"}, "day_of_week", "'su'"),
        ({"day_of_week": 8}, "day_of_week", "8"),
        ({"day_of_week": "mon-funday"}, "day_of_week", "'mon-funday'"),
        ({"day_of_month": 0}, "day_of_month", "0"),
        ({"day_of_month": "32"}, "day_of_month", "'32'"),
        ({"month_of_year": 13}, "month_of_year", "13"),
        ({"month_of_year": "0"}, "month_of_year", "'0'"),
        ({"month_of_year": "smarch"}, "month_of_year", "'smarch'"),
        ({"minute": []}, "minute", "[]"),
        ({"minute": [0, 60]}, "minute", "60"),
        ({"minute": ["0", "x"]}, "minute", "'x'"),
    ],
)
def test_bad_fields_raise_value_error_naming_field_and_value(
    kwargs: dict[str, Any], field: str, shown: str
) -> None:
    with pytest.raises(ValueError) as caught:
        crontab(**kwargs)
    message = str(caught.value)
    assert field in message
    assert shown in message


def test_messages_read_well() -> None:
    with pytest.raises(ValueError, match=r"invalid crontab minute 60: 60 is out of range 0-59"):
        crontab(minute=60)
    with pytest.raises(ValueError, match=r"day_of_week 'funday': unknown name 'funday' "
                                         r"\(use sun-sat or 0-7\)"):
        crontab(day_of_week="funday")
    with pytest.raises(ValueError, match=r"hour '\*/0': step must be at least 1"):
        crontab(hour="*/0")
    with pytest.raises(ValueError, match="negative"):
        crontab(minute="-5")


@pytest.mark.parametrize("spec", [1.5, True, b"5", {"a": 1}, [1.5], [None], object()])
def test_fields_of_the_wrong_type_raise_type_error(spec: Any) -> None:
    with pytest.raises(TypeError, match="minute"):
        crontab(minute=spec)


def test_days_that_never_occur_are_refused() -> None:
    with pytest.raises(ValueError, match="never occurs"):
        crontab(day_of_month=30, month_of_year=2)
    with pytest.raises(ValueError, match="never occurs"):
        crontab(day_of_month=31, month_of_year="apr,jun,sep,nov")
    crontab(day_of_month="30,31", month_of_year="2,3")  # March 30 and 31 exist


# -- time zones and DST --------------------------------------------------------------


def test_crontab_runs_in_its_zone() -> None:
    seven = crontab(minute=0, hour=7, tz=SHANGHAI)
    assert seven.next_after(WEDNESDAY) == utc(2024, 5, 15, 23, 0)  # 07:00 on the 16th there
    assert seven == crontab(minute=0, hour=7, tz="Asia/Shanghai")
    assert seven != crontab(minute=0, hour=7)


def test_with_timezone_returns_a_copy() -> None:
    cron = crontab(minute=0, hour=7)
    moved = cron.with_timezone(SHANGHAI)
    assert moved == crontab(minute=0, hour=7, tz=SHANGHAI)
    assert cron.tz is UTC
    assert moved.tz is SHANGHAI
    assert moved.with_timezone("UTC") == cron
    assert repr(moved) == "<crontab: 0 7 * * * (m/h/dM/MY/d) Asia/Shanghai>"


@pytest.mark.parametrize("tz", [None, "UTC", "utc", UTC, ZoneInfo("UTC")])
def test_the_default_zone_is_utc(tz: Any) -> None:
    cron = crontab(hour=7, tz=tz)
    assert cron.tz is UTC
    assert cron == crontab(hour=7)
    assert cron.to_dict()["tz"] == "UTC"


def test_bad_zones() -> None:
    for name in ["Mars/Olympus_Mons", "", "../etc/passwd", "Europe"]:
        with pytest.raises(ValueError, match="unknown time zone"):
            crontab(tz=name)
    with pytest.raises(TypeError, match="ZoneInfo"):
        crontab(tz=timezone(timedelta(hours=8)))
    with open("/usr/share/zoneinfo/Europe/Berlin", "rb") as handle:
        nameless = ZoneInfo.from_file(handle)
    with pytest.raises(TypeError, match="ZoneInfo"):
        crontab(tz=nameless)


def test_berlin_spring_forward_fires_a_named_hour_when_the_gap_ends() -> None:
    # 31 March 2024: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day
    daily = crontab(minute=30, hour=2, tz=BERLIN)
    assert local(fires(daily, at(BERLIN, 2024, 3, 30, 12), 3), BERLIN) == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    # several missing times and 03:00 itself: one firing at 03:00
    two_and_three = crontab(minute="0,30", hour="2,3", tz=BERLIN)
    assert local(fires(two_and_three, at(BERLIN, 2024, 3, 31, 1, 0), 3), BERLIN) == [
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:30:00+02:00",
        "2024-04-01T02:00:00+02:00",
    ]


def test_berlin_spring_forward_skips_missing_times_of_an_every_hour_crontab() -> None:
    hourly = crontab(minute=5, tz=BERLIN)
    times = fires(hourly, at(BERLIN, 2024, 3, 31, 0, 30), 3)
    assert local(times, BERLIN) == [
        "2024-03-31T01:05:00+01:00",
        "2024-03-31T03:05:00+02:00",  # one hour after 01:05 CET
        "2024-03-31T04:05:00+02:00",
    ]
    assert times[1] - times[0] == timedelta(hours=1)
    every_minute = crontab(tz=BERLIN)
    assert local(fires(every_minute, at(BERLIN, 2024, 3, 31, 1, 58), 3), BERLIN) == [
        "2024-03-31T01:59:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:01:00+02:00",
    ]


def test_berlin_fall_back_fires_a_repeated_time_once() -> None:
    # 27 October 2024: 03:00 CEST goes back to 02:00 CET; 02:00-02:59 happens twice
    daily = crontab(minute=30, hour=2, tz=BERLIN)
    assert local(fires(daily, at(BERLIN, 2024, 10, 26, 12), 2), BERLIN) == [
        "2024-10-27T02:30:00+02:00",  # the first 02:30
        "2024-10-28T02:30:00+01:00",
    ]
    # asked during the second pass, the repeated 02:30 is not fired again
    second_pass = at(BERLIN, 2024, 10, 27, 2, 10, fold=1)
    assert local(fires(daily, second_pass, 1), BERLIN) == ["2024-10-28T02:30:00+01:00"]


def test_berlin_fall_back_pauses_a_frequent_crontab_for_the_repeated_hour() -> None:
    every_20 = crontab(minute="*/20", tz=BERLIN)
    times = fires(every_20, at(BERLIN, 2024, 10, 27, 1, 50), 5)
    assert local(times, BERLIN) == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:20:00+02:00",
        "2024-10-27T02:40:00+02:00",
        "2024-10-27T03:00:00+01:00",  # 80 minutes later: 02:00-02:40 CET are repeats
        "2024-10-27T03:20:00+01:00",
    ]
    assert times[3] - times[2] == timedelta(minutes=80)
    second_pass = at(BERLIN, 2024, 10, 27, 2, 10, fold=1)
    assert local(fires(every_20, second_pass, 1), BERLIN) == ["2024-10-27T03:00:00+01:00"]


def test_new_york_spring_forward_and_fall_back() -> None:
    # 10 March 2024: 02:00 EST -> 03:00 EDT; 3 November 2024: 02:00 EDT -> 01:00 EST
    spring = crontab(minute=30, hour=2, tz=NEW_YORK)
    assert local(fires(spring, at(NEW_YORK, 2024, 3, 9, 12), 2), NEW_YORK) == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
    ]
    fall = crontab(minute=30, hour=1, tz=NEW_YORK)
    times = fires(fall, at(NEW_YORK, 2024, 11, 2, 12), 2)
    assert local(times, NEW_YORK) == [
        "2024-11-03T01:30:00-04:00",  # the first 01:30, in EDT
        "2024-11-04T01:30:00-05:00",
    ]
    assert times[0] == utc(2024, 11, 3, 5, 30)


def test_t_may_be_given_in_any_zone() -> None:
    cron = crontab(minute=30, hour=2, tz=BERLIN)
    in_utc = utc(2024, 10, 27, 0, 10)  # 02:10 CEST, first pass
    expected = utc(2024, 10, 27, 0, 30)
    assert cron.next_after(in_utc) == expected
    assert cron.next_after(in_utc.astimezone(BERLIN)) == expected
    assert cron.next_after(in_utc.astimezone(NEW_YORK)) == expected


def test_intervals_ignore_dst() -> None:
    hourly = schedule(timedelta(hours=1))
    before = at(BERLIN, 2024, 3, 31, 1, 30)  # CET
    fire = hourly.next_after(before)
    assert fire == utc(2024, 3, 31, 1, 30)
    assert fire.astimezone(BERLIN).isoformat() == "2024-03-31T03:30:00+02:00"
    assert fire.tzinfo is UTC


# -- Celery's is_due and remaining_estimate ------------------------------------------


def test_interval_is_due() -> None:
    every = schedule(10)
    last = utc(2024, 5, 15, 12, 0, 0)
    assert every.remaining_estimate(last, now=last + timedelta(seconds=4)) == timedelta(
        seconds=6)
    assert every.is_due(last, now=last + timedelta(seconds=4)) == (False, 6.0)
    assert every.is_due(last, now=last + timedelta(seconds=10)) == (True, 10.0)
    late = every.is_due(last, now=last + timedelta(seconds=25))
    assert late == schedstate(is_due=True, next=10.0)
    assert (late.is_due, late.next) == (True, 10.0)
    assert every.remaining_estimate(last, now=last + timedelta(seconds=25)) == timedelta(
        seconds=-15)


def test_interval_reads_naive_datetimes_as_utc() -> None:
    every = schedule(timedelta(minutes=1))
    assert every.is_due(datetime(2024, 5, 15, 12, 0), now=utc(2024, 5, 15, 12, 0, 30)) == (
        False, 30.0)
    assert every.is_due(utc(2024, 5, 15, 12, 0), now=datetime(2024, 5, 15, 12, 1)) == (
        True, 60.0)


def test_crontab_is_due() -> None:
    seven = crontab(minute=0, hour=7)
    last = utc(2024, 5, 15, 7, 0)
    assert seven.is_due(last, now=utc(2024, 5, 15, 10, 0)) == (False, 21 * 3600.0)
    assert seven.remaining_estimate(last, now=utc(2024, 5, 15, 10, 0)) == timedelta(hours=21)
    # due five seconds late: check again at tomorrow's 07:00
    assert seven.is_due(last, now=utc(2024, 5, 16, 7, 0, 5)) == (True, 86395.0)
    # missed for days: due once, then tomorrow
    assert seven.is_due(last, now=utc(2024, 5, 20, 12, 0)) == (True, 19 * 3600.0)


def test_crontab_reads_naive_datetimes_in_its_zone() -> None:
    seven = crontab(minute=0, hour=7, tz=SHANGHAI)
    last = datetime(2024, 5, 15, 7, 0)  # 07:00 in Shanghai
    assert seven.is_due(last, now=utc(2024, 5, 15, 22, 59)) == (False, 60.0)
    assert seven.is_due(last, now=utc(2024, 5, 15, 23, 0)) == (True, 86400.0)
    assert seven.is_due(last, now=datetime(2024, 5, 16, 7, 0)) == (True, 86400.0)


def test_remaining_estimate_counts_elapsed_time_across_dst() -> None:
    three = crontab(minute=0, hour=3, tz=BERLIN)
    last = at(BERLIN, 2024, 3, 30, 3, 0)
    now = at(BERLIN, 2024, 3, 30, 12, 0)
    # 12:00 CET to 03:00 CEST is 14 hours, not the 15 the wall clock suggests
    assert three.remaining_estimate(last, now=now) == timedelta(hours=14)


def test_the_clock_comes_from_nowfun_or_the_wall() -> None:
    frozen = utc(2024, 5, 15, 10, 0, 30)
    every = schedule(60, nowfun=lambda: frozen)
    assert every.now() is frozen
    assert every.is_due(utc(2024, 5, 15, 10, 0)) == (False, 30.0)
    cron = crontab(minute="*/15", nowfun=lambda: frozen)
    assert cron.remaining_estimate(utc(2024, 5, 15, 10, 0)) == timedelta(minutes=14, seconds=30)
    before = datetime.now(UTC)
    now = schedule(1).now()
    assert before <= now <= datetime.now(UTC)
    assert now.tzinfo is not None
    assert schedule(1).is_due(now - timedelta(seconds=5)).is_due


# -- intervals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, timedelta(seconds=10)), (2.5, timedelta(seconds=2.5)),
     (timedelta(minutes=5), timedelta(minutes=5)), (1e-6, timedelta(microseconds=1))],
)
def test_schedule_run_every(value: Any, expected: timedelta) -> None:
    every = schedule(value)
    assert every.run_every == expected
    assert every.seconds == expected.total_seconds()
    assert schedule(run_every=value) == every


@pytest.mark.parametrize("value", [0, -1, timedelta(0), timedelta(seconds=-5),
                                   float("nan"), float("inf")])
def test_schedule_refuses_intervals_that_are_not_more_than_zero(value: Any) -> None:
    with pytest.raises(ValueError, match="interval"):
        schedule(value)


@pytest.mark.parametrize("value", ["10", None, True, [10]])
def test_schedule_refuses_what_is_not_a_duration(value: Any) -> None:
    with pytest.raises(TypeError, match="interval"):
        schedule(value)


def test_relative_schedules_are_refused_clearly() -> None:
    assert schedule(10, relative=False).relative is False
    with pytest.raises(ValueError, match="relative"):
        schedule(10, relative=True)


# -- equality, hashing, repr ---------------------------------------------------------


def test_equality_is_by_value() -> None:
    assert crontab(minute="0,30") == crontab(minute={0, 30}) == crontab(minute=[30, 0])
    assert crontab(minute="*/15") == crontab(minute=range(0, 60, 15))
    assert crontab(day_of_week="sun") == crontab(day_of_week=7) == crontab(day_of_week=0)
    assert crontab(day_of_week="mon-fri") == crontab(day_of_week="1-5")
    assert crontab(hour="*") == crontab(hour=range(24)) == crontab()
    assert crontab(hour=7) != crontab(hour=8)
    assert crontab(hour=7, tz=BERLIN) != crontab(hour=7)
    assert crontab() != schedule(60)
    assert crontab() != "* * * * *"
    assert schedule(10) == schedule(timedelta(seconds=10)) == timedelta(seconds=10)
    assert schedule(10) != schedule(11)
    assert schedule(10) != 10


def test_hashing_agrees_with_equality() -> None:
    entries = {crontab(minute="0,30"), crontab(minute={0, 30}), schedule(10),
               schedule(timedelta(seconds=10)), crontab(minute="0,30", tz=BERLIN)}
    assert len(entries) == 3
    assert hash(crontab(day_of_week="sun")) == hash(crontab(day_of_week=7))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (crontab(minute=0, hour=7, day_of_month=1), "<crontab: 0 7 1 * * (m/h/dM/MY/d)>"),
        (crontab(), "<crontab: * * * * * (m/h/dM/MY/d)>"),
        (crontab(minute="*/15"), "<crontab: */15 * * * * (m/h/dM/MY/d)>"),
        (crontab("*/10", "3,17,22", "thu,fri"),
         "<crontab: */10 3,17,22 * * thu,fri (m/h/dM/MY/d)>"),
        (crontab(minute={30, 0}, hour=range(8, 18)), "<crontab: 0,30 8-17 * * * (m/h/dM/MY/d)>"),
        (crontab(0, 0, day_of_month="11", month_of_year="5", tz=BERLIN),
         "<crontab: 0 0 11 5 * (m/h/dM/MY/d) Europe/Berlin>"),
        (schedule(10), "<freq: 10.00 seconds>"),
        (schedule(1), "<freq: 1.00 second>"),
        (schedule(60), "<freq: 1.00 minute>"),
        (schedule(timedelta(hours=2)), "<freq: 2.00 hours>"),
        (schedule(timedelta(days=1)), "<freq: 1.00 day>"),
        (schedule(0.001), "<freq: now>"),
    ],
)
def test_repr_reads_like_celerys(value: BaseSchedule, text: str) -> None:
    assert repr(value) == text


def test_schedules_pickle() -> None:
    for value in (crontab(minute="*/15", tz=BERLIN), schedule(10)):
        assert pickle.loads(pickle.dumps(value)) == value


# -- storage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        crontab(),
        crontab(minute="*/15", tz=BERLIN),
        crontab(0, 0, day_of_month="2-30/2"),
        crontab("*/10", "3,17,22", "thu,fri", tz="America/New_York"),
        crontab(minute={0, 30}, hour=range(0, 24, 6), day_of_week=7),
        crontab(0, 0, day_of_month="11", month_of_year="may"),
        schedule(10),
        schedule(0.25),
        schedule(timedelta(days=3, microseconds=7)),
    ],
    ids=repr,
)
def test_to_dict_round_trips_through_json(value: BaseSchedule) -> None:
    stored = json.dumps(value.to_dict())
    rebuilt = from_dict(json.loads(stored))
    assert rebuilt == value
    assert type(rebuilt) is type(value)
    assert repr(rebuilt) == repr(value)


def test_to_dict_keeps_the_fields_as_written() -> None:
    assert crontab(minute="*/15", tz="Europe/Berlin").to_dict() == {
        "type": "crontab", "minute": "*/15", "hour": "*", "day_of_week": "*",
        "day_of_month": "*", "month_of_year": "*", "tz": "Europe/Berlin"}
    stored = crontab(minute={30, 0}, hour=7, day_of_week=range(1, 6)).to_dict()
    assert (stored["minute"], stored["hour"], stored["day_of_week"]) == ("0,30", "7", "1-5")
    assert schedule(10).to_dict() == {"type": "interval", "seconds": 10.0}


def test_from_dict_fills_in_defaults() -> None:
    assert from_dict({"type": "crontab", "minute": "0"}) == crontab(minute=0)
    assert from_dict({"type": "crontab", "hour": 7, "tz": "Asia/Shanghai"}) == crontab(
        hour=7, tz=SHANGHAI)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"type": "solar"}, ValueError, "unknown schedule type 'solar'"),
        ({"seconds": 10}, ValueError, "unknown schedule type None"),
        ({"type": "interval"}, ValueError, "needs 'seconds'"),
        ({"type": "interval", "seconds": 10, "relative": True}, ValueError, "relative"),
        ({"type": "crontab", "minutes": "0"}, ValueError, "unknown keys .*minutes"),
        ({"type": "crontab", "minute": "61"}, ValueError, "minute '61'"),
        ({"type": "crontab", "tz": "Nowhere/City"}, ValueError, "unknown time zone"),
        ({"type": "interval", "seconds": 0}, ValueError, "more than zero"),
        ({"type": "interval", "seconds": "10"}, TypeError, "interval"),
        ([("type", "interval")], TypeError, "mapping"),
    ],
)
def test_from_dict_refuses_bad_data(data: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        from_dict(data)


# -- to_schedule ---------------------------------------------------------------------


def test_to_schedule_converts_numbers_and_timedeltas() -> None:
    assert to_schedule(10.0) == schedule(10)
    assert to_schedule(30) == schedule(timedelta(seconds=30))
    assert to_schedule(timedelta(hours=1)) == schedule(3600)
    cron = crontab(minute=0)
    every = schedule(5)
    assert to_schedule(cron) is cron
    assert to_schedule(every) is every


def test_to_schedule_converts_celerys_objects_by_their_fields() -> None:
    class CeleryCrontab:  # what celery.schedules.crontab keeps
        _orig_minute, _orig_hour, _orig_day_of_week = "*/15", 7, "mon-fri"
        _orig_day_of_month, _orig_month_of_year = "*", "*"

    class CelerySchedule:  # what celery.schedules.schedule keeps
        run_every = timedelta(seconds=30)
        relative = False

    assert to_schedule(CeleryCrontab()) == crontab("*/15", 7, "mon-fri")
    assert to_schedule(CelerySchedule()) == schedule(30)


@pytest.mark.parametrize(
    ("value", "error"),
    [("*/5 * * * *", TypeError), (None, TypeError), (True, TypeError), ([10], TypeError),
     (0, ValueError), (-10, ValueError), (float("nan"), ValueError),
     (timedelta(0), ValueError)],
)
def test_to_schedule_refuses_clearly(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"interval|schedule"):
        to_schedule(value)
