"""The text read in pieces (services/transform/pieces.py) gives what the whole text gave.

The scans made piece by piece find the same first invalid UTF-8 byte and the same first NUL as a scan
of the whole text, wherever the cuts fall (a character split between pieces is no error); what the
first attempt learns only at the end (`\\r` line breaks, blank lines inside, a header or blank lines
longer than a piece) reads the text again and ends with the result of reading it whole; a piece that
cannot be read fails the object with the reader's own error; no reading thread outlives transform().
"""

from __future__ import annotations

import threading
from typing import Any
from unittest import mock

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import aws
from services.transform import parse_csv
from services.transform.chunks import ByteRange
from services.transform.core import transform
from services.transform.errors import TransformError
from services.transform.pieces import Pieces
from tests.services.transform_helpers import csv_text, good_rows, run, same, typed_dataset, typed_row


def whole_verdict(data: bytes) -> str | None:
    """What a scan of the whole text says (the first invalid byte wins over any NUL)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
    if b"\0" in data:
        return f"contains a NUL byte at offset {data.index(0)}"
    return None


def pieces_verdict(pieces: Pieces) -> str | None:
    try:
        pieces.scanned()
    except TransformError as exc:
        return exc.reason
    return None


#: text made of characters of every UTF-8 length, with a few bytes that break it
_TEXT = st.lists(st.one_of(st.sampled_from(["a", "\n", "\r", "é", "€", "𝄞", "\0"]).map(str.encode),
                           st.sampled_from([b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9d\x84", b"\xff", b"\xed\xa0\x80"])),
                 max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=_TEXT, piece=st.integers(4, 16), cpus=st.sampled_from([1, 2]), readers=st.sampled_from([1, 3]))
def test_the_scans_of_the_pieces_say_what_a_scan_of_the_whole_text_says(
        data: bytes, piece: int, cpus: int, readers: int) -> None:
    """Pieces of a text in memory, or read by several readers at once (as from S3), at one and two CPUs."""
    before = pa.cpu_count()
    pa.set_cpu_count(cpus)
    buffer = pa.py_buffer(data)
    try:
        with Pieces(lambda at, n: buffer.slice(at, n), 0, len(data), 0, buffer.slice(0, min(piece, len(data))), piece,
                    "obj", readers=readers) as pieces:
            verdict = pieces_verdict(pieces)
            if verdict is None:
                assert pieces.scanned().lf == data.count(b"\n")
                assert pieces.scanned().cr == data.find(b"\r")
            assert pieces[:] == data and [pieces[i] for i in range(len(data))] == list(data)
            assert pieces.first_not(10, 0) == next((i for i, b in enumerate(data) if b != 10), -1)
            assert pieces.last_not(10, 0) == max((i for i, b in enumerate(data) if b != 10), default=-1)
    finally:
        pa.set_cpu_count(before)
    expected = whole_verdict(data)
    assert verdict == expected if expected is None or "UTF-8" in expected else verdict.startswith(expected)


@pytest.fixture(params=[1, 2], ids=["1cpu", "2cpus"])
def small_pieces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pieces (and pyarrow blocks) of 4 KiB, the first block shorter, at one and at two CPUs."""
    monkeypatch.setattr(parse_csv, "BLOCK_SIZE", 4096)
    monkeypatch.setattr(parse_csv, "FIRST_BLOCK", 1000)
    before = pa.cpu_count()
    pa.set_cpu_count(request.param)
    yield request.param
    pa.set_cpu_count(before)
    assert not [t for t in threading.enumerate() if t.name.startswith("text-pieces")]


def rows(n: int, start: int = 1) -> list[str]:
    return [",".join(typed_row(k)) for k in range(start, start + n)]


def exact(data: bytes) -> Any:
    """The same text read by the exact Python reader alone."""
    with mock.patch.object(parse_csv, "_read_fast", return_value=None), \
            mock.patch.object(parse_csv, "_read_pieces", side_effect=parse_csv.Reread("exact")):
        return run(typed_dataset(), data)


@pytest.mark.parametrize("where", ["crlf-later", "cr-later", "blank-inside-later"])
def test_what_only_the_end_shows_reads_the_text_again_with_the_same_result(small_pieces: int, where: str) -> None:
    head = "\n".join(rows(200)) + "\n"
    tail = rows(200, 201)
    later = {"crlf-later": "\r\n".join(tail) + "\r\n", "cr-later": "\r".join(tail) + "\r",
             "blank-inside-later": "\n".join(tail[:100]) + "\n\n\n" + "\n".join(tail[100:]) + "\n"}[where]
    data = csv_text([]) + (head + later).encode()
    with mock.patch.object(parse_csv, "_read_fast", wraps=parse_csv._read_fast) as indexed:
        result = run(typed_dataset(), data)
    assert indexed.call_count == 2  # read again with a line index: from bytes, then from a pyarrow file
    assert [r["id"] for r in good_rows(result)] == list(range(1, 401))
    same(result, exact(data))


@pytest.mark.parametrize("shape", ["long-header", "header-at-cut", "blank-lines-past-a-piece", "only-blank-lines"])
def test_a_start_longer_than_a_piece_is_read_right(small_pieces: int, shape: str) -> None:
    header = ",".join(f"{c}" for c in csv_text([]).decode().strip().split(","))
    if shape == "long-header":
        data = (" " * 5000 + header + "\n" + "\n".join(rows(50)) + "\n").encode()
    elif shape == "header-at-cut":  # the header's line break is the first piece's last byte
        data = ("\n" * (4095 - len(header)) + header + "\n" + "\n".join(rows(50)) + "\n").encode()
    elif shape == "blank-lines-past-a-piece":
        data = (header + "\n" * 9000 + "\n".join(rows(50)) + "\n").encode()
    else:
        data = (header + "\n" * 9000).encode()
    with mock.patch.object(parse_csv, "_read_fast", wraps=parse_csv._read_fast) as indexed:
        result = run(typed_dataset(), data)
    assert indexed.call_count == (2 if shape == "long-header" else 0)  # no line index needed for blank lines
    assert len(good_rows(result)) == (0 if shape == "only-blank-lines" else 50)
    same(result, exact(data))


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_a_bad_byte_in_a_later_piece_fails_the_object_at_its_offset(small_pieces: int, offset: int) -> None:
    """A character cut by a piece's end is no error; a broken one is, at the offset a whole scan gives."""
    header, body = csv_text([]), ("\n".join(rows(300)) + "\n").encode()
    cut = 4096 * 3 - offset - len(header)  # a 4-byte character across the third cut, starting `offset` bytes before
    good = header + body[:cut] + "𝄞".encode() + body[cut:]
    result = run(typed_dataset(), good)
    assert result.rows_in == 300
    same(result, exact(good))
    data = header + body[:cut] + "𝄞".encode()[:3] + body[cut:]
    with pytest.raises(TransformError, match=f"invalid byte 0xf0 at offset {4096 * 3 - offset}\\)"):
        run(typed_dataset(), data)


class Failing(pa.BufferReader):
    """An object whose reads from `fail_at` on fail (a connection lost in the middle of an S3 object)."""

    fail_at = 4096 * 3

    def get_stream(self, at: int, length: int) -> pa.NativeFile:
        if at >= self.fail_at:
            raise OSError("connection reset while reading the object")
        return super().get_stream(at, length)


def test_a_piece_that_cannot_be_read_fails_the_object_with_the_readers_error(small_pieces: int) -> None:
    data = csv_text([]) + ("\n".join(rows(300)) + "\n").encode()
    assert len(data) > Failing.fail_at + 4096
    with pytest.raises(OSError, match="connection reset"):
        transform(typed_dataset(), Failing(data), object_id="obj", source="s3://raw/obj")


def test_an_s3_object_is_read_in_pieces_by_several_ranged_gets_with_the_same_result(
        small_pieces: int, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The function's read: pieces are ranged GETs, several in flight (over HTTP to moto), whole and chunked."""
    for k, v in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    data = b"\xef\xbb\xbf" + csv_text([]) + ("\n".join(rows(400)) + "\n").encode()
    aws.client("s3").create_bucket(Bucket="raw-pieces")
    aws.client("s3").put_object(Bucket="raw-pieces", Key="orders.csv", Body=data)
    cut = data.index(b"\n", len(data) // 2) + 1
    counts = []
    for chunk in (None, ByteRange(0, cut, 0, 1), ByteRange(cut, len(data), 1, data[:cut].count(b"\n") + 1)):
        with aws.s3_filesystem().open_input_file("raw-pieces/orders.csv") as f:
            read = transform(typed_dataset(), f, object_id="obj", source="s3://raw-pieces/orders.csv", chunk=chunk)
        same(read, run(typed_dataset(), data, chunk))
        counts.append(read.rows_good)
    assert counts[0] == 400 and counts[1] + counts[2] == 400 and counts[1] > 100


@pytest.mark.parametrize("cpus", [1, 2])
def test_pieces_are_let_go_once_read_and_read_again_when_the_whole_text_is_asked_for(cpus: int) -> None:
    """The stream lets each piece go once it moved past it (its memory is reused for the next); the verdict
    needs none of them, and the whole text, asked for by a second attempt, reads them again."""
    data = ("a,b\n" * 5000).encode() + "é\xff,x\n".encode("latin-1") + ("c,d\n" * 3000).encode()
    source, reads = pa.py_buffer(data), []

    def read(at: int, n: int) -> pa.Buffer:
        reads.append(at)
        return source.slice(at, n)

    before = pa.cpu_count()
    pa.set_cpu_count(cpus)
    try:
        with Pieces(read, 0, len(data), 0, source.slice(0, 4096), 4096, "obj", readers=2) as pieces:
            stream = pieces.stream(0, 1000)
            assert len(stream.read(4096)) == 1000  # the first read is the short one
            while len(stream.read(4096)):
                pass
            assert [k for k in range(len(pieces._pieces)) if pieces._pieces[k] is None] == list(range(1, 7))
            first_reads = len(reads)
            with pytest.raises(TransformError, match="invalid byte 0xe9 at offset 20000\\)"):  # in a piece let go
                pieces.scanned()
            assert pieces.whole() == data and len(reads) == first_reads + 6
    finally:
        pa.set_cpu_count(before)
