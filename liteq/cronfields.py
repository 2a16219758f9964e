"""Crontab fields in Celery's argument forms: parsing, validation, and their text.

Used by :class:`liteq.schedules.crontab`. A field is given as an int, a string (``"*"``,
``"*/15"``, ``"0,30"``, ``"1-5"``, ``"mon-fri"``, ``"22-2"`` wrapping past the top, ``"5/15"``)
or an iterable of those; it becomes the set of values it stands for. Invalid input
raises ``ValueError`` naming the field and the value. This module imports nothing from
liteq.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

#: What a crontab field may be given as: ``"*/15"``, ``7``, ``{0, 30}``, ``range(0, 60, 15)``.
CronSpec: TypeAlias = int | str | Iterable[int | str] | None


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july",
                "august", "september", "october", "november", "december")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

#: One comma-separated item: ``*``, ``N``, ``N-M``, each with an optional ``/STEP``.
_ITEM = re.compile(r"(\*|[0-9]+|[a-z]+)(?:-([0-9]+|[a-z]+))?(?:/([0-9]+))?")


@dataclass(frozen=True)
class _Field:
    """One crontab field: its range, its names, and Celery's day-of-week quirks."""

    name: str
    low: int
    high: int
    #: Full names (``sunday``...); any prefix of three letters or more is accepted.
    names: tuple[str, ...] = ()
    #: Day of week: 7 is accepted as another Sunday (0), as in cron.
    sunday_seven: bool = False

    @property
    def top(self) -> int:
        """The largest number accepted (7 for day of week, else ``high``)."""
        return self.high + 1 if self.sunday_seven else self.high

    def error(self, spec: Any, problem: str) -> ValueError:
        return ValueError(f"invalid crontab {self.name} {spec!r}: {problem}")

    def number(self, token: str, spec: Any) -> int:
        if token.isdigit():
            return self.check(int(token), spec)
        if not self.names:
            raise self.error(spec, f"names like {token!r} are not allowed here, use numbers")
        for index, full in enumerate(self.names):
            if len(token) >= 3 and full.startswith(token):
                return index + self.low
        hint = f"{self.names[0][:3]}-{self.names[-1][:3]}"
        raise self.error(spec, f"unknown name {token!r} (use {hint} or {self.low}-{self.top})")

    def check(self, value: int, spec: Any) -> int:
        if not self.low <= value <= self.top:
            raise self.error(spec, f"{value} is out of range {self.low}-{self.top}")
        return value

    def span(self, start: int, end: int) -> list[int]:
        """``start`` to ``end`` inclusive, wrapping past the top as Celery does."""
        if self.sunday_seven and start == 7:  # Sunday starting the week: "7-2" is sun-tue
            start, end = 0, end % 7
        if start <= end:
            return list(range(start, end + 1))
        return list(range(start, self.high + 1)) + list(range(self.low, end + 1))

    def parse(self, spec: str) -> frozenset[int]:
        """The values a field string stands for (``"*/15"`` -> {0, 15, 30, 45})."""
        values: set[int] = set()
        for item in spec.lower().split(","):
            item = item.strip()
            if not item:
                raise self.error(spec, "empty list item")
            match = _ITEM.fullmatch(item)
            if match is None and item.startswith("-"):
                raise self.error(spec, f"negative numbers are not allowed ({item!r})")
            if match is None:
                raise self.error(spec, f"cannot parse {item!r} (use *, N, N-M, */S, "
                                       f"N-M/S, N/S or a list)")
            values.update(self._item(spec, *match.groups()))
        return frozenset(values)

    def _item(self, spec: str, start: str, end: str | None, step: str | None) -> set[int]:
        stride = 1 if step is None else int(step)
        if stride < 1:
            raise self.error(spec, f"step must be at least 1, not {stride}")
        if start == "*":
            if end is not None:
                raise self.error(spec, "'*' cannot start a range")
            run = list(range(self.low, self.high + 1))
        elif end is not None:
            run = self.span(self.number(start, spec), self.number(end, spec))
        elif step is not None:  # "N/S": from N to the top in steps of S, as croniter reads it
            run = self.span(self.number(start, spec), self.high)
        else:
            run = [self.number(start, spec)]
        return {self.normalize(value) for value in run[::stride]}

    def normalize(self, value: int) -> int:
        return 0 if self.sunday_seven and value == 7 else value

    def expand(self, spec: Any) -> frozenset[int]:
        """Celery's cronspec forms (None, int, str, iterable) -> a set of values."""
        if spec is None:
            return self.parse("*")
        if isinstance(spec, str):
            return self.parse(spec)
        if _is_int(spec):
            return frozenset({self.normalize(self.check(int(spec), spec))})
        if isinstance(spec, Iterable) and not isinstance(spec, (bytes, Mapping)):
            items = list(spec)
            if not items:
                raise self.error(items, "no values given")
            for item in items:
                if not isinstance(item, str) and not _is_int(item):
                    raise TypeError(f"crontab {self.name}: items must be ints or strings, "
                                    f"got {type(item).__name__}: {item!r}")
            return frozenset().union(*(self.expand(item) for item in items))
        raise TypeError(f"crontab {self.name} must be an int, a str or an iterable of ints, "
                        f"got {type(spec).__name__}: {spec!r}")

    def text(self, values: frozenset[int]) -> str:
        """A compact cron string for ``values``: ``*``, or numbers and ranges."""
        if len(values) == self.high - self.low + 1:
            return "*"
        runs: list[list[int]] = []  # [first, last] of each run of consecutive values
        for value in sorted(values):
            if runs and value == runs[-1][1] + 1:
                runs[-1][1] = value
            else:
                runs.append([value, value])
        return ",".join(f"{a}-{b}" if b - a >= 2 else ",".join(map(str, range(a, b + 1)))
                        for a, b in runs)


#: The fields in Celery's argument order.
_FIELDS: dict[str, _Field] = {
    "minute": _Field("minute", 0, 59),
    "hour": _Field("hour", 0, 23),
    "day_of_week": _Field("day_of_week", 0, 6, _DAY_NAMES, sunday_seven=True),
    "day_of_month": _Field("day_of_month", 1, 31),
    "month_of_year": _Field("month_of_year", 1, 12, _MONTH_NAMES),
}

#: The order of cron's five fields, for croniter.
_CRON_ORDER = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def orig_text(spec: CronSpec, field: _Field, values: frozenset[int]) -> str:
    if spec is None:
        return "*"
    if isinstance(spec, str):
        return spec
    if isinstance(spec, numbers.Integral):
        return str(int(spec))
    return field.text(values)


FIELDS = _FIELDS
CRON_ORDER = _CRON_ORDER
MONTH_DAYS = _MONTH_DAYS

__all__ = ["CRON_ORDER", "FIELDS", "MONTH_DAYS", "CronSpec", "orig_text"]
