"""liteq's json round-trips the types task arguments hold (hypothesis)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liteq import serialization
from liteq.exceptions import ContentDisallowed, DecodeError

keys = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none())
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
    st.binary(max_size=64),
    st.datetimes(timezones=st.one_of(st.none(), st.just(timezone.utc),
                                     st.timezones())),
    st.dates(), st.times(), st.timedeltas(), st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False), st.text().map(lambda s: {"__type__": s}),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
        st.frozensets(st.integers(), max_size=4),
        st.sets(st.text(max_size=4), max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_json_round_trip(value: object) -> None:
    decoded = serialization.json_loads(serialization.json_dumps(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_rich_types_keep_their_exact_form() -> None:
    value = {
        "when": datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))),
        "day": date(2026, 1, 1),
        "at": time(12, 30, 1, 5),
        "price": Decimal("19.990"),
        "id": uuid.UUID(int=1),
        "blob": b"\x00\x01",
        "pair": (1, "a"),
        "counts": {1: "one", None: "none"},
    }
    assert serialization.json_loads(serialization.json_dumps(value)) == value
    assert serialization.json_loads(serialization.json_dumps(value))["price"].as_tuple() == \
        Decimal("19.990").as_tuple()


def test_unknown_objects_are_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        serialization.json_dumps(object())


def test_accept_content_guards_loads() -> None:
    accept = serialization.accepted_content_types(["json"])
    assert accept == frozenset({"application/json"})
    with pytest.raises(ContentDisallowed):
        serialization.loads(b"x", "application/x-python-serialize", accept)
    with pytest.raises(DecodeError, match="unknown json type tag"):
        serialization.loads(b'{"__type__": "evil", "__value__": 1}', "application/json", accept)
    with pytest.raises(DecodeError):
        serialization.loads(b"\xff", "application/json", accept)


def test_datetimes_keep_their_zone_even_in_a_dst_gap() -> None:
    """Found by hypothesis: an offset alone cannot round-trip a time in a DST gap."""
    from zoneinfo import ZoneInfo

    gap = datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # does not exist
    fold = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin"))
    for value in (gap, fold, datetime(1932, 10, 3, tzinfo=ZoneInfo("America/Eirunepe"))):
        decoded = serialization.json_loads(serialization.json_dumps(value))
        assert decoded == value and decoded.tzinfo is value.tzinfo and decoded.fold == value.fold
