"""splice.BlockReader: reads served from cached blocks are the bytes a direct read returns, in fewer requests."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from services.erasure.blobs import BlockReader

DATA = os.urandom(10_000)


def _direct(calls: list[tuple[int, int]]):
    def read_at(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return DATA[offset : offset + length]
    return read_at


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(DATA) - 1), st.integers(1, 3_000)), min_size=1, max_size=30))
def test_reads_match_direct_reads(ranges: list[tuple[int, int]]) -> None:
    calls: list[tuple[int, int]] = []
    reader = BlockReader(_direct(calls), len(DATA), block=1024, keep=3)
    for offset, length in ranges:
        length = min(length, len(DATA) - offset)
        assert reader(offset, length) == DATA[offset : offset + length]
    assert reader.requests == len(calls)
    assert all(o + n <= len(DATA) for o, n in calls)


def test_small_reads_of_one_block_cost_one_request() -> None:
    calls: list[tuple[int, int]] = []
    reader = BlockReader(_direct(calls), len(DATA), block=4096, keep=2)
    for offset in range(0, 4000, 100):
        assert reader(offset, 50) == DATA[offset : offset + 50]
    assert calls == [(0, 4096)]


def test_a_read_of_a_block_or_more_goes_straight_through() -> None:
    calls: list[tuple[int, int]] = []
    reader = BlockReader(_direct(calls), len(DATA), block=1024, keep=2)
    assert reader(100, 5000) == DATA[100:5100]
    assert calls == [(100, 5000)]
