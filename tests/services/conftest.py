"""Fixtures of the service tests (helpers shared between modules live in non-test modules next to them)."""

from __future__ import annotations

import pytest

from tests.services.erasure_world import World, make_world


@pytest.fixture
def world(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """Buckets, state table, Glue tables and an erasure engine of one test, on the module's moto server."""
    return make_world(moto_endpoint, monkeypatch)
