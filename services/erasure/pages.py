"""Parquet as bytes: page headers, dictionary pages, page statistics and column indexes of a chunk.

pyarrow answers with rows; erasure has to answer for bytes. A value an erased row used can stay in
a file whose rows no longer show it: in a column chunk's dictionary page, in a data page header's
statistics, in the column index (page index) or the footer. This module reads those structures
directly (Thrift compact protocol, the Parquet format spec) so verification can compare each of
them with the values the surviving rows hold. It decodes only what erasure needs: PLAIN-encoded
dictionary pages of every physical type the platform writes, and the statistics fields.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from contracts.parquet_codecs import BY_REPORTED, CODECS
from contracts.thrift import BINARY, BYTE, DOUBLE, FALSE, I16, I32, I64, LIST, MAP, SET, STRUCT, TRUE

# parquet.thrift PageType
DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
# parquet.thrift Encoding (the two a fixed-width PLAIN chunk uses)
PLAIN, RLE = 0, 3
#: Parquet codec name -> pyarrow's Codec for its pages (LZ4, Hadoop-framed, is unframed by `_lz4_hadoop`)
_CODECS = {c.parquet: c.block for c in CODECS if c.block}


class PageFormatError(ValueError):
    """The bytes are not the Parquet structure expected there (truncated, or another format)."""


#: how deep structs may nest (a footer's deepest is ~5): deeper bytes are not a Parquet structure
_MAX_DEPTH = 16


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 70:
            raise PageFormatError("varint too long")


def _value(buf: bytes | memoryview, pos: int, kind: int, depth: int) -> tuple[Any, int]:
    if kind in (I32, I64, I16):
        n, pos = _varint(buf, pos)
        return (n >> 1) ^ -(n & 1), pos
    if kind == BINARY:
        n, pos = _varint(buf, pos)
        if pos + n > len(buf):
            raise PageFormatError("truncated Thrift binary")
        return bytes(buf[pos : pos + n]), pos + n
    if kind == STRUCT:
        return _struct(buf, pos, depth + 1)
    if kind == TRUE:
        return True, pos
    if kind == FALSE:
        return False, pos
    if kind == BYTE:
        return buf[pos], pos + 1
    if kind == DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if kind in (LIST, SET):
        head = buf[pos]
        pos += 1
        size, elem = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        items = []
        if elem in (TRUE, FALSE):  # booleans in containers are one byte each (1 = true)
            for _ in range(size):
                items.append(buf[pos] == TRUE)
                pos += 1
            return items, pos
        for _ in range(size):
            item, pos = _value(buf, pos, elem, depth + 1)
            items.append(item)
        return items, pos
    if kind == MAP:
        size, pos = _varint(buf, pos)
        if not size:
            return {}, pos
        kv = buf[pos]
        pos += 1
        out = {}
        for _ in range(size):
            k, pos = _value(buf, pos, kv >> 4, depth + 1)
            out[k], pos = _value(buf, pos, kv & 0x0F, depth + 1)
        return out, pos
    raise PageFormatError(f"unknown Thrift type {kind}")


def _struct(buf: bytes | memoryview, pos: int, depth: int) -> tuple[dict[int, Any], int]:
    if depth > _MAX_DEPTH:
        raise PageFormatError("Thrift structure nests too deep")
    out: dict[int, Any] = {}
    fid = 0
    while True:
        head = buf[pos]
        pos += 1
        kind = head & 0x0F
        if kind == 0:
            return out, pos
        delta = head >> 4
        if delta:
            fid += delta
        else:
            n, pos = _varint(buf, pos)
            fid = (n >> 1) ^ -(n & 1)
        if kind in (I32, I64):  # most fields of a footer or page header: inline
            b = buf[pos]
            pos += 1
            if b & 0x80:
                n, pos = _varint(buf, pos - 1)
            else:
                n = b
            out[fid] = (n >> 1) ^ -(n & 1)
        else:
            out[fid], pos = _value(buf, pos, kind, depth)


def read_struct(buf: bytes | memoryview, pos: int = 0) -> tuple[dict[int, Any], int]:
    """One Thrift compact struct at `pos`: (fields by id, position after it); structs as {field id: value},
    lists as Python lists. Plain functions over the buffer, no reader object: verification parses a
    footer, every page header and every column index of each file it checks (a method call per byte
    was a third of its CPU)."""
    try:
        return _struct(buf, pos, 0)
    except (IndexError, struct.error) as exc:  # a read past the end of the bytes
        raise PageFormatError("truncated Thrift structure") from exc


@dataclass
class Stats:
    """A Statistics struct's min/max in PLAIN bytes (no length prefix); None when absent."""

    min: bytes | None
    max: bytes | None

    @classmethod
    def of(cls, s: dict[int, Any] | None) -> Stats | None:
        if not s:
            return None
        lo, hi = s.get(6, s.get(2)), s.get(5, s.get(1))  # min_value/max_value, else legacy min/max
        return None if lo is None and hi is None else cls(lo, hi)


@dataclass
class Page:
    kind: int
    offset: int
    header_bytes: int
    compressed_size: int
    uncompressed_size: int
    num_values: int
    encoding: int | None
    stats: Stats | None
    body: bytes | memoryview  # as stored (maybe compressed; a view when the chunk was one)
    levels_bytes: int = 0  # DATA_PAGE_V2: uncompressed level bytes before the values
    values_compressed: bool = True
    level_encoding: int | None = None  # DATA_PAGE: how its definition levels are encoded


def walk_pages(chunk_bytes: bytes | memoryview, base_offset: int = 0) -> Iterator[Page]:
    """Every page of one column chunk, given the chunk's bytes (from its first page to its end)."""
    pos = 0
    while pos < len(chunk_bytes):
        header, end = read_struct(chunk_bytes, pos)
        kind, usize, csize = header.get(1), header.get(2), header.get(3)
        if kind is None or csize is None or usize is None or csize < 0 or end + csize > len(chunk_bytes):
            raise PageFormatError(f"bad page header at offset {base_offset + pos}")
        body = chunk_bytes[end : end + csize]
        if kind == DICTIONARY_PAGE:
            d = header.get(7, {})
            page = Page(kind, base_offset + pos, end - pos, csize, usize, d.get(1, 0), d.get(2), None, body)
        elif kind == DATA_PAGE:
            d = header.get(5, {})
            page = Page(kind, base_offset + pos, end - pos, csize, usize, d.get(1, 0), d.get(2), Stats.of(d.get(5)),
                        body, level_encoding=d.get(3))
        elif kind == DATA_PAGE_V2:
            d = header.get(8, {})
            page = Page(kind, base_offset + pos, end - pos, csize, usize, d.get(1, 0), d.get(4), Stats.of(d.get(8)),
                        body, levels_bytes=int(d.get(5, 0)) + int(d.get(6, 0)), values_compressed=d.get(7, True))
        else:
            page = Page(kind, base_offset + pos, end - pos, csize, usize, 0, None, None, body)
        yield page
        pos = end + csize


def thrift_codec(chunk: Any) -> str:
    """The Parquet (Thrift) name of a pyarrow ColumnChunkMetaData's codec. pyarrow calls LZ4_RAW "LZ4" (and
    Thrift's LZ4, Hadoop-framed, "UNKNOWN"), and `pa.Codec("lz4")` is the LZ4 *frame* format, neither of them:
    a page of an LZ4_RAW file decompressed by pyarrow's name failed (ERROR_frameType_unknown). Prefer the
    footer's own number (`THRIFT_NAMES`) where the footer is parsed."""
    name = str(chunk.compression)
    return BY_REPORTED[name].parquet if name in BY_REPORTED else name


def decompress(page: Page, codec: str) -> bytes | memoryview:
    """The page's uncompressed bytes (levels + values for data pages); `codec` is the Parquet name (`THRIFT_NAMES`)."""
    if codec == "UNCOMPRESSED" or page.compressed_size == 0:
        return page.body
    if page.kind == DATA_PAGE_V2:
        levels, values = page.body[: page.levels_bytes], page.body[page.levels_bytes :]
        if not page.values_compressed:
            return page.body
        return bytes(levels) + _decompress(values, codec, page.uncompressed_size - page.levels_bytes)
    return _decompress(page.body, codec, page.uncompressed_size)


def _decompress(body: bytes | memoryview, codec: str, size: int) -> bytes:
    if codec == "LZ4":
        return _lz4_hadoop(body, size)
    name = _CODECS.get(codec)
    if name is None:
        raise PageFormatError(f"pages compressed with {codec} cannot be read")
    try:
        return pa.Codec(name).decompress(body, decompressed_size=size).to_pybytes()
    except (OSError, pa.ArrowException) as exc:
        raise PageFormatError(f"a {codec} page does not decompress ({type(exc).__name__})") from exc


def _lz4_hadoop(body: bytes | memoryview, size: int) -> bytes:
    """A page of codec LZ4: Hadoop's framing, blocks of [big-endian decompressed size, compressed size, raw LZ4
    block]; if the bytes are not that, one raw LZ4 block (what parquet-cpp wrote under this codec before
    LZ4_RAW existed), as Arrow's own reader falls back."""
    raw = pa.Codec("lz4_raw")
    out: list[bytes] = []
    pos = total = 0
    try:
        while len(body) - pos >= 8:
            n_out, n_in = struct.unpack_from(">II", body, pos)
            pos += 8
            if n_in > len(body) - pos or total + n_out > size:
                raise PageFormatError("not Hadoop-framed")
            out.append(raw.decompress(body[pos : pos + n_in], decompressed_size=n_out).to_pybytes())
            pos += n_in
            total += n_out
        if pos == len(body) and total == size:
            return b"".join(out)
    except (PageFormatError, OSError, pa.ArrowException):
        pass
    return _decompress(body, "LZ4_RAW", size)


#: codecs (Parquet names) whose pages are read here for FIND (LZ4, Hadoop-framed and long deprecated: pyarrow)
_PLAIN_CODECS = {c.parquet for c in CODECS}
_FIXED: dict[str, np.dtype] = {"INT32": np.dtype("<i4"), "INT64": np.dtype("<i8")}


def plain_fixed_values(chunk_bytes: bytes | memoryview, codec: str, physical_type: str, max_definition_level: int,
                       max_repetition_level: int = 0) -> np.ndarray | None:
    """The non-null values of a flat INT32/INT64 column chunk every data page of which is PLAIN, read
    straight from its bytes (FIND's exact test without building an Arrow reader); None for any other
    chunk (a dictionary, another encoding or codec, nesting): the caller reads those with pyarrow.

    PLAIN stores each non-null value as its little-endian bytes after the page's levels (V1: a 4-byte
    length then the RLE definition levels, inside the compressed body; V2: levels before it, stored
    uncompressed). The caller checks the count against the chunk's rows less its nulls.
    """
    dtype = _FIXED.get(physical_type)
    if dtype is None or codec not in _PLAIN_CODECS or max_repetition_level or max_definition_level > 1:
        return None
    parts = []
    for page in walk_pages(chunk_bytes):
        if page.kind == DICTIONARY_PAGE:
            return None
        if page.kind not in (DATA_PAGE, DATA_PAGE_V2):
            continue
        if page.encoding != PLAIN:
            return None
        raw = decompress(page, codec)
        if page.kind == DATA_PAGE_V2:
            start = page.levels_bytes
        elif max_definition_level:
            if page.level_encoding != RLE or len(raw) < 4:
                return None
            start = 4 + struct.unpack_from("<I", raw)[0]
        else:
            start = 0
        if start > len(raw) or (len(raw) - start) % dtype.itemsize:
            raise PageFormatError("PLAIN values are not a whole number of fixed-width values")
        parts.append(np.frombuffer(raw, dtype, offset=start))
    if not parts:
        return np.empty(0, dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def plain_values(data: bytes, n: int, physical_type: str, type_length: int = 0) -> list[int | float | bytes]:
    """Decode `n` PLAIN values (a dictionary page's body) of a physical type."""
    fixed = {"INT32": ("<i", 4), "INT64": ("<q", 8), "FLOAT": ("<f", 4), "DOUBLE": ("<d", 8)}
    if physical_type in fixed:
        fmt, width = fixed[physical_type]
        if len(data) < n * width:
            raise PageFormatError("dictionary page shorter than its values")
        return [v[0] for v in struct.iter_unpack(fmt, data[: n * width])]
    if physical_type == "BYTE_ARRAY":
        out: list[int | float | bytes] = []
        pos = 0
        for _ in range(n):
            if pos + 4 > len(data):
                raise PageFormatError("dictionary page shorter than its values")
            (size,) = struct.unpack_from("<I", data, pos)
            out.append(bytes(data[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        return out
    if physical_type == "FIXED_LEN_BYTE_ARRAY":
        return [bytes(data[i * type_length : (i + 1) * type_length]) for i in range(n)]
    if physical_type == "INT96":
        return [bytes(data[i * 12 : (i + 1) * 12]) for i in range(n)]
    raise PageFormatError(f"dictionary pages of {physical_type} are not supported")


def plain_value(raw: bytes, physical_type: str) -> int | float | bytes:
    """One statistics value (PLAIN, no length prefix) as `plain_values` returns values."""
    fixed = {"INT32": "<i", "INT64": "<q", "FLOAT": "<f", "DOUBLE": "<d"}
    if physical_type in fixed:
        return struct.unpack(fixed[physical_type], raw)[0]
    if physical_type == "BOOLEAN":
        return int(raw[:1] == b"\x01")
    return bytes(raw)


@dataclass
class ChunkPages:
    """What one column chunk stores besides its rows' values: dictionaries and page statistics."""

    dictionaries: list[list[int | float | bytes]] = field(default_factory=list)
    page_stats: list[Stats] = field(default_factory=list)
    pages: int = 0
    uncompressed: list[bytes] = field(default_factory=list)


def chunk_span(chunk: Any) -> tuple[int, int]:
    """(offset, length) of a column chunk's pages, from pyarrow's ColumnChunkMetaData."""
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None and chunk.dictionary_page_offset > 0:
        start = min(start, chunk.dictionary_page_offset)
    return start, chunk.total_compressed_size


def read_chunk(data: bytes, codec: str, physical_type: str, type_length: int = 0, *,
               keep_bytes: bool = False) -> ChunkPages:
    """Decode a chunk's dictionary pages and page statistics from its bytes (`data` = the chunk span; `codec`:
    the Parquet name, `THRIFT_NAMES` of the footer's number or `thrift_codec`)."""
    out = ChunkPages()
    for page in walk_pages(data):
        out.pages += 1
        if page.kind in (DATA_PAGE, DATA_PAGE_V2) and page.stats is not None:
            out.page_stats.append(page.stats)
        if page.kind == DICTIONARY_PAGE or keep_bytes:
            raw = bytes(decompress(page, codec))  # bytes already here (`data` is): not copied
            if keep_bytes:
                out.uncompressed.append(raw)
            if page.kind == DICTIONARY_PAGE:
                out.dictionaries.append(plain_values(raw, page.num_values, physical_type, type_length))
    return out


@dataclass
class ColumnIndex:
    """A chunk's page index: per page, whether it holds only nulls, and its min/max (PLAIN bytes)."""

    null_pages: list[bool]
    mins: list[bytes]
    maxs: list[bytes]


def read_column_index(buf: bytes) -> ColumnIndex:
    s, _ = read_struct(buf)
    return ColumnIndex(list(s.get(1, [])), list(s.get(2, [])), list(s.get(3, [])))


def footer_bytes(tail: bytes) -> bytes:
    """The Thrift FileMetaData of a file whose last bytes are `tail` (must include the whole footer)."""
    if len(tail) < 8 or tail[-4:] != b"PAR1":
        raise PageFormatError("not a Parquet file (no PAR1 magic at the end)")
    (size,) = struct.unpack("<I", tail[-8:-4])
    if size + 8 > len(tail):
        raise PageFormatError("footer longer than the bytes given")
    return tail[-8 - size : -8]


def column_index_locations(footer: bytes | dict[int, Any]) -> list[list[tuple[int, int] | None]]:
    """Per row group, per column: (offset, length) of its ColumnIndex, or None (from the raw footer,
    because pyarrow exposes whether a chunk has a column index but not where it is). `footer` is the
    footer's bytes or their `read_struct` (a caller that needs several parts parses it once)."""
    meta = read_struct(footer)[0] if isinstance(footer, bytes) else footer
    out = []
    for rg in meta.get(4, []):
        cols = []
        for cc in rg.get(1, []):
            off, length = cc.get(6), cc.get(7)
            cols.append((off, length) if off is not None and length else None)
        out.append(cols)
    return out


def key_value_metadata(footer: bytes | dict[int, Any]) -> dict[bytes, bytes]:
    """The footer's key-value metadata (FileMetaData field 5), raw (`footer`: bytes or parsed)."""
    meta = read_struct(footer)[0] if isinstance(footer, bytes) else footer
    return {kv.get(1, b""): kv.get(2, b"") for kv in meta.get(5, [])}
