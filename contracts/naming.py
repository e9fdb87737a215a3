"""Physical names of shared resources, derived from the environment.

Infra names resources with these functions; tools (CLI, local platform) use them to find things.
"""

from __future__ import annotations

PROJECT = "etl"
COMPONENTS = ("core", "ingest", "transform", "compact", "erasure")
SERVICES = COMPONENTS[1:]
#: every function of each service, by purpose (physical name: `name(env, purpose)`); the dashboard lists them
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest",),
    "transform": ("transform",),
    "compact": ("compact",),
    "erasure": ("erasure-api", "erasure-intake", "erasure-run", "erasure-worker"),
}
#: the functions fed by their own SQS queue (`queue_name`) with a DLQ (`dlq_name`); erasure-api is HTTP only
QUEUE_FED: tuple[str, ...] = ("ingest", "transform", "compact", "erasure-intake", "erasure-run", "erasure-worker")


def prefix(env: str) -> str:
    return f"{PROJECT}-{env}"


def name(env: str, purpose: str) -> str:
    """Name of a regional resource (queue, table, function, bus …)."""
    return f"{prefix(env)}-{purpose}"


def queue_name(function_name: str) -> str:
    """The SQS queue feeding a function, from the function's physical name."""
    return f"{function_name}-queue"


def dlq_name(function_name: str) -> str:
    """The dead-letter queue behind `queue_name(function_name)`."""
    return f"{function_name}-dlq"


def dashboard_name(env: str) -> str:
    """The env's one CloudWatch dashboard (core stack)."""
    return prefix(env)


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
