"""Parquet compression codecs under each name the platform meets them by: one table, so the names cannot drift.

Transform and compaction name a codec by the contract's `storage.compression`, which is the ParquetWriter
name. Erasure meets a codec in files it rewrites: as pyarrow reports it (`ColumnChunkMetaData.compression`)
or as the Thrift enum of a footer it parses itself, and must write pages back with the same codec and
decompress single page bodies (`pa.Codec`). pyarrow's names are not Parquet's: its "LZ4" is Parquet's
LZ4_RAW, written as "lz4" but decompressed as "lz4_raw" (`pa.Codec("lz4")` is the LZ4 frame format).
"""

from __future__ import annotations

from dataclasses import dataclass

#: parquet.thrift CompressionCodec: Parquet's own name of each number (3 and 5 are codecs pyarrow cannot write)
THRIFT_NAMES = {0: "UNCOMPRESSED", 1: "SNAPPY", 2: "GZIP", 3: "LZO", 4: "BROTLI", 5: "LZ4", 6: "ZSTD", 7: "LZ4_RAW"}


@dataclass(frozen=True)
class Codec:
    """One codec pyarrow can write."""

    thrift: int  # parquet.thrift CompressionCodec
    reported: str  # pyarrow's ColumnChunkMetaData.compression
    writer: str  # ParquetWriter `compression` (for the platform's codecs: the contract's name too)
    block: str | None  # pa.Codec that decompresses one page body; None: pages are stored as they are

    @property
    def parquet(self) -> str:
        """Parquet's name (a footer's): LZ4_RAW where pyarrow says LZ4."""
        return THRIFT_NAMES[self.thrift]


#: every codec pyarrow writes; LZO and Hadoop-framed LZ4 (Thrift 3 and 5, pyarrow reports "UNKNOWN") it cannot
CODECS = (
    Codec(0, "UNCOMPRESSED", "none", None),
    Codec(1, "SNAPPY", "snappy", "snappy"),
    Codec(2, "GZIP", "gzip", "gzip"),
    Codec(4, "BROTLI", "brotli", "brotli"),
    Codec(6, "ZSTD", "zstd", "zstd"),
    Codec(7, "LZ4", "lz4", "lz4_raw"),  # LZ4_RAW in parquet.thrift
)
BY_THRIFT = {c.thrift: c for c in CODECS}
BY_REPORTED = {c.reported: c for c in CODECS}
BY_WRITER = {c.writer: c for c in CODECS}
