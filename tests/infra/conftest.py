"""Fixtures of the infra tests: each stack of the real program, built once per module (helpers in harness.py)."""

from __future__ import annotations

import pytest

from tests.infra.harness import Stack, build


@pytest.fixture(scope="module")
def core() -> Stack:
    return build("core-dev")


@pytest.fixture(scope="module")
def ingest() -> Stack:
    return build("ingest-dev")


@pytest.fixture(scope="module")
def transform() -> Stack:
    return build("transform-dev")


@pytest.fixture(scope="module")
def all_stacks(core: Stack, ingest: Stack, transform: Stack) -> list[Stack]:
    return [core, ingest, transform]
