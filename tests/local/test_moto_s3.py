"""The local emulator's S3 data plane: ranged reads read the range, copies carry true checksums, bodies stream."""

from __future__ import annotations

import base64
import gc
import os
import zlib
from typing import Any

import boto3
import pyarrow.fs as pafs
import pytest
from boto3.s3.transfer import TransferConfig

from etl.local import moto_s3

MB = 1 << 20


@pytest.fixture
def s3(emulator_endpoint: str) -> Any:
    client = boto3.client("s3", endpoint_url=emulator_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    bucket = f"bkt-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.bucket = bucket
    return client


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Spy: bytes the emulator pread from spool files, and whole-body reads of bodies on disk."""
    seen = {"pread_bytes": 0, "whole_reads": 0}
    real_pread, original = os.pread, moto_s3._ORIGINAL["value"]

    def pread(fd: int, n: int, offset: int) -> bytes:
        block = real_pread(fd, n, offset)
        seen["pread_bytes"] += len(block)
        return block

    def whole(key: Any) -> bytes:
        if getattr(key._value_buffer, "_rolled", False):
            seen["whole_reads"] += 1
        return original.fget(key)

    monkeypatch.setattr(moto_s3.os, "pread", pread)
    monkeypatch.setitem(moto_s3._ORIGINAL, "value", property(whole, original.fset))
    return seen


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_a_ranged_get_reads_the_range_not_the_object(s3: Any, reads: dict[str, int]) -> None:
    data = os.urandom(3 * MB)
    s3.put_object(Bucket=s3.bucket, Key="big", Body=data)
    reads["pread_bytes"] = 0
    got = s3.get_object(Bucket=s3.bucket, Key="big", Range="bytes=1000000-1065535")["Body"].read()
    assert got == data[1000000:1065536]
    assert reads["pread_bytes"] == 65536, "exactly the range came off the disk"
    assert reads["whole_reads"] == 0


def test_a_whole_get_streams_in_chunks_and_validates(s3: Any, reads: dict[str, int]) -> None:
    data = os.urandom(3 * MB + 17)
    s3.put_object(Bucket=s3.bucket, Key="big", Body=data, ChecksumAlgorithm="CRC32")
    got = s3.get_object(Bucket=s3.bucket, Key="big", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == crc32(data)
    assert reads["whole_reads"] == 0


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256"])
def test_a_copy_of_a_composite_multipart_object_carries_its_own_checksum(s3: Any, algorithm: str) -> None:
    """Stock moto copied the composite checksum without its type: botocore raised FlexibleChecksumError."""
    data = os.urandom(6 * MB) + os.urandom(MB)
    upload = s3.create_multipart_upload(Bucket=s3.bucket, Key="src", ChecksumAlgorithm=algorithm,
                                        ChecksumType="COMPOSITE")["UploadId"]
    parts = []
    for n, (a, b) in enumerate(((0, 6 * MB), (6 * MB, len(data))), 1):
        r = s3.upload_part(Bucket=s3.bucket, Key="src", UploadId=upload, PartNumber=n, Body=data[a:b],
                           ChecksumAlgorithm=algorithm)
        parts.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{algorithm}": r[f"Checksum{algorithm}"]})
    s3.complete_multipart_upload(Bucket=s3.bucket, Key="src", UploadId=upload, MultipartUpload={"Parts": parts})
    s3.copy_object(Bucket=s3.bucket, Key="dst", CopySource={"Bucket": s3.bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"etl-object-id": "x"})  # as ingest copies
    for key in ("src", "dst"):
        got = s3.get_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")  # botocore validates full objects
        assert got["Body"].read() == data
    head = s3.head_object(Bucket=s3.bucket, Key="dst", ChecksumMode="ENABLED")
    if algorithm == "CRC32":
        assert head["ChecksumCRC32"] == crc32(data), "the copy's checksum is its own bytes' full-object CRC32"


def test_multipart_upload_and_multipart_copy_stream_and_read_back(s3: Any, emulator_endpoint: str,
                                                                 reads: dict[str, int], tmp_path: Any) -> None:
    """What `etl load` (upload_file) and ingest (s3.copy, UploadPartCopy above its threshold) do, small."""
    data = os.urandom(11 * MB + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    small = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    s3.upload_file(str(path), s3.bucket, "landing", Config=small)
    s3.copy({"Bucket": s3.bucket, "Key": "landing"}, s3.bucket, "raw", Config=small,
            ExtraArgs={"MetadataDirective": "REPLACE", "Metadata": {"etl-object-id": "x"}})
    for key in ("landing", "raw"):
        assert s3.get_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")["Body"].read() == data
    assert reads["whole_reads"] == 0, "parts, copies and completes never held a body on disk in memory"
    fs = pafs.S3FileSystem(endpoint_override=emulator_endpoint, scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1")
    with fs.open_input_file(f"{s3.bucket}/raw") as f:
        f.seek(7 * MB)
        assert f.read(4096) == data[7 * MB : 7 * MB + 4096]


def test_listing_versions_copies_no_bodies(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.s3.models import FakeKey

    bodies = [os.urandom(MB) for _ in range(3)]
    ids = [s3.put_object(Bucket=s3.bucket, Key="k", Body=b)["VersionId"] for b in bodies]
    monkeypatch.setattr(FakeKey, "__getstate__", lambda self: pytest.fail("a version's body was copied"))
    listed = s3.list_object_versions(Bucket=s3.bucket)["Versions"]
    assert sorted(v["VersionId"] for v in listed) == sorted(ids)
    assert [v["IsLatest"] for v in listed if v["VersionId"] == ids[-1]] == [True]
    gc.collect()  # the listing's version records are gone: the bodies they shared must not be
    for vid, body in zip(ids, bodies, strict=True):
        assert s3.get_object(Bucket=s3.bucket, Key="k", VersionId=vid)["Body"].read() == body


def test_a_copy_shares_the_bytes_and_outlives_its_source(s3: Any) -> None:
    data = os.urandom(2 * MB)
    s3.put_object(Bucket=s3.bucket, Key="src", Body=data)
    s3.copy_object(Bucket=s3.bucket, Key="dst", CopySource={"Bucket": s3.bucket, "Key": "src"})
    for v in s3.list_object_versions(Bucket=s3.bucket, Prefix="src")["Versions"]:
        s3.delete_object(Bucket=s3.bucket, Key="src", VersionId=v["VersionId"])
    gc.collect()
    assert s3.get_object(Bucket=s3.bucket, Key="dst", Range="bytes=5-9")["Body"].read() == data[5:10]
    assert s3.get_object(Bucket=s3.bucket, Key="dst")["Body"].read() == data


def test_a_read_in_flight_survives_the_versions_deletion(s3: Any) -> None:
    from moto.s3.models import s3_backends

    data = os.urandom(2 * MB)
    s3.put_object(Bucket=s3.bucket, Key="k", Body=data)
    key = next(b for a in s3_backends.values() for b in a.values()
               if s3.bucket in b.buckets).get_object(s3.bucket, "k")
    body = moto_s3.FileRange.of(key)[100:]
    key.dispose()  # what DeleteObject of the version does to its spool file
    assert b"".join(body) == data[100:]


def test_multipart_checksums_match_what_s3_computes() -> None:
    parts = [b"a" * 10, b"b" * 7]
    kind, value, count = moto_s3.multipart_checksum(parts, "CRC32", None)
    inner = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    assert (kind, value, count) == ("COMPOSITE", crc32(inner), 2)
    assert moto_s3.multipart_checksum(parts, "CRC32", "FULL_OBJECT") == ("FULL_OBJECT", crc32(b"".join(parts)), 1)
    assert moto_s3.multipart_checksum(parts, "CRC64NVME", None) is None, "no wrong checksum when not computable"


def test_a_copys_etag_is_the_md5_of_its_bytes(s3: Any, tmp_path: Any) -> None:
    import hashlib

    data = os.urandom(11 * MB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    s3.upload_file(str(path), s3.bucket, "multi", Config=TransferConfig(multipart_threshold=5 * MB,
                                                                         multipart_chunksize=5 * MB))
    s3.put_object(Bucket=s3.bucket, Key="single", Body=data)
    md5 = f'"{hashlib.md5(data).hexdigest()}"'
    for src in ("multi", "single"):
        copied = s3.copy_object(Bucket=s3.bucket, Key=f"{src}-copy", CopySource={"Bucket": s3.bucket, "Key": src})
        assert copied["CopyObjectResult"]["ETag"] == md5
        assert s3.head_object(Bucket=s3.bucket, Key=f"{src}-copy")["ETag"] == md5


def test_concurrent_transactions_and_writes_neither_fail_nor_lose_items(emulator_endpoint: str) -> None:
    """moto deep-copied a table for each transaction while other threads wrote to it (RuntimeError, 500)."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config

    ddb = boto3.client("dynamodb", endpoint_url=emulator_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))
    table = f"t-{os.urandom(4).hex()}"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")

    def work(n: int) -> None:
        for i in range(15):
            if n % 2:
                ddb.put_item(TableName=table, Item={"pk": {"S": f"p{n}-{i}"}, "pad": {"S": "x" * 500}})
            else:
                ddb.transact_write_items(TransactItems=[
                    {"Put": {"TableName": table, "Item": {"pk": {"S": f"t{n}-{i}-{j}"}}}} for j in range(3)])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))  # re-raises any 500
    count = sum(page["Count"] for page in ddb.get_paginator("scan").paginate(TableName=table))
    assert count == 3 * 15 + 3 * 15 * 3


def test_a_multipart_upload_announces_one_object_created(s3: Any, tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """moto sent a Put event and a CompleteMultipartUpload event: every `etl load` over 8 MiB ingested twice."""
    from moto.s3 import notifications

    sent: list[str] = []
    real = notifications.send_event
    monkeypatch.setattr(notifications, "send_event",
                        lambda account, name, bucket, key: (sent.append(str(getattr(name, "value", name))),
                                                            real(account, name, bucket, key)))
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(11 * MB))
    s3.upload_file(str(path), s3.bucket, "k", Config=TransferConfig(multipart_threshold=5 * MB,
                                                                     multipart_chunksize=5 * MB))
    created = [n for n in sent if "ObjectCreated" in n]
    assert created == ["s3:ObjectCreated:CompleteMultipartUpload"]
