"""The erasure functions' settings: `contracts.settings.ErasureSettings`, the one model infra/erasure.py
writes out as environment variables and these functions read back (`Config.from_environ()`)."""

from __future__ import annotations

from contracts.settings import DAY, ErasureSettings

Config = ErasureSettings

__all__ = ["DAY", "Config"]
