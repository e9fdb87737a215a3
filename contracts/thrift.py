"""Thrift compact protocol, typed both ways: enough to rewrite a Parquet footer without losing a field.

Shared by the services that read Parquet's own structures. The compaction stitcher
(services/compact/stitch.py) moves column chunks between files, so it must change a few offsets in the
footer and the offset indexes and write everything else back unchanged, including fields this code
has never heard of. Every value therefore keeps its Thrift type: a struct is
{field id: (type, value)}, a list is (element type, [values]), a map ((key type, value type), {k: v}).
"""

from __future__ import annotations

import struct
from typing import Any

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
BOOL = TRUE  # a struct's boolean field is stored as (BOOL, value); the wire type says which
_MAX_DEPTH = 32

Struct = dict[int, tuple[int, Any]]


class ThriftError(ValueError):
    """The bytes are not the Thrift compact structure expected (truncated, or something else)."""


def decode(buf: bytes, pos: int = 0) -> tuple[Struct, int]:
    """The struct at `pos` and the position just after it."""
    return _Decoder(buf, pos).struct(0)


def encode(value: Struct) -> bytes:
    """The struct's compact encoding (fields in id order, as Thrift's own writers emit them)."""
    out = bytearray()
    _write_struct(out, value)
    return bytes(out)


def field(s: Struct, fid: int, default: Any = None) -> Any:
    """A field's value (lists as their Python list), or `default` when absent."""
    if fid not in s:
        return default
    kind, value = s[fid]
    return value[1] if kind in (LIST, SET) else value


class Reader:
    """The wire's primitives over a buffer (bytes or a memoryview); `error` is what malformed bytes raise.
    (Erasure's hot paths, services/erasure/pages.py and bloom.py, read with plain functions instead: a
    method call per byte cost them ~0.6 ms a file.)"""

    error: type[ValueError] = ThriftError

    def __init__(self, buf: bytes | memoryview, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise self.error("truncated Thrift structure")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = out = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 70:
                raise self.error("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)


class _Decoder(Reader):
    """Structs with every value's type kept."""

    def __init__(self, buf: bytes, pos: int) -> None:
        super().__init__(memoryview(buf), pos)

    def value(self, kind: int, depth: int) -> Any:
        if kind == BYTE:
            b = self.byte()
            return b - 256 if b > 127 else b
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            if self.pos + 8 > len(self.buf):
                raise ThriftError("truncated Thrift double")
            out = struct.unpack_from("<d", self.buf, self.pos)[0]
            self.pos += 8
            return out
        if kind == BINARY:
            n = self.varint()
            if self.pos + n > len(self.buf):
                raise ThriftError("truncated Thrift binary")
            out = bytes(self.buf[self.pos : self.pos + n])
            self.pos += n
            return out
        if kind in (LIST, SET):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            if elem in (TRUE, FALSE):  # booleans in containers are one byte each (1 = true)
                return (BOOL, [self.byte() == TRUE for _ in range(size)])
            return (elem, [self.value(elem, depth + 1) for _ in range(size)])
        if kind == MAP:
            size = self.varint()
            if not size:
                return ((STOP, STOP), {})
            kv = self.byte()
            k, v = kv >> 4, kv & 0x0F
            return ((k, v), {self.value(k, depth + 1): self.value(v, depth + 1) for _ in range(size)})
        if kind == STRUCT:
            return self.struct(depth + 1)[0]
        raise ThriftError(f"unknown Thrift type {kind}")

    def struct(self, depth: int) -> tuple[Struct, int]:
        if depth > _MAX_DEPTH:
            raise ThriftError("Thrift structure nests too deep")
        out: Struct = {}
        fid = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == STOP:
                return out, self.pos
            delta = head >> 4
            fid = fid + delta if delta else self.zigzag()
            if kind in (TRUE, FALSE):
                out[fid] = (BOOL, kind == TRUE)
            else:
                out[fid] = (kind, self.value(kind, depth))


def _varint(out: bytearray, n: int) -> None:
    while True:
        if n < 0x80:
            out.append(n)
            return
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(out: bytearray, n: int) -> None:
    _varint(out, (n << 1) ^ (n >> 63))


def _write_value(out: bytearray, kind: int, value: Any) -> None:
    if kind == BYTE:
        out.append(value & 0xFF)
    elif kind in (I16, I32, I64):
        _zigzag(out, value)
    elif kind == DOUBLE:
        out += struct.pack("<d", value)
    elif kind == BINARY:
        _varint(out, len(value))
        out += value
    elif kind in (LIST, SET):
        elem, items = value
        wire = TRUE if elem == BOOL else elem
        if len(items) < 15:
            out.append(len(items) << 4 | wire)
        else:
            out.append(0xF0 | wire)
            _varint(out, len(items))
        for item in items:
            if elem == BOOL:
                out.append(TRUE if item else FALSE)
            else:
                _write_value(out, elem, item)
    elif kind == MAP:
        (k, v), items = value
        _varint(out, len(items))
        if items:
            out.append(k << 4 | v)
            for key, item in items.items():
                _write_value(out, k, key)
                _write_value(out, v, item)
    elif kind == STRUCT:
        _write_struct(out, value)
    else:
        raise ThriftError(f"unknown Thrift type {kind}")


def _write_struct(out: bytearray, s: Struct) -> None:
    last = 0
    for fid in sorted(s):
        kind, value = s[fid]
        wire = (TRUE if value else FALSE) if kind == BOOL else kind
        delta = fid - last
        if 0 < delta <= 15:
            out.append(delta << 4 | wire)
        else:
            out.append(wire)
            _zigzag(out, fid)
        if kind != BOOL:
            _write_value(out, kind, value)
        last = fid
    out.append(STOP)
