"""The compact function's settings: `contracts.settings.CompactSettings`, the one model infra/compact.py
writes out as environment variables and the function reads back."""

from __future__ import annotations

from contracts.settings import CompactSettings

__all__ = ["CompactSettings"]
