"""The ingest function's settings: `contracts.settings.IngestSettings`, the one model infra/ingest.py writes out
as environment variables and the function reads back (`settings()`, per invocation)."""

from __future__ import annotations

from contracts.settings import IngestSettings


def settings() -> IngestSettings:
    return IngestSettings.from_environ()
