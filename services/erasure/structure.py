"""Structural verification of a rewritten Parquet file: nothing in it but its surviving rows.

Reading a rewritten file's rows proves only that the rows are gone. Its bytes also hold, per
column chunk, a dictionary page, page-header statistics, footer statistics, a column index and
maybe a bloom filter; each of them is built by the writer from values, and any of them can keep a
value of an erased row (a passed-through dictionary did). For every column chunk this check:

* decodes every dictionary page and requires each value to be used by a surviving row of the chunk;
* requires every min/max (footer statistics, data page headers, column index) to be a surviving
  value of the chunk (a column-index value may be a truncated prefix of one);
* rebuilds each bloom filter from the surviving values (same size) and requires the same bits;
* requires the footer's key-value metadata to hold no subject id (the Arrow schema and the
  contract's name, version and fingerprint are derived from no row and are not searched).
Values are compared in their physical (PLAIN) form, exactly as the bytes hold them (floats bit for bit), but
for the spec's zero: a float min of zero is written -0.0 and a max +0.0, so either stands for a surviving zero.
A column the check cannot compare, or a row group pyarrow cannot read, is a problem named, never an exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.parquet_codecs import THRIFT_NAMES
from services.erasure.blobs import Blob, BlobFile, CachedBlob
from services.erasure.bloom import SplitBlockBloom, bloom_bitset
from services.erasure.find import read_bloom
from services.erasure.pages import (
    PageFormatError,
    Stats,
    chunk_span,
    column_index_locations,
    footer_bytes,
    key_value_metadata,
    plain_value,
    read_chunk,
    read_column_index,
    read_struct,
)

_FLOATS = ("FLOAT", "DOUBLE")
#: the Julian day of 1970-01-01 (an INT96 timestamp's day)
JULIAN_EPOCH_DAY = 2_440_588
#: pyarrow truncates column-index strings to this many bytes by default
INDEX_TRUNCATE = 64
FOOTER_TAIL = 1 << 20
#: a chunk's string survivors are looked up in its values once they are this many times as many
LOOKUP_SURVIVORS_FROM = 16
#: up to this many integer values, each is compared with the survivors rather than hashed with them
EQUAL_TESTS_UP_TO = 8
#: files up to this size are fetched whole (the lake's files are far larger only when compacted)
WHOLE_FILE_BYTES = 64 << 20


@dataclass
class StructureReport:
    """What the structural check read and what it found (counts and column names, never values)."""

    files: int = 0
    column_chunks: int = 0
    pages: int = 0
    dictionary_pages: int = 0
    dictionary_values: int = 0
    statistics_checked: int = 0
    column_indexes: int = 0
    bloom_filters: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: StructureReport) -> None:
        for name in self.__dataclass_fields__:
            if name != "problems":
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems

    def to_json(self) -> dict[str, Any]:
        return {**{n: getattr(self, n) for n in self.__dataclass_fields__ if n != "problems"},
                "problems": list(self.problems)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StructureReport:
        out = cls()
        for k, v in d.items():
            if k in cls.__dataclass_fields__ and k != "problems":
                setattr(out, k, int(v))
        out.problems = list(d.get("problems", []))
        return out


def physical(column: pa.ChunkedArray | pa.Array, physical_type: str, type_length: int = 0) -> pa.Array:
    """The non-null values of a column as the Parquet bytes hold them (binary, int64 or float64)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:  # (each call below that changes nothing is skipped: ~10 µs each, 11 columns a file)
        arr = arr.drop_null()
    t = arr.type
    if pa.types.is_binary(t):
        return arr
    if pa.types.is_string(t):
        return arr.view(pa.binary())  # the same buffers
    if (pa.types.is_large_string(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or pa.types.is_string_view(t) or pa.types.is_binary_view(t)):
        return arr.cast(pa.binary())  # (FIXED_LEN_BYTE_ARRAY: the bytes themselves)
    if pa.types.is_null(t):
        return pa.array([], pa.int64())
    if pa.types.is_decimal(t):
        if physical_type in ("INT32", "INT64"):  # unscaled value in the low 64 bits of each 16-byte slot
            raw = np.frombuffer(arr.buffers()[1], dtype=np.int64)[2 * arr.offset : 2 * (arr.offset + len(arr))]
            return pa.array(raw[::2], pa.int64())
        # FIXED_LEN_BYTE_ARRAY: big-endian two's complement of the unscaled value, i.e. the last `type_length`
        # bytes of Arrow's little-endian slot reversed (not through Python's Decimal: its context keeps 28
        # digits, and a decimal(38,s) value's bytes came out rounded, a survivor not found in its own dictionary)
        width = t.bit_width // 8
        slots = np.frombuffer(arr.buffers()[1], dtype=np.uint8).reshape(-1, width)[arr.offset : arr.offset + len(arr)]
        big_endian = np.ascontiguousarray(slots[:, ::-1][:, width - type_length :])
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(type_length), len(arr),
                                                    [None, pa.py_buffer(big_endian.tobytes())]).cast(pa.binary())
    if pa.types.is_boolean(t):
        return arr.cast(pa.int64())
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return arr.view(pa.int32()).cast(pa.int64())
    if pa.types.is_timestamp(t) and physical_type == "INT96":  # deprecated: nanoseconds of the day, Julian day
        days, nanos = np.divmod(arr.cast(pa.timestamp("ns")).view(pa.int64()).to_numpy(), 86_400 * 10**9)
        packed = np.empty(len(arr), dtype=[("nanos", "<i8"), ("day", "<i4")])
        packed["nanos"], packed["day"] = nanos, days + JULIAN_EPOCH_DAY
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(12), len(arr), [None, pa.py_buffer(packed.tobytes())]
                                                    ).cast(pa.binary())
    if pa.types.is_timestamp(t) or pa.types.is_date64(t) or pa.types.is_time64(t) or pa.types.is_duration(t):
        return arr.view(pa.int64())
    if pa.types.is_float16(t) and physical_type == "FIXED_LEN_BYTE_ARRAY":  # Parquet FLOAT16: the bits, LE
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(2), len(arr), [None, arr.buffers()[1]],
                                                    offset=arr.offset).cast(pa.binary())
    if pa.types.is_floating(t) and physical_type in ("FLOAT", "DOUBLE"):
        return arr.cast(pa.float64())  # exact, -0.0 and NaN kept (a float32 widened as plain_value widens it)
    if t == pa.uint64() or (t == pa.uint32() and physical_type == "INT32"):  # stored as the signed same bits
        signed = arr.view(pa.int64() if t == pa.uint64() else pa.int32())
        return signed if t == pa.uint64() else signed.cast(pa.int64())
    if pa.types.is_integer(t):
        return arr if t == pa.int64() else arr.cast(pa.int64())
    raise ValueError(f"cannot compare {t} columns physically")


def _as_arrow(values: Sequence[int | float | bytes], like: pa.Array) -> pa.Array:
    return pa.array(list(values), like.type)


class _Values:
    """The values one column chunk's metadata holds (dictionary entries, page and footer min/max, column
    index min/max), each tagged with where it came from, tested against the chunk's surviving values in
    one `is_in`: the test builds a hash table of the survivors on every call, so a test per page and
    statistic made the check quadratic (55 s of a 64 s verification on 12 feeds of 30 MB)."""

    def __init__(self, physical_type: str, *, float16: bool = False) -> None:
        self.physical_type = physical_type
        self.float16 = float16  # a FIXED_LEN_BYTE_ARRAY(2) of half floats (compared as floats are)
        self.values: list[int | float | bytes] = []
        self.tags: list[tuple[str, int, bool]] = []  # (source, position within it, may be a truncated prefix)
        self.bounds: list[str] = []  # "min", "max" or "" (a dictionary entry)

    def add(self, source: str, position: int, value: int | float | bytes, *, truncated_ok: bool = False,
            bound: str = "") -> None:
        self.values.append(value)
        self.tags.append((source, position, truncated_ok))
        self.bounds.append(bound)

    def add_stats(self, source: str, position: int, stats: Stats | None, *, truncated_ok: bool = False) -> None:
        if stats is None or self.physical_type == "BOOLEAN":
            return
        for bound, raw in (("min", stats.min), ("max", stats.max)):
            if raw is not None:
                self.add(source, position, plain_value(raw, self.physical_type), truncated_ok=truncated_ok,
                         bound=bound)

    def unused(self, survivors: pa.Array) -> list[tuple[str, int]]:
        """(source, position) of every value no surviving row holds, truncated prefixes of one excepted."""
        if not self.values:
            return []
        if self.physical_type in _FLOATS or self.float16:
            missing = self._missing_floats(survivors)
        elif pa.types.is_binary(survivors.type) and len(self.values) * LOOKUP_SURVIVORS_FROM <= len(survivors):
            # a few values and many strings: a table of the values, each survivor looked up in it, costs half
            # as much as a table of the survivors (strings hash slowly; numbers and few survivors: no gain)
            distinct = list(dict.fromkeys(self.values))  # bytes compare as Arrow compares binary values
            hit = pc.unique(pc.index_in(survivors, value_set=pa.array(distinct, pa.binary()))).drop_null()
            held = {distinct[i] for i in hit.to_pylist()}
            missing = [v not in held for v in self.values]
        elif self.physical_type in ("INT32", "INT64") and len(self.values) <= EQUAL_TESTS_UP_TO:
            # a few integers (a chunk's statistics and page index, often all it has): one array comparison
            # each costs ~3 µs, a hash table of 6,000 survivors ~60 (survivors hold no nulls: physical())
            held_values = survivors.to_numpy()
            missing = [not (held_values == v).any() for v in self.values]
        else:
            missing = pc.invert(pc.is_in(_as_arrow(self.values, survivors), value_set=survivors)).to_pylist()
        return [(src, pos) for (src, pos, truncated_ok), v, miss in zip(self.tags, self.values, missing, strict=True)
                if miss and not (truncated_ok and isinstance(v, bytes) and len(v) >= INDEX_TRUNCATE - 1
                                 and _prefix_of_survivor(v, survivors))]

    def _missing_floats(self, survivors: pa.Array) -> list[bool]:
        """Floats compared bit for bit (-0.0 is not 0.0 there, and NaN is a value), but for the one rewrite the
        Parquet spec requires of statistics: a min of zero is written -0.0 and a max of zero +0.0, whichever
        zero the rows hold (a float column whose least value was 0.0 failed verification: every erasure on
        a dataset with such a column). Either zero then stands for a surviving zero of either sign."""
        if self.float16:  # FIXED_LEN_BYTE_ARRAY(2): the little-endian half-precision bits, as bytes
            bits = np.array([int.from_bytes(v, "little") for v in self.values if isinstance(v, bytes)], np.uint64)
            held_bits = np.frombuffer(b"".join(survivors.to_pylist()), "<u2").astype(np.uint64)
            sign = np.uint64(1 << 15)
        else:  # FLOAT widened to a double on both sides (plain_value, physical), exactly
            bits = np.array(self.values, np.float64).view(np.uint64)
            held_bits = survivors.to_numpy(zero_copy_only=False).view(np.uint64)
            sign = np.uint64(1 << 63)
        missing = pc.invert(pc.is_in(pa.array(bits), value_set=pa.array(held_bits))).to_pylist()
        if not any(missing) or not (held_bits & ~sign == 0).any():
            return missing
        for k, (b, bound) in enumerate(zip(bits, self.bounds, strict=True)):
            if missing[k] and bound and b & ~sign == 0:  # a zero, and a zero survives
                missing[k] = bool(b == sign) != (bound == "min")
        return missing


def _prefix_of_survivor(v: bytes, survivors: pa.Array) -> bool:
    head = v[: INDEX_TRUNCATE - 1]
    return bool(pc.any(pc.starts_with(survivors.cast(pa.binary()), pattern=head)).as_py())


def _chunk_stats(meta: dict[int, Any]) -> list[list[Stats | None]]:
    return [[Stats.of(cc.get(3, {}).get(12)) for cc in rg.get(1, [])] for rg in meta.get(4, [])]


def check_file(blob: Blob, *, subject_ids: Collection[str] = (), label: str = "") -> StructureReport:
    """Check every column chunk of one file against its own surviving rows (see the module doc)."""
    report = StructureReport(files=1)
    blob = CachedBlob(blob)
    # one GET instead of several per column chunk; pyarrow then reads the bytes held, not through Python calls
    whole = blob.read(0, blob.size) if blob.size <= WHOLE_FILE_BYTES else None
    where = label or "file"
    try:
        tail = blob.read(max(0, blob.size - FOOTER_TAIL), min(blob.size, FOOTER_TAIL))
        footer = footer_bytes(tail)
        pf = pq.ParquetFile(BlobFile(blob) if whole is None else pa.BufferReader(whole), pre_buffer=False)
    except (PageFormatError, pa.ArrowException, OSError) as exc:
        report.problems.append(f"{where}: unreadable Parquet ({type(exc).__name__})")
        return report
    md = pf.metadata
    try:
        meta, _ = read_struct(footer)  # parsed once (in Python: the slowest part of the check when thrice)
    except PageFormatError as exc:
        report.problems.append(f"{where}: unreadable Parquet ({type(exc).__name__})")
        return report
    index_at = column_index_locations(meta)
    index_at += [[]] * (md.num_row_groups - len(index_at))
    footer_stats = _chunk_stats(meta)
    # each chunk's codec as the footer names it: pyarrow's names LZ4_RAW "LZ4" (the LZ4 frame format to pa.Codec)
    codecs = [[THRIFT_NAMES.get(cc.get(3, {}).get(4), "an unknown codec") for cc in rg.get(1, [])]
              for rg in meta.get(4, [])]
    kv = key_value_metadata(meta)
    ids = [s.encode() for s in subject_ids if s]
    for k, v in kv.items():
        if k == b"ARROW:schema" or k.startswith(b"etl.contract."):
            continue  # derived from the schema or the contract, never from a row
        if any(_token_in(i, k + b"=" + v) for i in ids):
            report.problems.append(f"{where}: footer key-value metadata holds a subject id")
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        flat = [n for i in range(rg.num_columns) if "." not in (n := rg.column(i).path_in_schema)]
        try:  # one read, not one a column
            rows = pf.read_row_group(r, columns=flat, use_threads=False) if flat else None
        except (pa.ArrowException, OSError) as exc:  # e.g. LZO, which the format has and pyarrow cannot read
            report.problems.append(f"{where}: row group {r} unreadable ({type(exc).__name__})")
            continue
        for i in range(rg.num_columns):
            chunk = rg.column(i)
            name = chunk.path_in_schema
            if "." in name or rows is None:
                continue  # nested columns: the platform writes none
            report.column_chunks += 1
            at = f"{where}: row group {r} column {name}"
            try:
                _check_chunk(report, blob, chunk, rows[name], _type_length(pf, i),
                             codecs[r][i], footer_stats[r][i], index_at[r][i] if i < len(index_at[r]) else None, at)
            except PageFormatError as exc:
                report.problems.append(f"{at}: {exc}")
            except (ValueError, TypeError, pa.ArrowException) as exc:  # a valid file the check cannot compare
                report.problems.append(f"{at}: its {rows.schema.field(name).type} values cannot be compared with "
                                       f"its metadata ({type(exc).__name__})")
    return report


def _check_chunk(report: StructureReport, blob: Blob, chunk: Any, column: pa.ChunkedArray, type_length: int,
                 codec: str, footer: Stats | None, index_at: tuple[int, int] | None, at: str) -> None:
    """Check one column chunk's dictionaries, statistics, page index and bloom filter against its rows."""
    survivors = physical(column, chunk.physical_type, type_length)
    start, length = chunk_span(chunk)
    pages = read_chunk(blob.read(start, length), codec, chunk.physical_type, type_length)
    report.pages += pages.pages
    values = _Values(chunk.physical_type, float16=pa.types.is_float16(column.type))
    for n, d in enumerate(pages.dictionaries):
        report.dictionary_pages += 1
        report.dictionary_values += len(d)
        for entry in d:
            values.add("dictionary", n, entry)
    for n, st in enumerate(pages.page_stats):
        values.add_stats("statistics", n, st)
    values.add_stats("statistics", -1, footer)
    report.statistics_checked += len(pages.page_stats) + (footer is not None)
    if index_at:
        ci = read_column_index(blob.read(*index_at))
        report.column_indexes += 1
        for n, (lo, hi, null) in enumerate(zip(ci.mins, ci.maxs, ci.null_pages, strict=False)):
            if not null:
                values.add_stats("index", n, Stats(lo, hi), truncated_ok=True)
    found = values.unused(survivors)
    unused = Counter(src for src, _ in found)
    for _page, count in sorted(Counter(pos for src, pos in found if src == "dictionary").items()):
        report.problems.append(f"{at}: dictionary page holds {count} value(s) no surviving row uses")
    if unused["statistics"]:
        report.problems.append(f"{at}: {unused['statistics']} statistics value(s) that no surviving row holds")
    if unused["index"]:
        report.problems.append(f"{at}: page index holds {unused['index']} value(s) no surviving row holds")
    if chunk.bloom_filter_offset and chunk.bloom_filter_offset > 0:
        report.bloom_filters += 1
        if not _bloom_matches(blob, chunk, survivors):
            report.problems.append(f"{at}: bloom filter is not the one its surviving values make")


def _type_length(pf: pq.ParquetFile, i: int) -> int:
    col = pf.schema.column(i)
    return int(getattr(col, "length", 0) or 0)


def _token_in(token: bytes, text: bytes) -> bool:
    start = 0
    while (at := text.find(token, start)) >= 0:
        before = text[at - 1 : at]
        after = text[at + len(token) : at + len(token) + 1]
        if not (before.isalnum() or after.isalnum()):
            return True
        start = at + 1
    return False


def _bloom_matches(blob: Blob, chunk: Any, survivors: pa.Array) -> bool:
    found = read_bloom(blob, chunk)
    if found is None:
        return False
    built = bloom_bitset(len(found.bitset), survivors, chunk.physical_type)
    return built == SplitBlockBloom(found.bitset).bitset
