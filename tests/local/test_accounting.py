"""Request accounting on the local platform: every AWS request is logged with its caller, service and operation."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import boto3
import pyarrow.fs as pafs
import pytest

from etl.local import accounting, platform


@pytest.fixture
def accounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(accounting.REQUEST_LOG_ENV, str(log))
    server = accounting.accounted_server(log, "127.0.0.1", 0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}", log
    server.stop()


def client(service: str, endpoint: str, key: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key="testing")


def test_every_request_is_attributed_to_the_caller_and_classified(accounted) -> None:
    endpoint, log = accounted
    fn_key = accounting.caller_env("etl-local-transform")["AWS_ACCESS_KEY_ID"]
    s3 = client("s3", endpoint, fn_key)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k/one", Body=b"12345")
    s3.copy_object(Bucket="bkt", Key="k/two", CopySource={"Bucket": "bkt", "Key": "k/one"})
    s3.get_object(Bucket="bkt", Key="k/one")["Body"].read()
    s3.head_object(Bucket="bkt", Key="k/one")
    s3.list_objects_v2(Bucket="bkt", Prefix="k/")
    s3.delete_object(Bucket="bkt", Key="k/two")
    fs = pafs.S3FileSystem(endpoint_override=endpoint.removeprefix("http://"), scheme="http", access_key=fn_key,
                           secret_key="testing", region="us-east-1")
    assert fs.open_input_file("bkt/k/one").read() == b"12345"
    with fs.open_output_stream("bkt/k/streamed") as out:  # pyarrow streams: no Content-Length, chunked body
        out.write(b"x" * 70_000)
    assert s3.head_object(Bucket="bkt", Key="k/streamed")["ContentLength"] == 70_000  # passed on whole
    ddb = client("dynamodb", endpoint, "testing")
    ddb.list_tables()
    client("sqs", endpoint, fn_key).create_queue(QueueName="q")
    client("sns", endpoint, fn_key).list_topics()  # query protocol: the action is in the form body
    events = client("events", endpoint, fn_key)
    events.put_events(Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}"}] * 3)

    deadline = time.monotonic() + 60  # a line is written once its response is sent: the last may lag the client
    while not any(r.operation == "PutEvents" for r in accounting.read(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    requests = list(accounting.read(log))
    transform = [r for r in requests if r.caller == "etl_local_transform"]
    s3_ops = Counter(r.operation for r in transform if r.service == "s3")
    assert s3_ops["PUT"] == 3  # CreateBucket, PutObject, the streamed upload
    assert s3_ops["COPY"] == 1 and s3_ops["LIST"] == 1 and s3_ops["DELETE"] == 1
    assert s3_ops["GET"] >= 2 and s3_ops["HEAD"] >= 1  # boto3's GET + pyarrow's HEAD/GET
    assert {r.s3_class for r in transform if r.operation == "COPY"} == {"tier1"}
    assert {r.s3_class for r in transform if r.operation == "DELETE"} == {"free"}
    assert next(r for r in transform if r.operation == "PUT" and r.bytes_in).bytes_in == 5
    assert next(r.bytes_out for r in transform if r.service == "s3" and r.operation == "GET") == 5
    assert [r.units for r in transform if r.operation == "PutEvents"] == [3]
    assert ("sqs", "CreateQueue") in {(r.service, r.operation) for r in transform}
    assert ("sns", "ListTopics") in {(r.service, r.operation) for r in transform}
    assert [(r.caller, r.service, r.operation) for r in requests if r.service == "dynamodb"] == [
        (accounting.CLIENT, "dynamodb", "ListTables")
    ]


def test_caller_keys_are_only_handed_out_when_requests_are_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(accounting.REQUEST_LOG_ENV, raising=False)
    assert accounting.caller_env("etl-local-ingest") == {}


def test_config_overrides_lay_over_the_stack_files(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = platform.config_overrides(["transform:chunkBytes=1048576", "compact:etl:compactGraceSeconds=5"])
    assert overrides == {"transform-local": {"etl:chunkBytes": "1048576"},
                         "compact-local": {"etl:compactGraceSeconds": "5"}}
    monkeypatch.setenv(platform.CONFIG_ENV, json.dumps(overrides))
    assert platform.stack_config("transform-local")["etl:chunkBytes"] == "1048576"
    monkeypatch.delenv(platform.CONFIG_ENV)
    assert platform.stack_config("transform-local").get("etl:chunkBytes") is None  # the file's own: AWS's default


@pytest.mark.parametrize("bad", ["chunkBytes=1", "nosuch:chunkBytes=1", "transform:chunkBytes", "transform:=1"])
def test_malformed_overrides_say_what_is_expected(bad: str) -> None:
    with pytest.raises(ValueError, match="component:key=value"):
        platform.config_overrides([bad])
