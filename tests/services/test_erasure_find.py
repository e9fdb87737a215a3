"""FIND: xxHash64, the bloom filter reader against pyarrow-written filters, statistics, pruning, probes."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.erasure.blobs import LocalBlob
from services.erasure.bloom import BloomFormatError, SplitBlockBloom, parse_header, plain_bytes, xxh64
from services.erasure.find import partition_may_match, probe
from services.erasure.subjects import Subjects
from tests.services.orders_parquet import ORDERS, SALT, write


@pytest.mark.parametrize(("data", "expected"), [
    (b"", 0xEF46DB3751D8E999), (b"a", 0xD24EC4F1A98C6E5B), (b"abc", 0x44BC2CF5AD770999),
    (b"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1),
])
def test_xxh64_reference_vectors(data: bytes, expected: int) -> None:
    assert xxh64(data) == expected


def test_bloom_filter_written_by_pyarrow_has_no_false_negatives_and_few_false_positives(tmp_path: Path) -> None:
    present = random.Random(3).sample(range(10**6), 5000)
    path = write(tmp_path, "f.parquet", present)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
    raw = path.read_bytes()[chunk.bloom_filter_offset : chunk.bloom_filter_offset + chunk.bloom_filter_length]
    bloom = SplitBlockBloom.from_bytes(raw)
    assert all(bloom.might_contain(xxh64(plain_bytes(v, "INT64"))) for v in present)
    absent = [v for v in range(10**6, 10**6 + 20000)]
    rate = sum(bloom.might_contain(xxh64(plain_bytes(v, "INT64"))) for v in absent) / len(absent)
    assert rate < 0.06, "the platform writes filters at 5% false positives"


def test_bloom_header_errors_are_named() -> None:
    with pytest.raises(BloomFormatError, match="multiple of 32"):
        parse_header(bytes([0x15, 0x06, 0x00]))  # numBytes = 3
    with pytest.raises(BloomFormatError, match="truncated"):
        parse_header(bytes([0x15]))


def test_string_values_hash_their_utf8_bytes() -> None:
    assert plain_bytes("kåre", "BYTE_ARRAY") == "kåre".encode()
    assert plain_bytes(7, "INT32") == b"\x07\x00\x00\x00"


def test_probe_prunes_by_statistics_then_bloom_then_reads_exactly(tmp_path: Path) -> None:
    # three row groups of sorted customers (min/max separate them); big enough that the footer read is not all
    path = write(tmp_path, "f.parquet", list(range(300_000)), row_group_rows=100_000)
    subjects = Subjects.of(["150000", "5000000"], SALT)
    blob = LocalBlob(str(path))
    result = probe(blob, subjects.columns(ORDERS))
    s = result.stats
    assert (result.matched_rows, result.by_subject, result.matched_row_groups) == (1, {0: 1}, (1,))
    assert s.row_groups == 3 and s.row_groups_pruned_by_stats == 2 and s.row_groups_scanned == 1
    assert s.bytes_read == blob.stats.bytes < path.stat().st_size / 2


def test_bloom_rules_out_a_file_whose_statistics_cannot(tmp_path: Path) -> None:
    customers = [c * 2 for c in range(2000)]  # even ids: the range covers odd ones, the filter does not
    path = write(tmp_path, "f.parquet", customers)
    odd = [str(c) for c in range(1, 3999, 2) if c % 7 == 1][:20]
    result = probe(LocalBlob(str(path)), Subjects.of(odd, SALT).columns(ORDERS))
    assert result.matched_rows == 0
    assert result.stats.row_groups_pruned_by_bloom + result.stats.row_groups_scanned == 1
    assert result.stats.bloom_filters_read == 1


def test_ids_that_cannot_be_values_of_the_column_do_not_match(tmp_path: Path) -> None:
    path = write(tmp_path, "f.parquet", [1, 2, 3])
    subjects = Subjects.of(["abc", "99999999999999999999999"], SALT)
    assert subjects.columns(ORDERS) == []
    assert probe(LocalBlob(str(path)), subjects.columns(ORDERS)).matched_rows == 0


def test_partition_pruning_only_when_every_subject_column_is_an_identity_key() -> None:
    tenant = ORDERS.model_copy(update={"partitioning": (
        *ORDERS.partitioning, ORDERS.partitioning[0].model_copy(update={"name": "cust", "source": "customer_id",
                                                                       "transform": "identity"}))})
    cols = Subjects.of(["42"], SALT).columns(tenant)
    assert partition_may_match(tenant, {"order_year": "2024", "order_month": "05", "cust": "42"}, cols)
    assert not partition_may_match(tenant, {"order_year": "2024", "order_month": "05", "cust": "43"}, cols)
    assert partition_may_match(ORDERS, {"order_year": "2024", "order_month": "05"}, cols)


def test_hits_keep_fetched_bytes_for_the_rewrite_only_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.erasure import lake
    from services.erasure.find import FileProbe

    def fake_probe(blob: object, columns: object) -> FileProbe:
        return FileProbe(matched_rows=1, matched_row_groups=(0,), data=b"x" * 400)

    monkeypatch.setattr(lake, "probe", fake_probe)
    monkeypatch.setattr(lake, "HELD_BYTES", 1000)
    hits, _ = lake.probe_files("bucket", [(f"f{i}", f"k{i}", 400) for i in range(4)], [])
    assert [h.probe.data is not None for h in hits] == [True, True, False, False], "the rest is fetched again"


def test_find_takes_partitions_in_bounded_batches_of_one_dataset() -> None:
    from services.erasure.engine import FIND_BATCH, _find_batch

    parts = [["orders", {"d": str(i)}, ""] for i in range(FIND_BATCH + 4)] + [["events", {"d": "1"}, ""]] * 3
    first = _find_batch(parts, 0)
    assert len(first) == FIND_BATCH and {p[0] for p in first} == {"orders"}
    assert _find_batch(parts, FIND_BATCH) == parts[FIND_BATCH : FIND_BATCH + 4], "stops at the dataset's end"
    assert _find_batch(parts, FIND_BATCH + 4) == parts[-3:]


# -- the exact test from the bytes (pages.plain_fixed_values) must agree with pyarrow on every layout --
LAYOUTS = [
    {"data_page_version": "1.0", "compression": "zstd"},
    {"data_page_version": "2.0", "compression": "zstd"},
    {"data_page_version": "1.0", "compression": "snappy", "data_page_size": 512},  # many pages
    {"data_page_version": "2.0", "compression": "gzip", "data_page_size": 512},
    {"data_page_version": "1.0", "compression": "none"},
    {"data_page_version": "2.0", "compression": "lz4", "data_page_size": 512},  # LZ4_RAW, pyarrow's "LZ4"
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: "-".join(str(v) for v in d.values()))
@pytest.mark.parametrize(("arrow_type", "nullable"), [(pa.int64(), True), (pa.int64(), False), (pa.int32(), True)])
def test_plain_values_decoded_from_the_bytes_are_pyarrows(tmp_path: Path, layout: dict, arrow_type: pa.DataType,
                                                          nullable: bool) -> None:
    from services.erasure.pages import chunk_span, plain_fixed_values, thrift_codec

    rnd = random.Random(5)
    values = [None if nullable and rnd.random() < 0.2 else rnd.randrange(-(2**31), 2**31) for _ in range(3000)]
    schema = pa.schema([pa.field("c", arrow_type, nullable=nullable)])
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"c": pa.array(values, arrow_type)}, schema=schema), path, use_dictionary=False,
                   **layout)
    md = pq.read_metadata(path)
    chunk, column = md.row_group(0).column(0), md.schema.column(0)
    start, length = chunk_span(chunk)
    expected = [v for v in values if v is not None]
    for chunk_bytes in (path.read_bytes()[start : start + length],  # and as FIND passes it: a view of the file
                        memoryview(path.read_bytes())[start : start + length]):
        got = plain_fixed_values(chunk_bytes, thrift_codec(chunk), chunk.physical_type,
                                 column.max_definition_level, column.max_repetition_level)
        assert got is not None
        assert got.tolist() == expected


def test_chunks_the_bytes_path_does_not_read_are_left_to_pyarrow(tmp_path: Path) -> None:
    from services.erasure.pages import chunk_span, plain_fixed_values, thrift_codec

    t = pa.table({"d": pa.array([1, 2, 1, 2] * 500, pa.int64()), "e": pa.array(range(2000), pa.int64()),
                  "s": pa.array(["x"] * 2000)})
    path = tmp_path / "f.parquet"
    pq.write_table(t, path, use_dictionary=["d"], column_encoding={"e": "DELTA_BINARY_PACKED"})
    md = pq.read_metadata(path)
    data = path.read_bytes()
    for i in range(3):  # a dictionary, a DELTA encoding, a byte array
        chunk, column = md.row_group(0).column(i), md.schema.column(i)
        start, length = chunk_span(chunk)
        assert plain_fixed_values(data[start : start + length], thrift_codec(chunk), chunk.physical_type,
                                  column.max_definition_level) is None


def test_probe_counts_from_the_bytes_as_from_arrow_nulls_and_aliased_ids_included(tmp_path: Path) -> None:
    from services.erasure import find

    customers = [7, 8, 9, 7, 100, 7] * 500
    path = write(tmp_path, "f.parquet", customers)
    t = pq.read_table(path)
    nulled = t.set_column(1, "customer_id", pa.array([None if i % 11 == 0 else c for i, c in enumerate(customers)],
                                                    t.schema.field("customer_id").type))
    pq.write_table(nulled, path, compression="zstd", use_dictionary=False, bloom_filter_options={
        "customer_id": {"ndv": 3000, "fpp": 0.05}})
    subjects = Subjects.of(["7", "+7", "100", "555"], SALT)  # "7" and "+7" are one value, two subjects
    columns = subjects.columns(ORDERS)
    original = find._exact_from_bytes
    answers: list[object] = []

    def spy(*args: object) -> object:
        answers.append(original(*args))  # type: ignore[arg-type]
        return answers[-1]

    find._exact_from_bytes = spy  # type: ignore[assignment]
    try:
        fast = probe(LocalBlob(str(path)), columns)
    finally:
        find._exact_from_bytes = original
    assert answers and all(a is not None for a in answers), "the bytes answered, pyarrow was not asked"
    expected_rows = sum(1 for i, c in enumerate(customers) if i % 11 and c in (7, 100))
    sevens = sum(1 for i, c in enumerate(customers) if i % 11 and c == 7)
    assert fast.matched_rows == expected_rows
    assert fast.by_subject == {0: sevens, 1: sevens, 2: expected_rows - sevens}
    try:  # the same probe through pyarrow only
        find._exact_from_bytes = lambda *a, **k: None  # type: ignore[assignment]
        slow = probe(LocalBlob(str(path)), columns)
    finally:
        find._exact_from_bytes = original
    assert (slow.matched_rows, slow.by_subject, slow.matched_row_groups) == (
        fast.matched_rows, fast.by_subject, fast.matched_row_groups)


def test_a_nested_leaf_named_like_the_subject_column_is_not_it(tmp_path: Path) -> None:
    t = pa.table({"meta": pa.array([{"customer_id": 42}] * 10), "customer_id": pa.array(range(10), pa.int64())})
    path = tmp_path / "f.parquet"
    pq.write_table(t, path)
    columns = Subjects.of(["42", "3"], SALT).columns(ORDERS)
    result = probe(LocalBlob(str(path)), columns)
    assert (result.matched_rows, result.by_subject) == (1, {1: 1})


def test_vectorised_and_per_value_bloom_tests_agree_with_might_contain(tmp_path: Path) -> None:
    from services.erasure.bloom import BloomProbe

    path = write(tmp_path, "f.parquet", random.Random(8).sample(range(10**6), 4000))
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
    bloom = SplitBlockBloom.from_bytes(path.read_bytes()[chunk.bloom_filter_offset :])
    hashes = [xxh64(plain_bytes(v, "INT64")) for v in range(0, 10**6, 997)]
    prepared = BloomProbe.of(hashes)
    expected = [i for i, h in enumerate(hashes) if bloom.might_contain(h)]
    assert 0 < len(expected) < len(hashes)
    assert bloom.passing(prepared, range(len(hashes))) == expected  # arrays
    for start in range(0, len(hashes), 10):  # a few values at a time: Python ints
        few = range(start, min(start + 10, len(hashes)))
        assert bloom.passing(prepared, few) == [i for i in expected if i in few]


def test_footer_parsed_from_memory_is_the_files(tmp_path: Path) -> None:
    from services.erasure.find import _footer

    path = write(tmp_path, "f.parquet", list(range(5000)), row_group_rows=2000)
    ours, theirs = _footer(path.read_bytes()), pq.read_metadata(path)
    assert ours.equals(theirs) and ours.num_row_groups == 3
    with pytest.raises(Exception, match=r"(?i)parquet"):
        _footer(b"not a parquet file at all")


def test_subjects_are_counted_alike_in_python_and_in_arrow(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.erasure import find

    values = [7, None, 8, 7, 100, 3] * 400
    table = pa.table({"customer_id": pa.array(values, pa.int64())})
    columns = Subjects.of(["7", "+7", "100", "5"], SALT).columns(ORDERS)
    few = find.count_by_subject(table.slice(0, 12), columns)
    assert few == {0: 4, 1: 4, 2: 2}, "aliased ids both count; absent ids are not reported"
    monkeypatch.setattr(find, "COUNT_IN_PYTHON", 10**6)
    in_python = find.count_by_subject(table, columns)
    monkeypatch.setattr(find, "COUNT_IN_PYTHON", 0)
    assert find.count_by_subject(table, columns) == in_python == {0: 800, 1: 800, 2: 400}


def test_integers_stored_under_another_meaning_are_left_to_pyarrow(tmp_path: Path) -> None:
    from services.erasure import find

    path = tmp_path / "f.parquet"
    # an unsigned column: 2**64 - 7 is stored as the bytes of -7, which is a subject here, but not this value
    pq.write_table(pa.table({"customer_id": pa.array([1, 2**64 - 7], pa.uint64())}), path, use_dictionary=False)
    md = pq.read_metadata(path)
    columns = Subjects.of(["-7"], SALT).columns(ORDERS)
    probes = find._probes_for(columns)
    assert find._exact_from_bytes(LocalBlob(str(path)), md, 0, 0, columns[0], [0], probes) is None


def test_the_usual_bloom_header_is_read_as_the_general_walk_reads_it(tmp_path: Path) -> None:
    from services.erasure.bloom import _parse_header_fields, _usual_header

    for n in (10, 5000, 300_000):  # filters of one block to several MB: numBytes of 1 to 3 varint bytes
        path = write(tmp_path, f"f{n}.parquet", list(range(n)))
        chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
        raw = path.read_bytes()[chunk.bloom_filter_offset : chunk.bloom_filter_offset + chunk.bloom_filter_length]
        assert _usual_header(raw) == _parse_header_fields(raw) == parse_header(raw)
        assert parse_header(raw)[0] + parse_header(raw)[1] == len(raw)
    # fields in another order (hash before algorithm), as a writer may put them: the general walk reads it
    other = bytes([0x15, 0x80, 0x01, 0x2C, 0x1C, 0x00, 0x00, 0x0C, 0x04, 0x1C, 0x00, 0x00, 0x2C, 0x1C, 0x00, 0x00,
                   0x00])
    assert _usual_header(other) is None and parse_header(other) == (64, len(other))
