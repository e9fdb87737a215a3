"""The codec table against pyarrow itself: each codec's names are the ones pyarrow writes, reports and decodes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import thrift
from contracts.parquet_codecs import BY_REPORTED, BY_THRIFT, BY_WRITER, CODECS, Codec


def _file(codec: str) -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"v": pa.array([f"value {i % 7}" for i in range(500)])})
    pq.write_table(table, sink, compression=codec, use_dictionary=False, write_statistics=False)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("codec", CODECS, ids=[c.writer for c in CODECS])
def test_a_file_written_with_a_codec_reports_and_stores_that_codec_and_its_pages_decompress(codec: Codec) -> None:
    data = _file(codec.writer)
    chunk = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0).column(0)
    assert BY_REPORTED[chunk.compression] == codec
    footer_len = int.from_bytes(data[-8:-4], "little")
    footer, _ = thrift.decode(data[-8 - footer_len : -8])
    meta = thrift.field(thrift.field(footer, 4)[0], 1)[0][3][1]  # row_groups[0].columns[0].meta_data
    assert BY_THRIFT[thrift.field(meta, 4)] == codec
    header, end = thrift.decode(data, thrift.field(meta, 9))  # the data page's header
    body = data[end : end + thrift.field(header, 3)]
    size = thrift.field(header, 2)
    raw = pa.Codec(codec.block).decompress(body, decompressed_size=size).to_pybytes() if codec.block else body
    assert len(raw) == size and b"value 6" in raw


def test_each_name_names_one_codec() -> None:
    assert len(BY_THRIFT) == len(BY_REPORTED) == len(BY_WRITER) == len(CODECS)
    assert BY_REPORTED["LZ4"].parquet == "LZ4_RAW", "pyarrow's LZ4 is Parquet's LZ4_RAW, not Hadoop-framed LZ4"
    assert {c.parquet for c in CODECS} == {"UNCOMPRESSED", "SNAPPY", "GZIP", "BROTLI", "ZSTD", "LZ4_RAW"}
