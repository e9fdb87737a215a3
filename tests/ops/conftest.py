"""A moto server on loopback for the module, reached over HTTP through AWS_ENDPOINT_URL (as users do)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """Start ThreadedMotoServer on a free port; point boto3 and pyarrow at it; restore the env after."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        mp.delenv("AWS_REGION", raising=False)
        try:
            yield endpoint
        finally:
            server.stop()
