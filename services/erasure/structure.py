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
Values are compared in their physical (PLAIN) form, exactly as the bytes hold them.
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

from services.erasure.blobs import Blob, BlobFile, CachedBlob
from services.erasure.bloom import SplitBlockBloom, bloom_bitset
from services.erasure.find import read_bloom
from services.erasure.pages import (
    CODECS,
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
    if pa.types.is_large_string(t):
        return arr.cast(pa.binary())
    if pa.types.is_decimal(t):
        if physical_type in ("INT32", "INT64"):  # unscaled value in the low 64 bits of each 16-byte slot
            raw = np.frombuffer(arr.buffers()[1], dtype=np.int64)[2 * arr.offset : 2 * (arr.offset + len(arr))]
            return pa.array(raw[::2], pa.int64())
        # FIXED_LEN_BYTE_ARRAY: big-endian two's complement of the unscaled value
        return pa.array([int(v.scaleb(t.scale)).to_bytes(type_length, "big", signed=True) for v in arr.to_pylist()],
                        pa.binary())
    if pa.types.is_boolean(t):
        return arr.cast(pa.int64())
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return arr.view(pa.int32()).cast(pa.int64())
    if pa.types.is_timestamp(t) or pa.types.is_date64(t) or pa.types.is_time64(t) or pa.types.is_duration(t):
        return arr.view(pa.int64())
    if pa.types.is_floating(t):
        return arr.cast(pa.float64())
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

    def __init__(self, physical_type: str) -> None:
        self.physical_type = physical_type
        self.values: list[int | float | bytes] = []
        self.tags: list[tuple[str, int, bool]] = []  # (source, position within it, may be a truncated prefix)

    def add(self, source: str, position: int, value: int | float | bytes, *, truncated_ok: bool = False) -> None:
        self.values.append(value)
        self.tags.append((source, position, truncated_ok))

    def add_stats(self, source: str, position: int, stats: Stats | None, *, truncated_ok: bool = False) -> None:
        if stats is None or self.physical_type == "BOOLEAN":
            return
        for raw in (stats.min, stats.max):
            if raw is not None:
                self.add(source, position, plain_value(raw, self.physical_type), truncated_ok=truncated_ok)

    def unused(self, survivors: pa.Array) -> list[tuple[str, int]]:
        """(source, position) of every value no surviving row holds, truncated prefixes of one excepted."""
        if not self.values:
            return []
        if pa.types.is_binary(survivors.type) and len(self.values) * LOOKUP_SURVIVORS_FROM <= len(survivors):
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
    footer_stats = _chunk_stats(meta)
    # each chunk's codec as the footer names it: pyarrow's names LZ4_RAW "LZ4" (the LZ4 frame format to pa.Codec)
    codecs = [[CODECS.get(cc.get(3, {}).get(4), "an unknown codec") for cc in rg.get(1, [])] for rg in meta.get(4, [])]
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
        rows = pf.read_row_group(r, columns=flat, use_threads=False) if flat else None  # one read, not one a column
        for i in range(rg.num_columns):
            chunk = rg.column(i)
            name = chunk.path_in_schema
            if "." in name or rows is None:
                continue  # nested columns: the platform writes none
            report.column_chunks += 1
            type_length = _type_length(pf, i)
            survivors = physical(rows[name], chunk.physical_type, type_length)
            start, length = chunk_span(chunk)
            try:
                pages = read_chunk(blob.read(start, length), codecs[r][i], chunk.physical_type, type_length)
            except PageFormatError as exc:
                report.problems.append(f"{where}: row group {r} column {name}: {exc}")
                continue
            report.pages += pages.pages
            values = _Values(chunk.physical_type)
            for n, d in enumerate(pages.dictionaries):
                report.dictionary_pages += 1
                report.dictionary_values += len(d)
                for entry in d:
                    values.add("dictionary", n, entry)
            for n, st in enumerate(pages.page_stats):
                values.add_stats("statistics", n, st)
            values.add_stats("statistics", -1, footer_stats[r][i])
            report.statistics_checked += len(pages.page_stats) + (footer_stats[r][i] is not None)
            loc = index_at[r][i] if r < len(index_at) and i < len(index_at[r]) else None
            if loc:
                ci = read_column_index(blob.read(*loc))
                report.column_indexes += 1
                for n, (lo, hi, null) in enumerate(zip(ci.mins, ci.maxs, ci.null_pages, strict=False)):
                    if not null:
                        values.add_stats("index", n, Stats(lo, hi), truncated_ok=True)
            found = values.unused(survivors)
            unused = Counter(src for src, _ in found)
            for _page, count in sorted(Counter(pos for src, pos in found if src == "dictionary").items()):
                report.problems.append(f"{where}: row group {r} column {name}: dictionary page holds "
                                       f"{count} value(s) no surviving row uses")
            if unused["statistics"]:
                report.problems.append(f"{where}: row group {r} column {name}: {unused['statistics']} statistics "
                                       "value(s) that no surviving row holds")
            if unused["index"]:
                report.problems.append(f"{where}: row group {r} column {name}: page index holds "
                                       f"{unused['index']} value(s) no surviving row holds")
            if chunk.bloom_filter_offset and chunk.bloom_filter_offset > 0:
                report.bloom_filters += 1
                if not _bloom_matches(blob, chunk, survivors):
                    report.problems.append(f"{where}: row group {r} column {name}: bloom filter is not the one "
                                           "its surviving values make")
    return report


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
