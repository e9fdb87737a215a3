"""Picks the component from the stack name (`<component>-<env>`) and builds it."""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from infra import compact, core, erasure, ingest, transform
from infra.settings import Settings, load

BUILDERS: dict[str, Callable[[Settings], dict[str, pulumi.Input]]] = {
    "core": core.build,
    "ingest": ingest.build,
    "transform": transform.build,
    "compact": compact.build,
    "erasure": erasure.build,
}


def main() -> dict[str, pulumi.Input]:
    """Build the stack's component and export its outputs (returned too, for the local platform)."""
    settings = load()
    builder = BUILDERS.get(settings.component)
    if builder is None:
        raise ValueError(
            f"component {settings.component!r} has no program yet; buildable: {', '.join(sorted(BUILDERS))}"
        )
    outputs = builder(settings)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
