"""The tests' moto server (tests/conftest.py), reached through AWS_ENDPOINT_URL for the whole module (as users do)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto_endpoint(moto_endpoint: str) -> Iterator[str]:
    """Point boto3 and pyarrow at the moto server for the module; restore the env after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        mp.delenv("AWS_REGION", raising=False)
        yield moto_endpoint
