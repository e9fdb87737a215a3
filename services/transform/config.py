"""The transform function's settings: `contracts.settings.TransformSettings`, the one model infra/transform.py
writes out as environment variables and the function reads back (`Env.from_environ()`)."""

from __future__ import annotations

from contracts.settings import TransformSettings

Env = TransformSettings

__all__ = ["Env"]
