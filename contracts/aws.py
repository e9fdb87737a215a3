"""AWS clients built from the standard environment, in one place.

boto3 honours AWS_ENDPOINT_URL by itself; pyarrow's S3FileSystem does not, so it is derived here
from the same variable. That is the only difference between AWS and the local platform.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

_local = threading.local()
_RETRIES = Config(retries={"max_attempts": 5, "mode": "standard"})


def client(service: str) -> Any:
    """A boto3 client per thread (clients are thread-safe, sessions are not)."""
    cache_ = getattr(_local, "clients", None)
    if cache_ is None:
        cache_ = _local.clients = {}
    key = (service, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_DEFAULT_REGION"))
    if key not in cache_:
        cache_[key] = boto3.session.Session().client(service, config=_RETRIES)
    return cache_[key]


@cache
def _s3fs(endpoint: str | None, region: str | None) -> Any:
    from pyarrow import fs

    if not endpoint:
        return fs.S3FileSystem(region=region)
    url = urlparse(endpoint)
    return fs.S3FileSystem(
        endpoint_override=url.netloc,
        scheme=url.scheme or "http",
        region=region or "us-east-1",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        allow_bucket_creation=False,
    )


def s3_filesystem() -> Any:
    """pyarrow S3 filesystem for the same endpoint boto3 uses."""
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    return _s3fs(os.environ.get("AWS_ENDPOINT_URL"), region)
