"""SPLICE: a Parquet file without the subjects' rows, re-encoding only the pages that held them.

A compacted file is large (256 MiB, row groups of up to 1,000,000 rows cut into pages of 20,000), and
a handful of subjects touch a handful of its pages. Decoding and re-encoding the whole file to drop them
(rewrite.py) costs the same whatever the share; here every page that holds no removed row is copied
byte for byte, and each page that does is decoded alone and written again from its surviving rows by
pyarrow, with the chunk's own encoding and codec (and, for a dictionary page's data, the chunk's own
dictionary: the indices of the copied pages stay valid).

Everything in the file that is derived from values is derived again from the rows left, so the bytes
keep nothing of a removed row (structure.py checks them, as for rewrite.py):

* a dictionary page is kept only if every entry is still used by a surviving row of the chunk;
  otherwise the file is not spliced (rewrite.py re-encodes the dictionary);
* the chunk's footer statistics are recomputed from the surviving rows when a removed value was the
  chunk's min or max (the null count always);
* column-index entries (min/max, null counts, level histograms) and offset-index entries of the pages
  written again are the new pages' own; the other pages' are kept, their offsets and first rows moved;
* a bloom filter of a chunk that lost rows is built again from the surviving values (by pyarrow, sized
  as rewrite.py's writer sizes it);
* sizes, value counts, page-encoding counts and the size statistics are recounted.

Splicing pays only when most of the bytes are copied: `plan` raises `NotSpliceable` (the caller then
rewrites the file whole) when the pages to write again hold more than `MAX_REWRITTEN_SHARE` of the bytes
of the row groups that lost rows, and for anything this code does not rebuild exactly (nested columns,
a chunk mixing dictionary and plain pages, no offset index, a dictionary the writer would not keep).
Everything that can fail is done in `plan`, before the sink is opened; `write` only copies ranges and
writes the bytes prepared.
"""

from __future__ import annotations

import itertools
import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import thrift
from contracts.lake_format import ZSTD_LEVEL
from contracts.parquet_codecs import BY_THRIFT, BY_WRITER
from contracts.thrift import BINARY, BOOL, I32, I64, LIST, STRUCT, Struct
from services.erasure.pages import DATA_PAGE, DATA_PAGE_V2, DICTIONARY_PAGE, plain_values, read_struct, walk_pages
from services.erasure.structure import INDEX_TRUNCATE, physical

#: splice only when the pages to write again hold at most this share of the touched row groups' bytes
MAX_REWRITTEN_SHARE = 0.4
#: a row group of fewer rows is one page a column at the writers' 20,000-row pages: nothing to copy
MIN_ROWS = 40_000
#: the pages written again are held in memory until the file is written: beyond this, rewrite whole
MAX_HELD_BYTES = 128 << 20
#: untouched pages are copied in reads of at most this many bytes
COPY_PIECE = 8 << 20
MAGIC = b"PAR1"

# Thrift field ids (parquet.thrift)
_FMD_ROWS, _FMD_GROUPS, _FMD_SCHEMA = 3, 4, 2
_SE_REPETITION, _SE_NAME, _SE_CHILDREN, _SE_CONVERTED, _SE_LOGICAL = 3, 4, 5, 6, 10
_UNSIGNED = {11, 12, 13, 14}  # ConvertedType UINT_8 .. UINT_64
_RG_COLUMNS, _RG_TOTAL_BYTES, _RG_ROWS, _RG_FILE_OFFSET, _RG_COMPRESSED, _RG_ORDINAL = 1, 2, 3, 5, 6, 7
_CC_FILE_OFFSET, _CC_META, _CC_OI, _CC_OI_LEN, _CC_CI, _CC_CI_LEN = 2, 3, 4, 5, 6, 7
(_MD_TYPE, _MD_ENCODINGS, _MD_PATH, _MD_CODEC, _MD_VALUES, _MD_UNCOMPRESSED, _MD_COMPRESSED, _MD_DATA_PAGE,
 _MD_INDEX_PAGE, _MD_DICTIONARY_PAGE, _MD_STATS, _MD_ENCODING_STATS, _MD_BLOOM, _MD_BLOOM_LEN,
 _MD_SIZE_STATS) = 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16
_ST_MAX, _ST_MIN, _ST_NULLS, _ST_DISTINCT, _ST_MAX_VALUE, _ST_MIN_VALUE = 1, 2, 3, 4, 5, 6
_PES_TYPE, _PES_ENCODING, _PES_COUNT = 1, 2, 3
_SS_UNENCODED, _SS_REP, _SS_DEF = 1, 2, 3
_OI_PAGES, _OI_UNENCODED = 1, 2
_PL_OFFSET, _PL_SIZE, _PL_FIRST_ROW = 1, 2, 3
_CI_NULL_PAGES, _CI_MINS, _CI_MAXS, _CI_ORDER, _CI_NULLS, _CI_REP, _CI_DEF = 1, 2, 3, 4, 5, 6, 7
_ASCENDING, _DESCENDING, _UNORDERED = 1, 2, 0
_REQUIRED = 0

_TYPES = {0: "BOOLEAN", 1: "INT32", 2: "INT64", 3: "INT96", 4: "FLOAT", 5: "DOUBLE", 6: "BYTE_ARRAY",
          7: "FIXED_LEN_BYTE_ARRAY"}
_DICTIONARY_ENCODINGS = {2, 8}  # PLAIN_DICTIONARY, RLE_DICTIONARY
_ENCODING_NAMES = {0: "PLAIN", 5: "DELTA_BINARY_PACKED", 6: "DELTA_LENGTH_BYTE_ARRAY", 7: "DELTA_BYTE_ARRAY",
                   9: "BYTE_STREAM_SPLIT"}
_PACK = {"INT32": "<i", "INT64": "<q", "FLOAT": "<f", "DOUBLE": "<d"}
_ARROW = {"INT32": pa.int32(), "INT64": pa.int64(), "FLOAT": pa.float32(), "DOUBLE": pa.float64()}
#: statistics and column-index values of fixed width, as struct formats (a boolean is one byte, 0 or 1)
_STAT_PACK = {**_PACK, "BOOLEAN": "<B"}


class NotSpliceable(Exception):
    """This file is rewritten whole instead (the reason says why; not an error)."""


@dataclass
class Layout:
    """Where a source file's parts are: its parsed footer and, per row group and column, its offset index."""

    footer: Struct
    size: int
    offset_indexes: list[list[dict[int, Any]]]  # as read (untyped: read, never written back)

    def group(self, r: int) -> Struct:
        return thrift.field(self.footer, _FMD_GROUPS)[r]


def read_layout(read_at: Callable[[int, int], bytes], size: int) -> Layout:
    """The footer and every offset index (NotSpliceable when a chunk has none, or the schema nests)."""
    tail = read_at(size - 8, 8)
    if size < 12 or tail[4:] != MAGIC:
        raise NotSpliceable("not a Parquet file")
    n = int.from_bytes(tail[:4], "little")
    footer = thrift.decode(read_at(size - 8 - n, n))[0]
    schema = thrift.field(footer, _FMD_SCHEMA)
    flat = not any(thrift.field(e, _SE_CHILDREN) for e in schema[1:])
    if not flat or thrift.field(schema[0], _SE_CHILDREN) != len(schema) - 1:
        raise NotSpliceable("nested columns")
    groups = thrift.field(footer, _FMD_GROUPS) or []
    spans = [(thrift.field(cc, _CC_OI), thrift.field(cc, _CC_OI_LEN))
             for rg in groups for cc in thrift.field(rg, _RG_COLUMNS)]
    if not spans or any(off is None or not length for off, length in spans):
        raise NotSpliceable("no row groups, or a column chunk without an offset index")
    # the offset indexes are written together: one read for all of them
    start = min(off for off, _ in spans)
    end = max(off + length for off, length in spans)
    blob = read_at(start, end - start)
    indexes = [read_struct(blob, off - start)[0] for off, _ in spans]
    per_group, k = [], 0
    for rg in groups:
        n_cols = len(thrift.field(rg, _RG_COLUMNS))
        per_group.append(indexes[k : k + n_cols])
        k += n_cols
    return Layout(footer, size, per_group)


def touched_share(layout: Layout, deleted: Mapping[int, np.ndarray]) -> tuple[int, int]:
    """(bytes of the data pages holding a removed row, bytes of the row groups that lost rows). A row group
    that lost every row counts for neither: it is dropped, nothing of it read or written again."""
    touched = total = 0
    for r, positions in deleted.items():
        rows = thrift.field(layout.group(r), _RG_ROWS)
        if len(positions) >= rows:
            continue
        for oi in layout.offset_indexes[r]:
            locs = oi[_OI_PAGES]
            hits = np.searchsorted(positions, [*(p[_PL_FIRST_ROW] for p in locs), rows])
            for k, p in enumerate(locs):
                size = p[_PL_SIZE]
                total += size
                if hits[k + 1] > hits[k]:
                    touched += size
    return touched, total


# -- re-encoding a chunk's touched pages ----------------------------------------------------------------------


@dataclass
class _Column:
    """What re-encoding a chunk's pages needs of its column (the same in every row group)."""

    name: str
    leaf: Struct  # its SchemaElement
    physical_type: str
    nullable: bool
    codec: str
    signed: bool = True


@dataclass
class _NewPage:
    """One page of an output chunk: copied from the source (`src`) or written again (`data`)."""

    rows: int
    src: tuple[int, int] | None = None
    data: bytes | None = None
    index: dict[int, Any] = field(default_factory=dict)  # column-index values of this page, by field id
    unencoded: int | None = None


@dataclass
class _Reencoded:
    pages: list[_NewPage]
    uncompressed: int  # headers + uncompressed bodies, as total_uncompressed_size counts them
    encodings: Counter[tuple[int, int]]  # (page type, encoding) -> pages


@dataclass
class _Touched:
    """A source page holding removed rows: its bytes, its first row and row count, the rows to remove."""

    raw: bytes
    first_row: int
    rows: int
    positions: np.ndarray


def _mini_file(col: _Column, md: Struct, pages: Sequence[bytes], rows: int, has_dictionary: bool) -> bytes:
    """A one-column Parquet file of the given pages (a dictionary page first, if any), to decode them."""
    body = bytearray(MAGIC)
    offsets = []
    for p in pages:
        offsets.append(len(body))
        body += p
    meta: Struct = {
        _MD_TYPE: md[_MD_TYPE], _MD_ENCODINGS: md[_MD_ENCODINGS], _MD_PATH: md[_MD_PATH], _MD_CODEC: md[_MD_CODEC],
        _MD_VALUES: (I64, rows), _MD_UNCOMPRESSED: (I64, len(body) - 4), _MD_COMPRESSED: (I64, len(body) - 4),
        _MD_DATA_PAGE: (I64, offsets[1] if has_dictionary else offsets[0]),
    }
    if has_dictionary:
        meta[_MD_DICTIONARY_PAGE] = (I64, offsets[0])
    root: Struct = {_SE_NAME: (BINARY, b"schema"), _SE_CHILDREN: (I32, 1)}
    footer: Struct = {
        1: (I32, 1),
        _FMD_SCHEMA: (LIST, (STRUCT, [root, col.leaf])),
        _FMD_ROWS: (I64, rows),
        _FMD_GROUPS: (LIST, (STRUCT, [{
            _RG_COLUMNS: (LIST, (STRUCT, [{_CC_FILE_OFFSET: (I64, 4), _CC_META: (STRUCT, meta)}])),
            _RG_TOTAL_BYTES: (I64, len(body) - 4), _RG_ROWS: (I64, rows)}])),
    }
    encoded = thrift.encode(footer)
    return bytes(body) + encoded + struct.pack("<I", len(encoded)) + MAGIC


def _page_kind(raw: bytes) -> tuple[int, int, bool]:
    """(page type, encoding, has a checksum) from a data page's header."""
    header = read_struct(raw)[0]
    kind = header.get(1)
    sub = header.get(5 if kind == DATA_PAGE else 8) or {}
    # (DATA_PAGE is 0: `kind or -1` made every version-1 page look like none, written again as version 2)
    return (-1 if kind is None else int(kind)), int(sub.get(2 if kind == DATA_PAGE else 4, -1)), \
        header.get(4) is not None


def _entries(dictionary_page: bytes) -> int:
    return int(read_struct(dictionary_page)[0].get(7, {}).get(1, -1))


class _Dictionary:
    """A chunk's dictionary page, and what re-encoding its data pages against it needs (made once a chunk).

    pyarrow keeps a dictionary it is given (an Arrow dictionary array) only for binary values, so the
    pages are written from stand-ins: the page's indices into the chunk's dictionary, over a binary
    dictionary of as many distinct entries. A data page holds only levels and indices, so it is the page
    the chunk's own dictionary would give; its column-index entry is computed here from the values."""

    def __init__(self, col: _Column, page: bytes) -> None:
        if col.physical_type not in _ARROW and col.physical_type != "BYTE_ARRAY":
            raise NotSpliceable(f"column {col.name}: a dictionary of {col.physical_type}")  # e.g. a wide decimal
        header, end = read_struct(page)
        self.page = page
        self.entries = int(header.get(7, {}).get(1, -1))
        body = page[end:]
        block = BY_WRITER[col.codec].block  # LZ4_RAW: the writer's "lz4", but pa.Codec("lz4_raw")
        raw = pa.Codec(block).decompress(body, decompressed_size=header[2]) if block else body
        self.plain = plain_values(bytes(raw), self.entries, col.physical_type)
        self.standins = pc.cast(pa.array(np.arange(self.entries)), pa.string()).cast(pa.binary())
        self.values: pa.Array | None = None  # the entries as the column's Arrow type, once a page is decoded

    def indices(self, survivors: pa.Array, physical_type: str) -> pa.Array:
        if self.values is None and pa.types.is_decimal128(survivors.type) and physical_type in ("INT32", "INT64"):
            # the entries are unscaled integers (a cast would read 7 as 7.00, not 0.07): each made the low
            # 8 bytes of a 16-byte two's complement decimal, the high 8 its sign
            unscaled = np.array(self.plain, dtype=np.int64)
            words = np.stack([unscaled, unscaled >> 63], axis=1)
            self.values = pa.Array.from_buffers(survivors.type, len(unscaled), [None, pa.py_buffer(words.tobytes())])
        if self.values is None:
            raw = pa.array(self.plain, pa.binary() if physical_type == "BYTE_ARRAY" else _ARROW[physical_type])
            try:
                self.values = raw.cast(survivors.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise NotSpliceable(f"dictionary of {survivors.type}") from exc
        found = pc.index_in(survivors, value_set=self.values)
        if found.null_count != survivors.null_count:
            raise NotSpliceable("a page value missing from its chunk's dictionary")
        return pa.DictionaryArray.from_arrays(found, self.standins)


def _reencode(col: _Column, md: Struct, dictionary: _Dictionary | None, touched: Sequence[_Touched],
              index: dict[int, Any] | None) -> tuple[list[_Reencoded], pa.Array]:
    """The chunk's touched pages written again without their removed rows (one _Reencoded each, in order),
    and the removed rows' values. All are decoded together, from one file of the chunk's dictionary and
    these pages, and written into one file, a row group a page (its survivors are one page). `index` is the
    chunk's column index (its entries' shapes are followed), None when it has none."""
    kinds = {_page_kind(t.raw) for t in touched}
    if len(kinds) != 1:
        raise NotSpliceable(f"column {col.name}: pages of different kinds or encodings")
    kind, encoding, checksum = kinds.pop()
    if (encoding in _DICTIONARY_ENCODINGS) != (dictionary is not None):
        raise NotSpliceable(f"column {col.name}: a chunk mixing dictionary and plain pages")
    pages = [t.raw for t in touched] if dictionary is None else [dictionary.page, *(t.raw for t in touched)]
    rows = sum(t.rows for t in touched)
    arr = pq.ParquetFile(pa.BufferReader(_mini_file(col, md, pages, rows, dictionary is not None)),
                         pre_buffer=False).read_row_group(0, use_threads=False).column(0)
    arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    keep = np.ones(rows, dtype=bool)
    start = 0
    for t in touched:
        keep[t.positions - t.first_row + start] = False
        start += t.rows
    removed = arr.filter(pa.array(~keep))
    options = _chunk_writer_options(col, kind)
    options.update(data_page_size=1 << 30, write_page_checksum=checksum)
    if dictionary is not None:
        options.update(use_dictionary=True, write_statistics=False, write_page_index=False)
    else:
        options.update(use_dictionary=False, column_encoding={col.name: _ENCODING_NAMES.get(encoding, "PLAIN")},
                       write_statistics=_MD_STATS in md, write_page_index=index is not None)
    survivors: list[pa.Array] = []
    start = 0
    for t in touched:
        survivors.append(arr.slice(start, t.rows).filter(pa.array(keep[start : start + t.rows])))
        start += t.rows
    written = [(dictionary.indices(v, col.physical_type) if dictionary is not None else v) for v in survivors if len(v)]
    out = b""
    if written:
        schema = pa.schema([pa.field(col.name, written[0].type, nullable=col.nullable)])
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, schema, **options) as w:
            for v in written:  # one row group each: a page's survivors stay one page
                w.write_table(pa.table([v], schema=schema), row_group_size=len(v))
        out = sink.getvalue().to_pybytes()
    results, group = [], 0
    footer = _footer(out) if out else {}
    for v in survivors:
        if not len(v):
            results.append(_Reencoded([], 0, Counter()))
            continue
        new = _lift_pages(col, out, footer, group, dictionary, encoding)
        group += 1
        if dictionary is not None and index is not None:
            if len(new.pages) != 1:
                raise NotSpliceable(f"column {col.name}: a dictionary page's data written as several pages")
            new.pages[0].index = _dictionary_index_entry(col, v, index)
            new.pages[0].unencoded = (pc.sum(pc.binary_length(v)).as_py() or 0
                                      if col.physical_type == "BYTE_ARRAY" else None)
        results.append(new)
    return results, removed


def _footer(data: bytes) -> dict[int, Any]:
    n = int.from_bytes(data[-8:-4], "little")
    return read_struct(data, len(data) - 8 - n)[0]


def _dictionary_index_entry(col: _Column, survivors: pa.Array, ci: dict[int, Any]) -> dict[int, Any]:
    """A dictionary-encoded page's column-index entry, shaped as the chunk's other entries are."""
    nulls = survivors.null_count
    n_pages = len(ci.get(_CI_NULL_PAGES, []))
    entry: dict[int, Any] = {_CI_NULL_PAGES: nulls == len(survivors), _CI_MINS: b"", _CI_MAXS: b""}
    if nulls < len(survivors):
        entry[_CI_MINS], entry[_CI_MAXS] = _plain_min_max(col, survivors)
    if _CI_NULLS in ci:
        entry[_CI_NULLS] = nulls
    for fid, levels in ((_CI_REP, [len(survivors)]), (_CI_DEF, [nulls, len(survivors) - nulls])):
        if fid in ci:
            width = len(ci[fid]) // n_pages if n_pages else 0
            if width == 1:
                entry[fid] = [len(survivors)]
            elif width == len(levels):
                entry[fid] = levels
            else:
                raise NotSpliceable(f"column {col.name}: level histograms of another shape")
    return entry


def _plain_min_max(col: _Column, values: pa.Array) -> tuple[bytes, bytes]:
    """The min and max of `values` in PLAIN bytes, in the column's Parquet order (NotSpliceable past what
    a column index holds untruncated)."""
    mm = pc.min_max(values)
    pair = physical(pa.array([mm["min"].as_py(), mm["max"].as_py()], values.type), col.physical_type)
    if col.physical_type == "BYTE_ARRAY":
        lo, hi = (v.as_py() for v in pair)
        if max(len(lo), len(hi)) >= INDEX_TRUNCATE:
            raise NotSpliceable(f"column {col.name}: a value long enough to be truncated in the page index")
        return lo, hi
    fmt = _PACK.get(col.physical_type)
    if fmt is None:
        raise NotSpliceable(f"column {col.name}: page index of {col.physical_type}")
    if not col.signed:
        fmt = fmt.upper()
    mask = (1 << (8 * struct.calcsize(fmt))) - 1
    lo, hi = (struct.pack(fmt, v.as_py() & mask if not col.signed else v.as_py()) for v in pair)
    return lo, hi


def _lift_pages(col: _Column, out: bytes, footer: dict[int, Any], group: int, dictionary: _Dictionary | None,
                encoding: int) -> _Reencoded:
    """The data pages (and their index entries) of row group `group` of a one-column file pyarrow wrote."""
    rg = footer[_FMD_GROUPS][group]
    cc = rg[_RG_COLUMNS][0]
    md = cc[_CC_META]
    if dictionary is None and _TYPES.get(md.get(_MD_TYPE)) != col.physical_type:
        raise NotSpliceable(f"column {col.name}: the writer chose another physical type")
    rows = rg[_RG_ROWS]
    start = md[_MD_DATA_PAGE]
    dict_at = md.get(_MD_DICTIONARY_PAGE)
    if dictionary is not None and (dict_at is None or _entries(out[dict_at:start]) != dictionary.entries):
        raise NotSpliceable(f"column {col.name}: the writer did not keep the stand-in dictionary")
    ci = read_struct(out, cc[_CC_CI])[0] if _CC_CI in cc else None
    oi = read_struct(out, cc[_CC_OI])[0] if _CC_OI in cc else None
    chunk_end = (dict_at if dict_at is not None else start) + md[_MD_COMPRESSED]
    pages: list[_NewPage] = []
    uncompressed = 0
    encodings: Counter[tuple[int, int]] = Counter()
    data_pages = [p for p in walk_pages(memoryview(out)[start:chunk_end], start) if p.kind != DICTIONARY_PAGE]
    firsts = ([p[_PL_FIRST_ROW] for p in oi[_OI_PAGES]] if oi is not None
              else list(np.cumsum([0] + [p.num_values for p in data_pages[:-1]])))
    for k, p in enumerate(data_pages):
        if p.encoding != encoding:
            raise NotSpliceable(f"column {col.name}: the writer chose another encoding")
        end = firsts[k + 1] if k + 1 < len(data_pages) else rows
        page = _NewPage(int(end - firsts[k]), data=out[p.offset : p.offset + p.header_bytes + p.compressed_size])
        if ci is not None:
            page.index = _index_entry(ci, k, len(data_pages))
        if oi is not None and _OI_UNENCODED in oi:
            page.unencoded = oi[_OI_UNENCODED][k]
        pages.append(page)
        uncompressed += p.header_bytes + p.uncompressed_size
        encodings[(p.kind, p.encoding)] += 1
    return _Reencoded(pages, uncompressed, encodings)


def _index_entry(ci: dict[int, Any], k: int, n_pages: int) -> dict[int, Any]:
    """Page k's values in a column index (histograms: its slice of the flattened per-page lists)."""
    entry: dict[int, Any] = {}
    for fid in (_CI_NULL_PAGES, _CI_MINS, _CI_MAXS, _CI_NULLS):
        if fid in ci:
            entry[fid] = ci[fid][k]
    for fid in (_CI_REP, _CI_DEF):
        if fid in ci:
            width = len(ci[fid]) // n_pages if n_pages else 0
            entry[fid] = ci[fid][k * width : (k + 1) * width]
    return entry


# -- planning a file ------------------------------------------------------------------------------------------


@dataclass
class _ChunkPlan:
    cc: Struct  # the source ColumnChunk (its metadata is rebuilt at write time)
    dictionary: tuple[int, int] | bytes | None  # source range of the dictionary page, or a new one
    pages: list[_NewPage]
    meta: Struct  # the new ColumnMetaData, offsets filled at write time
    column_index: Struct | None  # typed, ready to write
    unencoded: bool  # whether the offset index lists each page's unencoded byte-array bytes
    bloom: bytes | tuple[int, int] | None  # rebuilt bytes, or the source range to copy


@dataclass
class _GroupPlan:
    rg: Struct
    chunks: list[_ChunkPlan]
    rows: int


@dataclass
class Plan:
    """Everything `write` needs: the output's row groups, with the bytes written again held."""

    footer: Struct
    groups: list[_GroupPlan]
    rows: int


def plan(read_at: Callable[[int, int], bytes], layout: Layout, deleted: Mapping[int, np.ndarray],
         survivors_of: Mapping[int, pa.Table], bloom_options: Mapping[str, Mapping[str, Any]]) -> Plan:
    """The spliced file's plan. `deleted` maps a row group to its removed rows (sorted, within it);
    `survivors_of` a row group to its surviving rows of every column that has a dictionary page or a
    bloom filter (to test the dictionary and rebuild the filter; dictionary columns as Arrow
    dictionaries), and a row group that lost no row to its dictionary columns (a copied dictionary must
    not keep an entry no row uses either). `bloom_options` are the writer's per column (rewrite.options_of)."""
    touched, total = touched_share(layout, deleted)
    if touched > MAX_REWRITTEN_SHARE * total:  # (0 of 0: only whole row groups dropped, the rest copied)
        raise NotSpliceable("most of the touched row groups' pages hold a removed row")
    if touched > MAX_HELD_BYTES:
        raise NotSpliceable("too many bytes to hold")
    schema = thrift.field(layout.footer, _FMD_SCHEMA)
    columns = [_column(leaf, thrift.field(cc, _CC_META))
               for leaf, cc in zip(schema[1:], thrift.field(layout.group(0), _RG_COLUMNS), strict=True)]
    groups: list[_GroupPlan] = []
    for r, rg in enumerate(thrift.field(layout.footer, _FMD_GROUPS)):
        positions = deleted.get(r)
        rows = thrift.field(rg, _RG_ROWS)
        if positions is not None and len(positions) >= rows:
            continue  # every row removed: the row group goes
        chunks = []
        for i, cc in enumerate(thrift.field(rg, _RG_COLUMNS)):
            oi = layout.offset_indexes[r][i]
            if positions is None or len(positions) == 0:
                chunks.append(_copied(columns[i], cc, oi, rows, read_at, survivors_of.get(r)))
            else:
                chunks.append(_spliced(columns[i], cc, oi, rows, positions, read_at,
                                       survivors_of[r], bloom_options.get(columns[i].name)))
        kept = rows - (0 if positions is None else len(positions))
        groups.append(_GroupPlan(rg, chunks, kept))
    return Plan(layout.footer, groups, sum(g.rows for g in groups))


def _column(leaf: Struct, md: Struct) -> _Column:
    codec = BY_THRIFT.get(thrift.field(md, _MD_CODEC))
    if codec is None:
        raise NotSpliceable("a codec pyarrow cannot write")
    name = thrift.field(leaf, _SE_NAME).decode()
    logical = thrift.field(leaf, _SE_LOGICAL) or {}
    integer = thrift.field(logical, 10) or {}  # LogicalType.INTEGER: (bitWidth, isSigned)
    unsigned = thrift.field(leaf, _SE_CONVERTED) in _UNSIGNED or thrift.field(integer, 2) is False
    return _Column(name, leaf, _TYPES[thrift.field(leaf, 1)], thrift.field(leaf, _SE_REPETITION) != _REQUIRED,
                   codec.writer, signed=not unsigned)


def _source_pages(cc: Struct, oi: dict[int, Any], rows: int, read_at: Callable[[int, int], bytes],
                  ) -> tuple[Struct, list[_NewPage], tuple[int, int] | None, dict[int, Any] | None]:
    """A source chunk's metadata (a copy to change), its pages as copies, its dictionary page's range and its
    column index (untyped; each page's entry on the page)."""
    md = dict(thrift.field(cc, _CC_META))
    locs = oi[_OI_PAGES]
    firsts = [p[_PL_FIRST_ROW] for p in locs] + [rows]
    unencoded = oi.get(_OI_UNENCODED) or [None] * len(locs)
    ci = read_struct(read_at(thrift.field(cc, _CC_CI), thrift.field(cc, _CC_CI_LEN)))[0] if _CC_CI in cc else None
    pages = []
    for k, p in enumerate(locs):
        page = _NewPage(firsts[k + 1] - firsts[k], src=(p[_PL_OFFSET], p[_PL_SIZE]), unencoded=unencoded[k])
        if ci is not None:
            page.index = _index_entry(ci, k, len(locs))
        pages.append(page)
    dict_at = thrift.field(md, _MD_DICTIONARY_PAGE)
    first = locs[0][_PL_OFFSET] if locs else thrift.field(md, _MD_DATA_PAGE)
    dictionary = (dict_at, first - dict_at) if dict_at is not None and dict_at < first else None
    return md, pages, dictionary, ci


def _copied(col: _Column, cc: Struct, oi: dict[int, Any], rows: int, read_at: Callable[[int, int], bytes],
            rows_of: pa.Table | None) -> _ChunkPlan:
    """A chunk of a row group that lost no row: its pages, indexes and bloom filter as they are (`rows_of`:
    the row group's dictionary columns; a dictionary holding an entry no row uses is not copied)."""
    md, pages, dictionary, ci = _source_pages(cc, oi, rows, read_at)
    if dictionary is not None and (rows_of is None
                                   or not _dictionary_all_used(col, rows_of, _entries(read_at(*dictionary)))):
        raise NotSpliceable(f"column {col.name}: a dictionary entry no row uses, in a row group that lost no row")
    column_index = _column_index(col, ci, pages) if ci is not None else None
    return _ChunkPlan(cc, dictionary, pages, md, column_index, _OI_UNENCODED in oi, _bloom_range(md, read_at))


def _bloom_range(md: Struct, read_at: Callable[[int, int], bytes]) -> tuple[int, int] | None:
    offset = thrift.field(md, _MD_BLOOM)
    if offset is None:
        return None
    length = thrift.field(md, _MD_BLOOM_LEN)
    if not length:
        header, end = read_struct(read_at(offset, 64))
        length = end + header[1]
    return offset, length


def _src(page: _NewPage) -> tuple[int, int]:
    assert page.src is not None  # a source page is a copy until replaced
    return page.src


def _spliced(col: _Column, cc: Struct, oi: dict[int, Any], rows: int, positions: np.ndarray,
             read_at: Callable[[int, int], bytes], survivors: pa.Table, bloom_option: Mapping[str, Any] | None,
             ) -> _ChunkPlan:
    md, source, dictionary_range, ci = _source_pages(cc, oi, rows, read_at)
    if dictionary_range is not None and not _all_dictionary_pages(md):
        raise NotSpliceable(f"column {col.name}: a dictionary chunk with plain pages (or no encoding counts)")
    dictionary = _Dictionary(col, read_at(*dictionary_range)) if dictionary_range else None
    if dictionary is not None and not _dictionary_all_used(col, survivors, dictionary.entries):
        # an entry no row left uses (only removed rows did, or none ever did): the column is written again
        # whole from its surviving values, dictionary included; the other columns still splice
        return _rechunked(col, cc, md, oi, ci, survivors, bloom_option, thrift.field(md, _MD_VALUES) - len(positions),
                          _page_kind(read_at(*_src(source[0])))[0] if source else DATA_PAGE)
    firsts = [p[_PL_FIRST_ROW] for p in oi[_OI_PAGES]]
    bounds = np.searchsorted(positions, [*firsts, rows])
    touched_at = [k for k in range(len(source)) if bounds[k + 1] > bounds[k]]
    touched = [_Touched(read_at(*_src(source[k])), firsts[k], source[k].rows, positions[bounds[k] : bounds[k + 1]])
               for k in touched_at]
    new, removed = _reencode(col, md, dictionary, touched, ci)
    uncompressed = thrift.field(md, _MD_UNCOMPRESSED)
    encodings = Counter({(thrift.field(e, _PES_TYPE), thrift.field(e, _PES_ENCODING)): thrift.field(e, _PES_COUNT)
                         for e in thrift.field(md, _MD_ENCODING_STATS) or []})
    # pyarrow counts its version-2 data pages as DATA_PAGE there: counted as the source counts them
    as_v1 = {DATA_PAGE_V2: DATA_PAGE} if not any(t == DATA_PAGE_V2 for t, _ in encodings) else {}
    replaced = dict(zip(touched_at, new, strict=True))
    pages: list[_NewPage] = []
    for k, page in enumerate(source):
        if k not in replaced:
            pages.append(page)
            continue
        old = next(walk_pages(touched[touched_at.index(k)].raw))
        uncompressed += replaced[k].uncompressed - (old.header_bytes + old.uncompressed_size)
        encodings[(as_v1.get(old.kind, old.kind), old.encoding)] -= 1
        encodings.update({(as_v1.get(t, t), e): n for (t, e), n in replaced[k].encodings.items()})
        pages.extend(replaced[k].pages)
    if pa.types.is_dictionary(removed.type):
        removed = removed.dictionary_decode()
    meta = md
    meta[_MD_VALUES] = (I64, thrift.field(md, _MD_VALUES) - len(positions))
    meta[_MD_UNCOMPRESSED] = (I64, uncompressed)
    if _MD_ENCODING_STATS in md:
        kept = [{_PES_TYPE: (I32, t), _PES_ENCODING: (I32, e), _PES_COUNT: (I32, n)}
                for (t, e), n in encodings.items() if n > 0]
        meta[_MD_ENCODING_STATS] = (LIST, (STRUCT, kept))
    if _MD_STATS in md:
        meta[_MD_STATS] = (STRUCT, _statistics(col, thrift.field(md, _MD_STATS), removed, pages,
                                               dictionary is not None))
    _size_statistics(meta, pages, ci)
    column_index = _column_index(col, ci, pages) if ci is not None else None
    bloom: bytes | tuple[int, int] | None = None
    if _MD_BLOOM in md:
        if bloom_option is None:
            raise NotSpliceable(f"column {col.name}: a bloom filter without writer options")
        bloom = _bloom(col, survivors.column(col.name), bloom_option)
    return _ChunkPlan(cc, dictionary_range, pages, meta, column_index, _OI_UNENCODED in oi, bloom)


def _chunk_writer_options(col: _Column, kind: int) -> dict[str, Any]:
    """What a one-column writer must share with the chunk it writes pages for: codec and level, page version,
    one dictionary page whatever its size, decimals stored as the chunk stores them, no Arrow schema."""
    return {
        "compression": col.codec, "compression_level": ZSTD_LEVEL if col.codec == "zstd" else None,
        "data_page_version": "1.0" if kind == DATA_PAGE else "2.0", "dictionary_pagesize_limit": 1 << 30,
        "store_decimal_as_integer": col.physical_type in ("INT32", "INT64"), "store_schema": False,
    }


def _rechunked(col: _Column, cc: Struct, md: Struct, oi: dict[int, Any], ci: dict[int, Any] | None,
               survivors: pa.Table, bloom_option: Mapping[str, Any] | None, rows: int, kind: int) -> _ChunkPlan:
    """A dictionary chunk written again whole from its surviving values (a fresh dictionary of the values
    left, its pages cut by the writer, every derived structure the writer's)."""
    values = survivors.column(col.name)
    arr = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()  # a dictionary array would be written with its whole dictionary
    if len(arr) != rows:
        raise NotSpliceable(f"column {col.name}: surviving values do not match the rows left")
    options = _chunk_writer_options(col, kind)
    options.update(use_dictionary=True, write_statistics=_MD_STATS in md, write_page_index=ci is not None)
    if bloom_option is not None and _MD_BLOOM in md:
        options["bloom_filter_options"] = {col.name: dict(bloom_option)}
    schema = pa.schema([pa.field(col.name, arr.type, nullable=col.nullable)])
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, **options) as w:
        w.write_table(pa.table([arr], schema=schema), row_group_size=max(1, len(arr)))
    out = sink.getvalue().to_pybytes()
    n = int.from_bytes(out[-8:-4], "little")
    typed = thrift.decode(out, len(out) - 8 - n)[0]
    new_cc = thrift.field(thrift.field(typed, _FMD_GROUPS)[0], _RG_COLUMNS)[0]
    new_md = thrift.field(new_cc, _CC_META)
    start, dict_at = thrift.field(new_md, _MD_DATA_PAGE), thrift.field(new_md, _MD_DICTIONARY_PAGE)
    if dict_at is None or not _all_dictionary_pages(new_md):
        raise NotSpliceable(f"column {col.name}: the writer did not dictionary-encode the values left")
    data_encodings = {thrift.field(e, _PES_ENCODING) for e in thrift.field(new_md, _MD_ENCODING_STATS)
                      if thrift.field(e, _PES_TYPE) != DICTIONARY_PAGE}
    if len(data_encodings) != 1:
        raise NotSpliceable(f"column {col.name}: the values left written with several encodings")
    pages = _lift_pages(col, out, _footer(out), 0, None, data_encodings.pop()).pages
    meta = dict(md)
    for f in (_MD_ENCODINGS, _MD_VALUES, _MD_UNCOMPRESSED, _MD_STATS, _MD_ENCODING_STATS, _MD_SIZE_STATS):
        meta.pop(f, None)
        if f in new_md:
            meta[f] = new_md[f]
    bloom: bytes | None = None
    if _MD_BLOOM in md:
        offset, length = thrift.field(new_md, _MD_BLOOM), thrift.field(new_md, _MD_BLOOM_LEN)
        if offset is None or not length:
            raise NotSpliceable(f"column {col.name}: the writer made no bloom filter")
        bloom = out[offset : offset + length]
    column_index = _column_index(col, ci, pages) if ci is not None else None
    return _ChunkPlan(cc, out[dict_at:start], pages, meta, column_index, _OI_UNENCODED in oi, bloom)


def _all_dictionary_pages(md: Struct) -> bool:
    """Whether the chunk's page-encoding counts say every data page is dictionary-encoded."""
    counts = thrift.field(md, _MD_ENCODING_STATS)
    return bool(counts) and all(thrift.field(e, _PES_TYPE) == DICTIONARY_PAGE
                                or thrift.field(e, _PES_ENCODING) in _DICTIONARY_ENCODINGS for e in counts)


def _dictionary_all_used(col: _Column, survivors: pa.Table, entries: int) -> bool:
    """Whether every entry of the chunk's dictionary page is used by a surviving row."""
    if col.name not in survivors.column_names:
        raise NotSpliceable(f"column {col.name}: dictionary not tested")
    values = survivors.column(col.name)
    arr = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        if len(arr.dictionary) != entries:
            raise NotSpliceable(f"column {col.name}: dictionary read is not the page's")
        indices = arr.indices.drop_null() if arr.indices.null_count else arr.indices
        used = np.count_nonzero(np.bincount(indices.to_numpy(), minlength=entries)) if len(indices) else 0
    else:
        used = pc.count_distinct(arr).as_py()
    return bool(used == entries)


def _statistics(col: _Column, st: Struct, removed: pa.Array, pages: Sequence[_NewPage], dictionary: bool,
                ) -> Struct:
    """The chunk's Statistics for the rows left: the nulls recounted; the min and max kept when held by rows
    left (always so in a dictionary chunk: every entry is still used), else taken from the pages' column-index
    entries (exact for fixed-width values; NotSpliceable for strings, whose entries may be truncated)."""
    out = dict(st)
    out.pop(_ST_DISTINCT, None)
    if _ST_NULLS in st:
        out[_ST_NULLS] = (I64, thrift.field(st, _ST_NULLS) - removed.null_count)
    if col.physical_type not in _STAT_PACK and col.physical_type != "BYTE_ARRAY":
        raise NotSpliceable(f"column {col.name}: statistics of {col.physical_type} are not recomputed")
    values = physical(removed, col.physical_type) if len(removed) - removed.null_count else None
    bounds = {thrift.field(st, f) for f in (_ST_MIN, _ST_MAX, _ST_MIN_VALUE, _ST_MAX_VALUE) if f in st}
    if dictionary or values is None or not bounds:
        return out
    if not pc.any(pc.is_in(values, value_set=_as_arrow(bounds, col, values.type))).as_py():
        return out  # no removed value was the min or the max: both are held by rows left
    fmt = _STAT_PACK.get(col.physical_type)
    live = [p.index for p in pages if not p.index.get(_CI_NULL_PAGES, True)]
    if fmt is None or not live or (not col.signed and col.physical_type.startswith("INT")):
        raise NotSpliceable(f"column {col.name}: a removed row held the chunk's min or max")
    lo = min((e[_CI_MINS] for e in live), key=lambda b: struct.unpack(fmt, b)[0])
    hi = max((e[_CI_MAXS] for e in live), key=lambda b: struct.unpack(fmt, b)[0])
    for f, v in ((_ST_MIN, lo), (_ST_MIN_VALUE, lo), (_ST_MAX, hi), (_ST_MAX_VALUE, hi)):
        if f in out:
            out[f] = (BINARY, v)
    return out


def _as_arrow(raw: set[bytes], col: _Column, like: pa.DataType) -> pa.Array:
    fmt = _STAT_PACK.get(col.physical_type)
    if fmt is None:
        return pa.array(sorted(raw), like)
    return pa.array([struct.unpack(fmt, b)[0] for b in raw if len(b) == struct.calcsize(fmt)], like)


def _size_statistics(meta: Struct, pages: Sequence[_NewPage], ci: dict[int, Any] | None) -> None:
    """The chunk's SizeStatistics summed from its pages' (dropped when a page lacks them)."""
    if _MD_SIZE_STATS not in meta:
        return
    ss = dict(thrift.field(meta, _MD_SIZE_STATS))
    if _SS_UNENCODED in ss:
        if any(p.unencoded is None for p in pages):
            del meta[_MD_SIZE_STATS]
            return
        ss[_SS_UNENCODED] = (I64, sum(p.unencoded or 0 for p in pages))
    for fid, ci_fid in ((_SS_REP, _CI_REP), (_SS_DEF, _CI_DEF)):
        kind, (elem, hist) = ss.get(fid, (LIST, (I64, [])))
        if not hist:
            continue
        if ci is None or any(ci_fid not in p.index or len(p.index[ci_fid]) != len(hist) for p in pages):
            del meta[_MD_SIZE_STATS]
            return
        ss[fid] = (kind, (elem, [int(sum(v)) for v in zip(*(p.index[ci_fid] for p in pages), strict=True)]))
    meta[_MD_SIZE_STATS] = (STRUCT, ss)


#: the ColumnIndex's list fields and their element types
_CI_LISTS = {_CI_NULL_PAGES: BOOL, _CI_MINS: BINARY, _CI_MAXS: BINARY, _CI_NULLS: I64, _CI_REP: I64, _CI_DEF: I64}


def _column_index(col: _Column, ci: dict[int, Any], pages: Sequence[_NewPage]) -> Struct:
    """The chunk's ColumnIndex from its pages' entries (the boundary order kept only if it still holds)."""
    out: Struct = {}
    for fid, elem in _CI_LISTS.items():
        if fid not in ci:
            continue
        if any(fid not in p.index for p in pages):  # a new page lacks it: optional fields go, others can't
            if fid in (_CI_NULL_PAGES, _CI_MINS, _CI_MAXS):
                raise NotSpliceable(f"column {col.name}: a new page without a column-index entry")
            continue
        if fid in (_CI_REP, _CI_DEF):
            values = [v for p in pages for v in p.index[fid]]
        else:
            values = [p.index[fid] for p in pages]
        out[fid] = (LIST, (elem, values))
    order = int(ci.get(_CI_ORDER, _UNORDERED))
    if order in (_ASCENDING, _DESCENDING) and not _still_ordered(col, pages, order):
        order = _UNORDERED
    out[_CI_ORDER] = (I32, order)
    return out


def _still_ordered(col: _Column, pages: Sequence[_NewPage], order: int) -> bool:
    """Whether the pages' min/max still follow `order` (only for signed integers and byte strings, whose
    Parquet order this compares; anything else is declared unordered, which is always true)."""
    if col.physical_type == "BYTE_ARRAY":
        fmt = None
    elif col.physical_type in ("INT32", "INT64") and col.signed:
        fmt = _PACK[col.physical_type]
    else:
        return False

    def key(raw: bytes) -> Any:
        return struct.unpack(fmt, raw)[0] if fmt else raw

    live = [p.index for p in pages if not p.index.get(_CI_NULL_PAGES)]
    mins = [key(e[_CI_MINS]) for e in live]
    maxs = [key(e[_CI_MAXS]) for e in live]
    pairs = list(itertools.pairwise(mins)) + list(itertools.pairwise(maxs))
    return all(a <= b for a, b in pairs) if order == _ASCENDING else all(a >= b for a, b in pairs)


def _bloom(col: _Column, values: pa.ChunkedArray, option: Mapping[str, Any]) -> bytes:
    """The bloom filter pyarrow writes for these values with the writer's options (header + bitset)."""
    arr = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    sink = pa.BufferOutputStream()
    schema = pa.schema([pa.field(col.name, arr.type, nullable=True)])
    # a decimal stored as an integer is hashed as one: pyarrow's default (FIXED_LEN_BYTE_ARRAY) made a filter of
    # other bytes, which verification refused and FIND would have trusted to rule the column's values out
    with pq.ParquetWriter(sink, schema, compression="none", use_dictionary=False, write_statistics=False,
                          write_page_index=False, store_schema=False,
                          store_decimal_as_integer=col.physical_type in ("INT32", "INT64"),
                          bloom_filter_options={col.name: dict(option)}) as w:
        w.write_table(pa.table([arr], schema=schema))
    out = sink.getvalue().to_pybytes()
    n = int.from_bytes(out[-8:-4], "little")
    md = thrift.field(thrift.field(thrift.field(thrift.decode(out, len(out) - 8 - n)[0], _FMD_GROUPS)[0],
                                   _RG_COLUMNS)[0], _CC_META)
    offset, length = thrift.field(md, _MD_BLOOM), thrift.field(md, _MD_BLOOM_LEN)
    if offset is None or not length:
        raise NotSpliceable(f"column {col.name}: the writer made no bloom filter")
    return out[offset : offset + length]


# -- writing --------------------------------------------------------------------------------------------------


class Written(NamedTuple):
    size: int  # bytes of the file written
    copied: int  # of which copied from the source undecoded (pages, dictionary pages, bloom filters)


class _Out:
    """The sink and how many bytes went into it; untouched ranges copied in pieces."""

    def __init__(self, sink: BinaryIO | Any, read_at: Callable[[int, int], bytes]) -> None:
        self.sink, self.read_at, self.pos, self.copied = sink, read_at, 0, 0

    def write(self, data: bytes) -> int:
        at = self.pos
        self.sink.write(data)
        self.pos += len(data)
        return at

    def copy(self, offset: int, length: int) -> int:
        at = self.pos
        self.copied += length
        done = 0
        while done < length:
            n = min(COPY_PIECE, length - done)
            self.write(self.read_at(offset + done, n))
            done += n
        return at


def write(p: Plan, read_at: Callable[[int, int], bytes], sink: Any) -> Written:
    """Write the planned file to `sink`."""
    out = _Out(sink, read_at)
    out.write(MAGIC)
    groups = []
    written: list[tuple[_ChunkPlan, Struct, Struct]] = []  # (plan, new ColumnChunk, its OffsetIndex)
    for ordinal, g in enumerate(p.groups):
        columns = []
        for c in g.chunks:
            cc, offset_index = _write_chunk(out, c)
            columns.append(cc)
            written.append((c, cc, offset_index))
        metas = [thrift.field(cc, _CC_META) for cc in columns]
        rg = dict(g.rg)
        rg[_RG_COLUMNS] = (LIST, (STRUCT, columns))
        rg[_RG_ROWS] = (I64, g.rows)
        rg[_RG_TOTAL_BYTES] = (I64, sum(thrift.field(m, _MD_UNCOMPRESSED) for m in metas))
        rg[_RG_COMPRESSED] = (I64, sum(thrift.field(m, _MD_COMPRESSED) for m in metas))
        if _RG_FILE_OFFSET in rg:
            first = metas[0]
            rg[_RG_FILE_OFFSET] = (I64, min(thrift.field(first, f) for f in (_MD_DATA_PAGE, _MD_DICTIONARY_PAGE)
                                            if f in first))
        if _RG_ORDINAL in rg:
            rg[_RG_ORDINAL] = (rg[_RG_ORDINAL][0], ordinal)
        groups.append(rg)
    for c, _, _ in written:  # bloom filters, then column indexes, then offset indexes, as pyarrow lays them out
        if c.bloom is not None:
            at = out.write(c.bloom) if isinstance(c.bloom, bytes) else out.copy(*c.bloom)
            length = len(c.bloom) if isinstance(c.bloom, bytes) else c.bloom[1]
            c.meta[_MD_BLOOM] = (I64, at)
            if _MD_BLOOM_LEN in c.meta:
                c.meta[_MD_BLOOM_LEN] = (I32, length)
    for c, cc, _ in written:
        if c.column_index is not None:
            encoded = thrift.encode(c.column_index)
            cc[_CC_CI] = (I64, out.write(encoded))
            cc[_CC_CI_LEN] = (I32, len(encoded))
    for _, cc, offset_index in written:
        encoded = thrift.encode(offset_index)
        cc[_CC_OI] = (I64, out.write(encoded))
        cc[_CC_OI_LEN] = (I32, len(encoded))
    footer = dict(p.footer)
    footer[_FMD_ROWS] = (I64, p.rows)
    footer[_FMD_GROUPS] = (LIST, (STRUCT, groups))
    encoded = thrift.encode(footer)
    out.write(encoded + struct.pack("<I", len(encoded)) + MAGIC)
    return Written(out.pos, out.copied)


def _write_chunk(out: _Out, c: _ChunkPlan) -> tuple[Struct, Struct]:
    """Write one chunk's pages (consecutive copied pages in one copy); returns its ColumnChunk and its
    OffsetIndex (typed)."""
    start = out.pos
    meta = c.meta
    if isinstance(c.dictionary, bytes):
        meta[_MD_DICTIONARY_PAGE] = (I64, out.write(c.dictionary))
    elif c.dictionary is not None:
        meta[_MD_DICTIONARY_PAGE] = (I64, out.copy(*c.dictionary))
    locations = []
    first_row = 0
    run: list[int] | None = None  # [source offset, length] of copied pages not yet written
    for page in c.pages:
        if page.src is not None and run is not None and run[0] + run[1] == page.src[0]:
            at = out.pos + run[1]
            run[1] += page.src[1]
        else:
            if run is not None:
                out.copy(*run)
                run = None
            if page.src is not None:
                at = out.pos
                run = [page.src[0], page.src[1]]
            else:
                at = out.write(page.data or b"")
        size = page.src[1] if page.src is not None else len(page.data or b"")
        locations.append({_PL_OFFSET: (I64, at), _PL_SIZE: (I32, size), _PL_FIRST_ROW: (I64, first_row)})
        first_row += page.rows
    if run is not None:
        out.copy(*run)
    offset_index: Struct = {_OI_PAGES: (LIST, (STRUCT, locations))}
    if c.unencoded:
        offset_index[_OI_UNENCODED] = (LIST, (I64, [p.unencoded or 0 for p in c.pages]))
    meta[_MD_DATA_PAGE] = (I64, locations[0][_PL_OFFSET][1] if locations else out.pos)
    meta.pop(_MD_INDEX_PAGE, None)
    meta[_MD_COMPRESSED] = (I64, out.pos - start)
    cc = dict(c.cc)
    cc[_CC_META] = (STRUCT, meta)
    if thrift.field(c.cc, _CC_FILE_OFFSET):
        cc[_CC_FILE_OFFSET] = (I64, start)
    return cc, offset_index
