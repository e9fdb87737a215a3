"""Parquet split-block bloom filters, read straight from the file (pyarrow writes them, cannot read them).

A column chunk's footer entry gives the filter's offset and length; the filter is a small Thrift
header and a bitset of 32-byte blocks. A value's xxHash64 (seed 0, over its PLAIN encoding) picks a
block and eight bits in it; any bit unset proves the value absent. Probing is a few integer
operations per value; xxHash64 comes from the `xxhash` package (C), and a vectorised numpy copy of it
hashes whole fixed-width columns when a filter is rebuilt for verification.
Spec: https://github.com/apache/parquet-format/blob/master/BloomFilter.md
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from services.erasure.pages import PageFormatError, read_struct

_M = (1 << 64) - 1
#: xxHash64's primes, for the vectorised fixed-width variant below
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
SALT = (0x47B6137B, 0x44974D91, 0x8824AD5B, 0xA2B7289D, 0x705495C7, 0x2DF1424B, 0x9EFC4947, 0x5C6BFB31)
BLOCK_BYTES = 32
_SALTS = np.array(SALT, dtype=np.uint64)


def xxh64(data: bytes, seed: int = 0) -> int:
    """xxHash64 of one encoded value, by the `xxhash` package (C, the reference implementation)."""
    return xxhash.xxh64_intdigest(data, seed)


def plain_bytes(value: int | str | bytes, physical_type: str) -> bytes:
    """A value's PLAIN encoding as the bloom filter hashes it (no length prefix for byte arrays)."""
    if physical_type == "INT64":
        return struct.pack("<q", int(value))
    if physical_type == "INT32":
        return struct.pack("<i", int(value))
    if physical_type in ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"):
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    raise ValueError(f"bloom probes of {physical_type} columns are not supported")


class BloomFormatError(ValueError):
    """The bytes at the footer's bloom filter offset are not a split-block bloom filter."""


#: what follows numBytes in the header every writer makes (parquet-cpp, parquet-java): algorithm BLOCK,
#: hash XXHASH, compression UNCOMPRESSED, each an empty struct, then the header's stop byte
_USUAL_TAIL = bytes.fromhex("1c1c00001c1c00001c1c000000")


def parse_header(buf: bytes | memoryview) -> tuple[int, int]:
    """(bitset bytes, header length) of a BloomFilterHeader at the start of `buf`.

    The usual header (`_usual_header`) is read directly, ~1 µs instead of ~8 for the field-by-field walk
    (FIND reads one per file: thousands on a day-partitioned lake); any other goes the general way."""
    usual = _usual_header(buf)
    return usual if usual is not None else _parse_header_fields(buf)


def _usual_header(buf: bytes | memoryview) -> tuple[int, int] | None:
    """Field 1 (numBytes, i32) then `_USUAL_TAIL`, or None."""
    if buf[:1] != b"\x15":
        return None
    raw = shift = 0
    for pos in range(1, min(len(buf), 6)):  # an i32's varint: at most 5 bytes
        byte = buf[pos]
        raw |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        return None
    num_bytes = (raw >> 1) ^ -(raw & 1)
    end = pos + 1 + len(_USUAL_TAIL)
    if buf[pos + 1 : end] != _USUAL_TAIL or num_bytes <= 0 or num_bytes % BLOCK_BYTES:
        return None
    return num_bytes, end


def _parse_header_fields(buf: bytes | memoryview) -> tuple[int, int]:
    """Any other header, read as the Thrift struct it is (pages.read_struct, verification's reader)."""
    try:
        fields, pos = read_struct(buf)
    except PageFormatError as exc:
        raise BloomFormatError(f"bloom filter header: {exc}") from exc
    num_bytes = fields.get(1)
    if type(num_bytes) is not int or num_bytes <= 0 or num_bytes % BLOCK_BYTES:
        raise BloomFormatError(f"bloom filter size {num_bytes} is not a positive multiple of {BLOCK_BYTES}")
    return num_bytes, pos


#: from this many values on, a filter is tested with array operations (their fixed cost is ~6 µs)
VECTOR_FROM = 16


@dataclass(frozen=True)
class BloomProbe:
    """Values' hashes made ready to test against any number of filters: which block each selects (the
    hash's high half, scaled by the filter's block count) and the eight bits it needs set there, as
    arrays (many values) and as Python ints (a few: one 256-bit mask per value)."""

    high: np.ndarray  # uint64: hash >> 32
    masks: np.ndarray  # (values, 8) uint32: one bit per word of the block
    highs: tuple[int, ...]
    block_masks: tuple[int, ...]  # word i's bit b is bit 32 * i + b of the block read little-endian
    #: per filter size (in blocks), each value's block offset in bytes: the files of a lake mostly share a
    #: few sizes, so a few values are tested with one slice and one AND each
    _offsets: dict[int, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)

    def offsets(self, blocks: int) -> tuple[int, ...]:
        found = self._offsets.get(blocks)
        if found is None:
            found = self._offsets[blocks] = tuple(((h * blocks) >> 32) * BLOCK_BYTES for h in self.highs)
        return found

    @classmethod
    def of(cls, hashes: Sequence[int]) -> BloomProbe:
        h = np.array(hashes, dtype=np.uint64).reshape(-1)
        key = (h & np.uint64(0xFFFFFFFF))[:, None]
        bits = ((key * _SALTS[None, :]) & np.uint64(0xFFFFFFFF)) >> np.uint64(27)
        block_masks = tuple(sum(1 << (32 * i + int(b)) for i, b in enumerate(row)) for row in bits.tolist())
        return cls(h >> np.uint64(32), np.left_shift(np.uint32(1), bits.astype(np.uint32)),
                   tuple(int(x) >> 32 for x in hashes), block_masks)


@dataclass(frozen=True)
class SplitBlockBloom:
    """A bitset; `might_contain(hash)` is False only for values certainly absent."""

    bitset: bytes | memoryview

    @classmethod
    def from_bytes(cls, buf: bytes | memoryview) -> SplitBlockBloom:
        """`buf` starts with the header; it may hold more bytes than the filter (they are ignored). The bitset
        is a view of `buf`, not a copy: a probe reads a few 32-byte blocks of it (a copy touched it all)."""
        num_bytes, header = parse_header(buf)
        if len(buf) < header + num_bytes:
            raise BloomFormatError(f"bloom filter needs {header + num_bytes} bytes, got {len(buf)}")
        return cls(memoryview(buf)[header : header + num_bytes])

    def might_contain(self, h: int) -> bool:
        blocks = len(self.bitset) // BLOCK_BYTES
        base = (((h >> 32) * blocks) >> 32) * BLOCK_BYTES
        key = h & 0xFFFFFFFF
        for i, salt in enumerate(SALT):
            bit = ((key * salt) & 0xFFFFFFFF) >> 27
            word = int.from_bytes(self.bitset[base + 4 * i : base + 4 * i + 4], "little")
            if not (word >> bit) & 1:
                return False
        return True

    def might_contain_each(self, probe: BloomProbe) -> np.ndarray:
        """`might_contain` of every value of `probe` at once (bool per value), a few array operations."""
        words = np.frombuffer(self.bitset, dtype="<u4").reshape(-1, 8)
        block = (probe.high * np.uint64(len(words))) >> np.uint64(32)
        rows = words[block.astype(np.intp)]
        return np.asarray(((rows & probe.masks) == probe.masks).all(axis=1))

    def passing(self, probe: BloomProbe, positions: Sequence[int]) -> list[int]:
        """Those of `positions` (indexes into `probe`'s values) the filter may hold; the others are certainly
        absent. A few values are tested one 32-byte block read each, many at once with arrays."""
        if len(positions) >= VECTOR_FROM:
            passed = self.might_contain_each(probe)
            return [i for i in positions if passed[i]]
        bitset = self.bitset
        offsets = probe.offsets(len(bitset) // BLOCK_BYTES)
        masks = probe.block_masks
        return [i for i in positions
                if int.from_bytes(bitset[offsets[i] : offsets[i] + BLOCK_BYTES], "little") & masks[i] == masks[i]]


# -- building a filter (verification: is a rewritten file's filter the one its surviving values make?) --
def _np_rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def xxh64_fixed(values: np.ndarray, width: int) -> np.ndarray:
    """xxHash64 (seed 0) of each value's `width`-byte little-endian encoding (4 or 8), vectorised."""
    p1, p2, p3, p4 = (np.uint64(p) for p in (_P1, _P2, _P3, _P4))
    with np.errstate(over="ignore"):
        h = np.full(len(values), (_P5 + width) & _M, dtype=np.uint64)
        if width == 8:
            lane = values.astype(np.int64).view(np.uint64)
            k = _np_rotl(lane * p2, 31) * p1
            h = _np_rotl(h ^ k, 27) * p1 + p4
        elif width == 4:
            lane = values.astype(np.int32).view(np.uint32).astype(np.uint64)
            h = _np_rotl(h ^ (lane * p1), 23) * p2 + p3
        else:
            raise ValueError(f"fixed-width hashing of {width}-byte values is not supported")
        h ^= h >> np.uint64(33)
        h *= p2
        h ^= h >> np.uint64(29)
        h *= p3
        h ^= h >> np.uint64(32)
    return h


def hashes_of(values: pa.Array, physical_type: str) -> np.ndarray:
    """xxHash64 of each distinct value's PLAIN encoding, as the writer inserts it."""
    distinct = pc.unique(values)
    if physical_type in ("INT64", "INT32"):
        width = 8 if physical_type == "INT64" else 4
        return xxh64_fixed(distinct.to_numpy(zero_copy_only=False), width)
    if physical_type in ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY", "INT96"):
        return np.array([xxh64(v) for v in distinct.cast(pa.binary()).to_pylist()], dtype=np.uint64)
    if physical_type in ("DOUBLE", "FLOAT"):
        fmt = "<d" if physical_type == "DOUBLE" else "<f"
        return np.array([xxh64(struct.pack(fmt, v)) for v in distinct.to_pylist()], dtype=np.uint64)
    raise ValueError(f"bloom filters of {physical_type} columns are not supported")


#: each salt as uint32: (key * salt) mod 2^32 is what the spec computes, in uint32 arithmetic
_SALTS32 = np.array(SALT, dtype=np.uint32)
#: bit offset of each of a block's eight 32-bit words
_WORD_BITS = np.arange(8, dtype=np.int64) * 32


def bloom_bitset(num_bytes: int, values: pa.Array, physical_type: str) -> bytes:
    """The bitset of a split-block filter of `num_bytes` holding exactly `values`.

    Each value sets one bit in each of its block's eight little-endian 32-bit words, i.e. bit
    256 * block + 32 * word + b of the bitset read as one little-endian bit string: those bits are set
    in a flag per bit and packed (an OR per word with `np.bitwise_or.at` cost twice as much)."""
    blocks = num_bytes // BLOCK_BYTES
    flags = np.zeros(blocks * BLOCK_BYTES * 8, dtype=np.bool_)
    h = hashes_of(values, physical_type)
    if len(h):
        block = (((h >> np.uint64(32)) * np.uint64(blocks)) >> np.uint64(32)).astype(np.int64)
        bits = (h.astype(np.uint32)[:, None] * _SALTS32) >> np.uint32(27)
        flags[((block * 256)[:, None] + _WORD_BITS + bits).ravel()] = True
    return np.packbits(flags, bitorder="little").tobytes()
