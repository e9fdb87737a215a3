"""Where the CLI talks to: the local platform (state file) or a deployed env (Pulumi stack outputs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from contracts import naming
from etl.local.platform import ENV as LOCAL_ENV
from etl.local.platform import PlatformState, pid_alive


class TargetError(RuntimeError):
    """The CLI cannot reach the environment; the message says what to do."""


@dataclass(frozen=True)
class Target:
    env: str
    outputs: dict[str, dict[str, Any]]  # component -> outputs

    def out(self, component: str, key: str) -> Any:
        try:
            return self.outputs[component][key]
        except KeyError:
            stack = naming.stack_name(component, self.env)
            raise TargetError(f"stack {stack} has no output {key!r}; is it deployed?") from None


def local_state() -> PlatformState:
    st = PlatformState.load()
    if st is None or not pid_alive(st.pid):
        raise TargetError("the local platform is not running: start it with `etl local up --detach`")
    if st.status != "ready":
        raise TargetError(f"the local platform is {st.status}: {st.error or 'wait a moment and retry'}")
    return st


def resolve(env: str) -> Target:
    """Point boto3 at the environment (AWS_ENDPOINT_URL for local) and read its stack outputs."""
    if env == LOCAL_ENV:
        st = local_state()
        os.environ.update(st.client_env())
        return Target(env, {name.split("-", 1)[0]: s.outputs for name, s in st.stacks.items()})
    if shutil.which("pulumi") is None:
        raise TargetError(
            f"env {env!r} is deployed with Pulumi, but the pulumi CLI is not installed: "
            "see https://www.pulumi.com/docs/install/ (or use --env local)"
        )
    outputs = {}
    for component in naming.COMPONENTS:
        stack = naming.stack_name(component, env)
        proc = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            outputs[component] = json.loads(proc.stdout or "{}")
    if "core" not in outputs:
        raise TargetError(f"stack core-{env} not found: deploy it first (`pulumi up -s core-{env}`)")
    return Target(env, outputs)
