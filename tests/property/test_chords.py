"""Chord counting (``Transport.chord_part_done``) against its model, on each transport.

Whatever order header tasks finish in, and however often an unlock is redelivered,
exactly one member completes the chord, it is the member whose first report was the
last new one, and it alone gets every member's id in header order, every time it asks.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transports.support import KINDS, make_transport


@st.composite
def reports(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A chord size and the order members report in (each at least once, some again)."""
    size = draw(st.integers(min_value=1, max_value=8))
    order = draw(st.permutations(range(size)))
    repeats = draw(st.lists(st.integers(min_value=0, max_value=size - 1), max_size=6))
    sequence = list(order)
    for member in repeats:  # a repeat comes after that member's first report
        at = draw(st.integers(min_value=sequence.index(member) + 1, max_value=len(sequence)))
        sequence.insert(at, member)
    return size, sequence


@pytest.mark.parametrize("kind", KINDS)
def test_one_member_completes_each_chord(kind: str, request: pytest.FixtureRequest,
                                         tmp_path: Path) -> None:
    transport = make_transport(kind, request, tmp_path)

    @settings(max_examples=60, deadline=None)
    @given(reports())
    def check(case: tuple[int, list[int]]) -> None:
        size, sequence = case
        chord_id = str(uuid.uuid4())
        members = [f"{chord_id}-{index}" for index in range(size)]
        seen: set[int] = set()
        completer = None
        for index in sequence:
            got = transport.chord_part_done(chord_id, members[index], index, size, 3600)
            seen.add(index)
            if completer is None and len(seen) == size:
                completer = index
            if index == completer:
                assert got == members
            else:
                assert got is None

    try:
        check()
    finally:
        transport.close()
