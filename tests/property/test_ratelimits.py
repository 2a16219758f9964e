"""Rate limit strings (hypothesis) and the shared token bucket."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liteq import _clock
from liteq.ratelimits import parse_rate
from liteq.transports.sqlite import SQLiteTransport

UNITS = {"s": 1, "m": 60, "h": 3600}


@given(st.integers(1, 10**6), st.sampled_from(["s", "m", "h"]), st.booleans())
def test_rate_strings_parse_to_tokens_per_second(number: int, unit: str, spaces: bool) -> None:
    text = f"{number} / {unit}" if spaces else f"{number}/{unit}"
    assert parse_rate(text) == pytest.approx(number / UNITS[unit])


@given(st.floats(min_value=0.001, max_value=1e6, allow_nan=False))
def test_plain_numbers_are_per_second(number: float) -> None:
    assert parse_rate(number) == number
    assert parse_rate(str(number)) == pytest.approx(number)


@given(st.text().filter(lambda t: t.strip() and not t.strip()[0].isdigit()
                        and not t.strip().startswith(".")))
def test_garbage_is_refused_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit must be"):
        parse_rate(text)


def test_no_limit_values() -> None:
    assert parse_rate(None) is None and parse_rate(0) is None and parse_rate("0/m") is None
    for bad in (True, "-1/s", "10/d", "1/", "/s"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_token_bucket_is_shared_and_refills(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_clock, "lease_clock", lambda: clock[0])
    first = SQLiteTransport(str(tmp_path / "t.db"), {})
    second = SQLiteTransport(str(tmp_path / "t.db"), {})  # another worker, same file
    assert first.take_token("k", rate=2.0) == 0.0  # a new bucket starts with one token
    assert second.take_token("k", rate=2.0) == pytest.approx(0.5)  # empty: wait 1/rate
    clock[0] += 0.25
    assert first.take_token("k", rate=2.0) == pytest.approx(0.25)
    clock[0] += 0.25
    assert second.take_token("k", rate=2.0) == 0.0
    clock[0] += 100  # a long pause refills at most to the capacity (one token)
    assert first.take_token("k", rate=2.0) == 0.0
    assert second.take_token("k", rate=2.0) > 0
    assert first.take_token("other", rate=2.0) == 0.0  # buckets are per key

