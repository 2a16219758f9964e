"""Rate limit strings, as Celery writes them: ``"10/s"``, ``"100/m"``, ``"5/h"``, ``10``.

Limits are global: every worker of the file (or the Redis) shares one token bucket per
task, kept in the broker, instead of one bucket per worker as in Celery. A bucket holds
one token (no bursts) and refills at the limit's rate.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\A\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*([smh]))?\s*\Z")


def parse_rate(value: Any) -> float | None:
    """Tokens per second for a rate limit; None (no limit) for None, 0 or ``"0"``.

    Raises:
        ValueError: not a number, nor ``"<number>/<s|m|h>"``.

    Example:
        >>> parse_rate("10/m"), parse_rate("100/s"), parse_rate(5), parse_rate(None)
        (0.16666666666666666, 100.0, 5.0, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"rate limit must be a number or like '10/m', not {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), "s"
    else:
        match = _RATE.match(str(value))
        if match is None:
            raise ValueError(
                f"rate limit must be a number or like '10/s', '10/m', '10/h', not {value!r}"
            )
        number, unit = float(match.group(1)), match.group(2) or "s"
    if number < 0:
        raise ValueError(f"rate limit must not be negative: {value!r}")
    if number == 0:
        return None
    return number / _UNITS[unit]


__all__ = ["parse_rate"]
