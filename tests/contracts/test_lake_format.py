"""The lake's file format: which columns get dictionaries, delta and text encodings, bloom filters and zstd levels."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from contracts.datasets import get_dataset
from contracts.lake_format import (
    BLOOM_FPP,
    DELTA_ENCODING,
    FILE_SAMPLING,
    ROW_GROUP_SAMPLING,
    TEXT_ENCODING,
    ZSTD_LEVEL,
    ZSTD_TEXT_LEVEL,
    writer_options,
)
from contracts.parquet_dictionaries import MAX_DISTINCT_SHARE, Sampling, Spacing, repeating_columns

ORDERS = get_dataset("orders")
ROWS = 20_000


def orders(status: pa.Array) -> pa.Table:
    """Orders rows (lake schema order) with the given `status` column."""
    n = len(status)
    return pa.table({
        "order_id": pa.array(range(n), pa.int64()),
        "customer_id": pa.array([i % 100 for i in range(n)], pa.int64()),
        "amount": pa.array([Decimal(i % 50) for i in range(n)], pa.decimal128(12, 2)),
        "status": status,
        "order_date": pa.array([i // 1000 for i in range(n)], pa.date32()),
        "_source_object_id": pa.array([f"object {i}" for i in range(n)]),
        "_source_line": pa.array(range(1, n + 1), pa.int64()),
    })


@pytest.mark.parametrize("sampling", [FILE_SAMPLING, ROW_GROUP_SAMPLING], ids=["file", "row-group"])
def test_the_writers_choices_per_column(sampling: Sampling) -> None:
    assert ORDERS is not None
    table = orders(pa.array([("placed", "paid", "shipped")[i % 3] for i in range(ROWS)]))
    options = writer_options(table, ORDERS, ndv=5000, sampling=sampling)
    assert options["use_dictionary"] == ["customer_id", "amount", "status", "order_date"], "the repeating ones"
    assert options["column_encoding"] == {"order_id": DELTA_ENCODING, "_source_line": DELTA_ENCODING,
                                          "_source_object_id": TEXT_ENCODING}
    assert options["compression"] == "zstd"
    assert options["compression_level"]["_source_object_id"] == ZSTD_TEXT_LEVEL
    assert options["compression_level"]["status"] == ZSTD_LEVEL
    assert options["bloom_filter_options"] == {"customer_id": {"ndv": 5000, "fpp": BLOOM_FPP}}
    assert [table.column_names[c.column_index] for c in options["sorting_columns"]] == ["order_date", "order_id"]
    assert options["store_schema"] is False and options["store_decimal_as_integer"] is True


def test_a_dictionary_column_is_kept_by_a_file_but_judged_again_by_a_row_group() -> None:
    """The merge moves the strings its inputs chose as dictionaries: a compacted row group judges them on its
    values (free text they are, then), a partition file keeps what the transform's encoder chose."""
    assert ORDERS is not None
    table = orders(pa.array([f"note {i}" for i in range(ROWS)]).dictionary_encode())
    row_group = writer_options(table, ORDERS, ndv=ROWS, sampling=ROW_GROUP_SAMPLING)
    assert "status" not in row_group["use_dictionary"] and row_group["column_encoding"]["status"] == TEXT_ENCODING
    assert "status" in writer_options(table, ORDERS, ndv=ROWS, sampling=FILE_SAMPLING)["use_dictionary"]


def test_no_codec_level_for_a_codec_without_levels() -> None:
    assert ORDERS is not None
    snappy = ORDERS.model_copy(update={"storage": ORDERS.storage.model_copy(update={"compression": "snappy"})})
    options = writer_options(orders(pa.array(["paid"] * 10)), snappy, ndv=0, sampling=FILE_SAMPLING)
    assert options["compression"] == "snappy" and options["compression_level"] is None
    assert options["bloom_filter_options"]["customer_id"]["ndv"] == 1, "never sized for no rows"


@pytest.mark.parametrize("spacing", list(Spacing))
def test_a_column_repeats_when_at_most_half_its_sample_is_distinct_however_it_is_chunked(spacing: Spacing) -> None:
    sampling = Sampling(1000, spacing, trust_dictionaries=False)
    half = int(MAX_DISTINCT_SHARE * 1000)
    table = pa.table({
        "half": pa.array([i % half for i in range(1000)]),
        "more": pa.array([i % (half + 1) for i in range(1000)]),
    })
    assert repeating_columns(table, ["more", "half"], sampling) == ["half"]
    long = pa.table({"v": pa.array([i % 300 for i in range(50_000)]), "w": pa.array(range(50_000))})
    chunked = pa.Table.from_batches(long.to_batches(max_chunksize=3_333))
    assert repeating_columns(long, ["w", "v"], sampling) == repeating_columns(chunked, ["w", "v"], sampling) == ["v"]


def test_sampled_rows_are_numpys_evenly_spaced_rows_without_numpy() -> None:
    """The compact layer has no numpy, so the sample is computed in Python: the rows must be the ones numpy's
    linspace (transform) and a running float step (compaction) give, or the lake's dictionaries would change."""
    import random

    import numpy as np

    from contracts.parquet_dictionaries import Sampling, Spacing, _positions

    sizes = [1025, 8193, 24_576, 1_000_000, 2**20 + 1, *random.Random(7).sample(range(1, 3_000_000), 300)]
    for n in sizes:
        ends = _positions(n, Sampling(1024, Spacing.ENDS, True))
        assert ends == (None if n <= 1024 else np.linspace(0, n - 1, 1024).astype(np.int64).tolist())
        stride = _positions(n, Sampling(8192, Spacing.STRIDE, False))
        if n <= 8192:
            assert stride is None
            continue
        running = np.cumsum(np.concatenate(([0.0], np.full(8193, n / 8192))))
        assert stride == running[running < n].astype(np.int64).tolist()
