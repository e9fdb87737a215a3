"""Compaction planning: which files are small, when the threshold is crossed, how bins are packed."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.commits import FileEntry, PartitionRef
from contracts.datasets import get_dataset
from services.compact.plan import Bin, Sizing, Trigger, needs_compaction, plan_bins, small_files, threshold_crossed

ORDERS = get_dataset("orders")
REF = PartitionRef("orders", {"order_year": "2024", "order_month": "05"})
MB = 1024 * 1024
SIZING = Sizing(target_bytes=100 * MB, small_bytes=75 * MB, min_files=16)


def files(*sizes: int) -> list[FileEntry]:
    return [FileEntry(f"f{i:04d}.parquet", f"k/f{i:04d}.parquet", rows=size // 100 + 1, bytes=size)
            for i, size in enumerate(sizes)]


def test_sizing_comes_from_the_contract() -> None:
    s = Sizing.of(ORDERS)
    assert s.target_bytes == 256 * MB and s.small_bytes == int(0.75 * 256 * MB) and s.min_files == 16
    assert Sizing.of(ORDERS, min_files=4).min_files == 4


def test_threshold_counts_small_files_only() -> None:
    big = files(*[80 * MB] * 30)
    assert small_files(big, SIZING) == []
    assert not threshold_crossed(big, SIZING)
    assert not threshold_crossed(files(*[MB] * 15), SIZING)
    assert threshold_crossed(files(*[MB] * 16), SIZING)


def test_threshold_crossed_by_small_bytes_alone() -> None:
    assert threshold_crossed(files(60 * MB, 50 * MB), SIZING), "two small files that fill a target"
    assert not threshold_crossed(files(60 * MB, 30 * MB), SIZING)


def test_events_need_the_threshold_but_sweeps_and_commands_take_any_two_small_files() -> None:
    few = files(MB, 2 * MB, 90 * MB)
    assert not needs_compaction(few, SIZING, Trigger.EVENT)
    for trigger in (Trigger.SWEEP, Trigger.MANUAL, Trigger.CONTINUE):
        assert needs_compaction(few, SIZING, trigger)
        assert not needs_compaction(files(MB, 90 * MB), SIZING, trigger), "one small file: nothing to merge"


def test_a_big_partition_is_split_into_bins_of_at_most_one_target() -> None:
    sizes = [random.Random(3).randrange(MB, 40 * MB) for _ in range(200)]
    bins = plan_bins(files(*sizes), SIZING, Trigger.EVENT)
    assert len(bins) > 10
    assert all(b.bytes <= SIZING.target_bytes and len(b.files) >= 2 for b in bins)
    planned = [n for b in bins for n in b.names]
    assert len(planned) == len(set(planned))
    assert sum(b.bytes for b in bins) >= 0.9 * sum(sizes), "first-fit decreasing leaves little out"


def test_below_threshold_plans_nothing() -> None:
    assert plan_bins(files(*[MB] * 15), SIZING, Trigger.EVENT) == []


def test_a_lone_file_is_never_rewritten_for_nothing() -> None:
    bins = plan_bins(files(70 * MB, 60 * MB, MB), SIZING, Trigger.MANUAL)
    assert [b.names for b in bins] == [("f0000.parquet", "f0002.parquet")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 120 * MB), min_size=0, max_size=60), st.sampled_from(list(Trigger)))
def test_plans_are_pure_functions_of_the_manifest(sizes: list[int], trigger: Trigger) -> None:
    entries = files(*sizes)
    shuffled = entries[:]
    random.Random(len(sizes)).shuffle(shuffled)
    bins = plan_bins(entries, SIZING, trigger)
    assert bins == plan_bins(shuffled, SIZING, trigger), "manifest order does not change the plan"
    assert [b.op_id(REF, ORDERS) for b in bins] == [b.op_id(REF, ORDERS) for b in plan_bins(shuffled, SIZING, trigger)]
    small = {f.name for f in small_files(entries, SIZING)}
    for b in bins:
        assert set(b.names) <= small and len(b.files) >= 2 and b.bytes <= SIZING.target_bytes
        assert list(b.names) == sorted(b.names), "inputs in name order: the merge's tie-break"
    if bins:
        assert needs_compaction(entries, SIZING, trigger)


def test_op_ids_name_the_inputs_not_their_order_or_location() -> None:
    a = Bin(tuple(files(MB, 2 * MB)))
    moved = Bin(tuple(FileEntry(f.name, f"gen=9/{f.name}", f.rows, f.bytes) for f in reversed(a.files)))
    other = Bin(tuple(files(MB, 2 * MB, 3 * MB)))
    assert a.op_id(REF, ORDERS) == moved.op_id(REF, ORDERS)
    assert a.op_id(REF, ORDERS) != other.op_id(REF, ORDERS)
    assert a.op_id(REF, ORDERS).startswith("compact:orders:order_year=2024/order_month=05:")
