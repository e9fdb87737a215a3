"""Run the Pulumi program under the mock runtime, handing each registered resource to a backend.

The same `infra.program.main` that `pulumi up` runs is executed here; only the engine differs. A
backend decides what "creating" a resource means: the recording backend (infra tests) invents ids,
the moto backend provisions the resource in the emulator and returns its real ids and ARNs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
from pulumi.runtime import config as pulumi_config
from pulumi.runtime import settings as pulumi_settings

PROJECT = "etl"


@dataclass
class Registered:
    """One resource the program registered, with the inputs it asked for and what it got."""

    type: str
    name: str
    inputs: dict[str, Any]
    id: str
    state: dict[str, Any]
    effect: str = "created"  # or "recorded": kept without effect in the emulator


class Backend(Protocol):
    def create(self, type_: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """Provision one custom resource: (physical id, output state, effect)."""

    def call(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        """Answer a provider function call such as aws:index/getCallerIdentity."""


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, backend: Backend, stack_outputs: Mapping[str, Mapping[str, Any]]) -> None:
        self.backend = backend
        self.stack_outputs = stack_outputs
        self.registered: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == "pulumi:pulumi:StackReference":
            ref = args.inputs.get("name") or args.name
            stack = ref.rsplit("/", 1)[-1]
            if stack not in self.stack_outputs:
                raise LookupError(f"stack reference {ref!r}: stack {stack!r} is not up (bring up core first)")
            return ref, {"name": ref, "outputs": dict(self.stack_outputs[stack]), "secretOutputNames": []}
        if not args.custom or args.typ.startswith("pulumi:providers:"):
            return args.name, dict(args.inputs)
        rid, state, effect = self.backend.create(args.typ, args.name, dict(args.inputs))
        self.registered.append(Registered(args.typ, args.name, dict(args.inputs), rid, state, effect))
        return rid, {**args.inputs, **state}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return self.backend.call(args.token, dict(args.args)), []


@dataclass
class StackRun:
    stack: str
    outputs: dict[str, Any] = field(default_factory=dict)
    resources: list[Registered] = field(default_factory=list)


def run_stack(
    stack: str,
    backend: Backend,
    config: Mapping[str, Any] | None = None,
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> StackRun:
    """Run `infra.program.main` for one stack and return its resolved outputs and resources."""
    from infra import program  # imported late: the runtime must be mocked first

    mocks = _Mocks(backend, stack_outputs or {})
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    pulumi_config.set_all_config({k if ":" in k else f"{PROJECT}:{k}": _cfg(v) for k, v in (config or {}).items()})
    run = StackRun(stack)

    @pulumi.runtime.test
    def _program() -> pulumi.Output:
        outputs = program.main()
        return pulumi.Output.from_input(outputs).apply(run.outputs.update)

    _program()
    run.resources = mocks.registered
    return run


def _cfg(value: Any) -> str:
    """Pulumi config values are strings (objects as JSON)."""
    import json

    return value if isinstance(value, str) else json.dumps(value)
