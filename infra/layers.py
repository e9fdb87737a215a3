"""Dependency layers of a service: the zip `etl build` made, published as a Lambda layer version."""

from __future__ import annotations

import pulumi

from contracts import naming
from infra import artifacts
from infra.packaging import Archive, build_dir, file_sha256_b64
from infra.settings import Settings

LOCAL_ENV = "local"


def dependency_layers(s: Settings, service: str, artifacts_bucket: pulumi.Input[str]) -> list[pulumi.Input[str]]:
    """Layer ARNs for a service's functions: its own dependency layer, then any from config.

    The local platform runs functions in the developer's venv, which has the dependencies already.
    """
    if s.env == LOCAL_ENV:
        return list(s.lambda_layers)
    zip_path = build_dir() / f"{service}-layer-{s.lambda_architecture}.zip"
    if not zip_path.exists():
        raise FileNotFoundError(
            f"{zip_path} is missing: run `etl build {service} --arch {s.lambda_architecture}` first "
            "(`etl deploy` does it for you)"
        )
    layer = artifacts.layer_version(
        f"{service}-deps",
        Archive(zip_path, file_sha256_b64(zip_path), ()),
        layer_name=naming.name(s.env, f"{service}-deps"),
        architectures=[s.lambda_architecture],
        runtimes=(s.lambda_runtime,),
        bucket=artifacts_bucket,
        description=f"Python dependencies of the {service} service",
    )
    return [layer.arn, *s.lambda_layers]
