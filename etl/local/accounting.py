"""Count every AWS request the local platform serves, and who made it.

`etl local up --request-log FILE` wraps the emulator so each request appends one JSON line: the
caller, the AWS service, the operation and the request body size. The caller is read from the
access key of the request's SigV4 signature: the supervisor gives every function host and API host
its own key (`caller_env`), so boto3 and pyarrow's S3 client (which signs with the same
credentials) are attributed alike. Benchmarks turn these lines into request counts per service and
operation, and from there into a bill (bench/cost_bench.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

REQUEST_LOG_ENV = "ETL_LOCAL_REQUEST_LOG"  # file that gets one line per AWS request (`etl local up --request-log`)
KEY_PREFIX = "LOCAL"
CLIENT = "client"  # requests signed with the shared local credentials: CLI, tests, provisioning
_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
_SAFE = re.compile(r"[^A-Za-z0-9]")


def caller_id(name: str) -> str:
    """How host `name` (a function or API host) appears as `caller` in the request log."""
    return _SAFE.sub("_", name)


def caller_env(name: str) -> dict[str, str]:
    """Credentials that identify host `name` in the request log, when there is one; moto accepts any key."""
    if not os.environ.get(REQUEST_LOG_ENV):
        return {}
    return {"AWS_ACCESS_KEY_ID": KEY_PREFIX + caller_id(name)}


@dataclass(frozen=True)
class Request:
    caller: str
    service: str
    operation: str
    bytes_in: int
    units: int = 1  # what the bill counts: entries of a PutEvents / SendMessageBatch / batch or transact write
    bytes_out: int = 0

    @property
    def s3_class(self) -> str:
        """S3 bills by request class: tier 1 (PUT, COPY, POST, LIST), tier 2 (GET, HEAD), DELETE is free."""
        if self.service != "s3":
            return ""
        if self.operation == "DELETE":
            return "free"
        return "tier2" if self.operation in ("GET", "HEAD") else "tier1"


def classify(environ: dict[str, Any], body: bytes) -> Request:
    """Caller, service and operation of one WSGI request, from its headers and (query protocol) body."""
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    key, service = found.groups() if found else ("", "unsigned")
    caller = key[len(KEY_PREFIX):] if key.startswith(KEY_PREFIX) else CLIENT
    method = environ.get("REQUEST_METHOD", "GET")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        operation = target.rsplit(".", 1)[-1]
    elif service == "s3":
        operation = _s3_operation(method, environ)
    else:
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if not params.get("Action") and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            params = parse_qs(body.decode("utf-8", "replace"))
        operation = (params.get("Action") or [f"{method} {environ.get('PATH_INFO', '')}"])[0]
    return Request(caller, service, operation, len(body), _units(operation, body))


_BATCHES = {"PutEvents": "Entries", "SendMessageBatch": "Entries", "DeleteMessageBatch": "Entries",
            "TransactWriteItems": "TransactItems", "TransactGetItems": "TransactItems"}


def _units(operation: str, body: bytes) -> int:
    """Entries in a batch request (JSON protocol), 1 for anything else."""
    if operation == "BatchWriteItem":
        items = json.loads(body).get("RequestItems", {})
        return max(1, sum(len(v) for v in items.values()))
    if operation == "BatchGetItem":  # each key is read (and billed) on its own
        tables = json.loads(body).get("RequestItems", {})
        return max(1, sum(len(t.get("Keys", [])) for t in tables.values()))
    if operation in _BATCHES:
        return max(1, len(json.loads(body).get(_BATCHES[operation], [])))
    return 1


def _s3_operation(method: str, environ: dict[str, Any]) -> str:
    """S3 is REST: a LIST is a GET on a bucket, a COPY is a PUT with a copy source."""
    path = environ.get("PATH_INFO", "/").strip("/")
    host_bucket = environ.get("HTTP_HOST", "").split(".")[0] if ".s3." in environ.get("HTTP_HOST", "") else ""
    on_bucket = ("/" not in path) if not host_bucket else not path
    if method == "GET" and on_bucket:
        return "LIST"
    if method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
        return "COPY"
    return method


class RequestLog:
    """WSGI middleware that appends one JSON line per request, then hands the request to the emulator."""

    def __init__(self, app: Callable[..., Iterable[bytes]], path: Path) -> None:
        self.app, self.path, self.lock = app, path, threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's lifetime

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            body = environ["wsgi.input"].read(length)
        elif environ.get("wsgi.input_terminated"):  # chunked upload (pyarrow's S3 streams): read to the end
            body = environ["wsgi.input"].read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)  # the emulator reads the body again
        return self._logged(self.app(environ, start_response), classify(environ, body))

    def _logged(self, response: Iterable[bytes], request: Request) -> Iterator[bytes]:
        """Pass the response through, then log the request with its response size."""
        size = 0
        try:
            for chunk in response:
                size += len(chunk)
                yield chunk
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()
            with self.lock:
                self.out.write(json.dumps(replace(request, bytes_out=size).__dict__) + "\n")
                self.out.flush()


def read(path: Path) -> Iterator[Request]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Request(**json.loads(line))


def accounted_server(path: Path, ip_address: str, port: int) -> Any:
    """The local platform's emulator with its application wrapped in a RequestLog."""
    from etl.local.emulator import Emulator

    return Emulator(ip_address, port, wrap=lambda app: RequestLog(app, path))
