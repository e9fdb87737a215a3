"""Physical names of shared resources, derived from the environment.

Infra names resources with these functions; tools (CLI, local platform) use them to find things.
"""

from __future__ import annotations

PROJECT = "etl"
COMPONENTS = ("core", "ingest", "transform", "compact", "erasure")
SERVICES = COMPONENTS[1:]


def prefix(env: str) -> str:
    return f"{PROJECT}-{env}"


def name(env: str, purpose: str) -> str:
    """Name of a regional resource (queue, table, function, bus …)."""
    return f"{prefix(env)}-{purpose}"


def bucket_name(env: str, purpose: str, account_id: str) -> str:
    """S3 names are global: include the account id so every account gets its own."""
    return f"{prefix(env)}-{purpose}-{account_id}"


def stack_name(component: str, env: str) -> str:
    return f"{component}-{env}"


def parse_stack_name(stack: str) -> tuple[str, str]:
    """Split `<component>-<env>`; raises a ValueError that says what is expected."""
    component, sep, env = stack.partition("-")
    if not sep or component not in COMPONENTS or not env:
        raise ValueError(
            f"stack {stack!r} is not named <component>-<env> with component one of {', '.join(COMPONENTS)}"
            " (e.g. core-dev, ingest-dev); or set config etl:component"
        )
    return component, env
