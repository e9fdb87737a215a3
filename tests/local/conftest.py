"""The local emulator (etl/local/emulator.py) on a free loopback port, for tests of what it adds to moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from etl.local import moto_ddb, moto_s3
from etl.local.emulator import Emulator


@pytest.fixture(scope="module")
def emulator_endpoint() -> Iterator[str]:
    server = Emulator("127.0.0.1", 0)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
        moto_s3.uninstall()  # other modules' moto servers in this process get moto as shipped
        moto_ddb.uninstall()
