"""Deploy an environment: every stack of `<env>` through Pulumi's Automation API, core first.

The program is the local one at the repository root (Pulumi.yaml, `main: infra/`), so `etl deploy dev`
does exactly what `pulumi up -s core-dev && pulumi up -s ingest-dev …` does, in the right order. The
stack factory is injectable: tests drive the ordering and config logic without a Pulumi CLI.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from contracts import naming

ROOT = Path(__file__).resolve().parent.parent
LOCAL_ENV = "local"  # the embedded platform's env (etl.local.platform.ENV), never deployed to AWS
Action = Literal["deploy", "preview", "destroy"]
#: Automation API method per action
_METHODS: dict[str, str] = {"deploy": "up", "preview": "preview", "destroy": "destroy"}
INSTALL_HINT = (
    "install it with `curl -fsSL https://get.pulumi.com | sh` (macOS: `brew install pulumi/tap/pulumi`; "
    "Windows: `winget install pulumi`; see https://www.pulumi.com/docs/iac/download-install/), "
    "then log in to a state backend: `pulumi login s3://<bucket>` or `pulumi login` (Pulumi Cloud)"
)


class DeployError(RuntimeError):
    """A deployment cannot start or a stack failed; the message says which and what to do."""

    exit_code = 1


class PulumiMissing(DeployError):
    """The pulumi CLI is not on PATH (the Automation API drives it; it cannot work without it)."""

    exit_code = 127  # the shell's "command not found"


class StackHandle(Protocol):
    """The part of `pulumi.automation.Stack` used here."""

    def up(self, on_output: Callable[[str], Any]) -> Any: ...
    def preview(self, on_output: Callable[[str], Any]) -> Any: ...
    def destroy(self, on_output: Callable[[str], Any]) -> Any: ...


#: (stack name, work dir, create if missing) -> stack, or None when it does not exist and create is False
StackFactory = Callable[[str, Path, bool], StackHandle | None]


def pulumi_stack(stack_name: str, work_dir: Path, create: bool) -> StackHandle | None:
    """A stack of the local program at `work_dir`; destroy selects only, never creates an empty stack."""
    from pulumi import automation as auto

    if create:
        return auto.create_or_select_stack(stack_name=stack_name, work_dir=str(work_dir))
    try:
        return auto.select_stack(stack_name=stack_name, work_dir=str(work_dir))
    except auto.StackNotFoundError:
        return None


# -- which stacks, in which order ---------------------------------------------------------------------
def buildable_components() -> tuple[str, ...]:
    """Components in contract order that the program can build (a component without a builder has no stack)."""
    from infra.program import BUILDERS

    return tuple(c for c in naming.COMPONENTS if c in BUILDERS)


def check_env(env: str) -> str:
    """An env name usable in stack, bucket and Glue names: lower-case letters, digits and '-'."""
    if not env or not all(ch.islower() or ch.isdigit() or ch == "-" for ch in env) or env[0] == "-":
        raise DeployError(f"env {env!r} must be lower-case letters, digits and '-' (e.g. dev, staging, prod)")
    if env == LOCAL_ENV:
        raise DeployError("env 'local' is the embedded platform on this machine: start it with `etl local up`")
    return env


def select(only: Iterable[str] | None, buildable: Sequence[str]) -> list[str]:
    """The selected components in deployment order; `only` names components (core or services)."""
    wanted = list(dict.fromkeys(only or ()))
    for name in wanted:
        if name not in naming.COMPONENTS:
            raise DeployError(f"--only {name!r}: not a component; one of {', '.join(naming.COMPONENTS)}")
        if name not in buildable:
            raise DeployError(f"--only {name!r}: the program has no {name} stack yet; "
                              f"buildable: {', '.join(buildable)}")
    return [c for c in buildable if not wanted or c in wanted]


def plan(action: Action, env: str, only: Iterable[str] | None = None,
         buildable: Sequence[str] | None = None) -> list[str]:
    """Stack names to act on, in order: core first (services read its outputs), reversed on destroy."""
    check_env(env)
    buildable = tuple(buildable if buildable is not None else buildable_components())
    components = select(only, buildable)
    if action == "destroy":
        if "core" in components and components != list(buildable):
            raise DeployError(
                "core is shared by every service: destroying it alone breaks their stack references; "
                f"destroy the services first, or the whole env with `etl destroy {env}`"
            )
        components.reverse()
    return [naming.stack_name(c, env) for c in components]


# -- running -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackOutcome:
    stack: str
    status: str  # succeeded | absent (destroy of a stack that does not exist)
    changes: dict[str, int] = field(default_factory=dict)


def require_cli(which: Callable[[str], str | None] | None = None) -> str:
    """Path of the pulumi CLI, or PulumiMissing with install instructions."""
    path = (which or shutil.which)("pulumi")
    if path is None:
        raise PulumiMissing(f"the pulumi CLI is not installed (etl drives it through the Automation API): "
                            f"{INSTALL_HINT}")
    return path


def run(
    action: Action,
    env: str,
    only: Iterable[str] | None = None,
    *,
    on_output: Callable[[str], Any] = print,
    factory: StackFactory | None = None,
    which: Callable[[str], str | None] | None = None,
    work_dir: Path | None = None,
    buildable: Sequence[str] | None = None,
) -> list[StackOutcome]:
    """Run the action on each stack of the env in order; the first failing stack stops the run."""
    require_cli(which)
    work_dir = work_dir or ROOT
    stacks = plan(action, env, only, buildable)
    outcomes: list[StackOutcome] = []
    for name in stacks:
        if action != "destroy" and not (work_dir / f"Pulumi.{name}.yaml").exists():
            on_output(f"note: no Pulumi.{name}.yaml, using the documented defaults (write it with `etl init {env}`)")
        on_output(f"── {action} {name} ──")
        try:
            stack = (factory or pulumi_stack)(name, work_dir, action != "destroy")
            if stack is None:
                on_output(f"stack {name} does not exist: nothing to destroy")
                outcomes.append(StackOutcome(name, "absent"))
                continue
            result = getattr(stack, _METHODS[action])(on_output=on_output)
        except DeployError:
            raise
        except Exception as exc:
            done = ", ".join(o.stack for o in outcomes) or "none"
            raise DeployError(f"{action} of stack {name} failed ({type(exc).__name__}: {exc}); "
                              f"stacks already done: {done}") from exc
        outcomes.append(StackOutcome(name, "succeeded", _changes(result)))
    return outcomes


def _changes(result: Any) -> dict[str, int]:
    """Resource change counts from an Up/Destroy result (summary) or a Preview result (change_summary)."""
    counts = getattr(result, "change_summary", None)
    if counts is None:
        counts = getattr(getattr(result, "summary", None), "resource_changes", None)
    return {str(getattr(k, "value", k)): int(v) for k, v in (counts or {}).items()}


# -- stack config files -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigKey:
    """One `etl:` key a stack reads; tests check it against what infra/ actually reads and defaults to."""

    key: str  # without the `etl:` namespace
    default: str | None  # None: unset by default, written commented out with `example`
    doc: str
    core: bool  # core reads it; services read the others
    only: str | tuple[str, ...] | None = None  # the service(s) that read it (None: every service); not for core
    example: str = ""  # value shown in the commented-out line when `default` is None; `{env}` is the env

    def read_by(self, component: str) -> bool:
        """Whether the stack of `component` reads this key (so `etl init` writes it into that file)."""
        if self.core:
            return component == "core"
        readers = (self.only,) if isinstance(self.only, str) else self.only
        return component != "core" and (readers is None or component in readers)


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("rawTtlDays", "30", "days a raw copy of a landed file is kept before its lifecycle rule expires", True),
    ConfigKey("landingTtlDays", "7", "days a landed file stays in the landing bucket (ingest copies it to raw)", True),
    ConfigKey("noncurrentVersionDays", "3",
              "grace period (days) before replaced or erased object versions are purged; bounds erasure", True),
    ConfigKey("archiveRetentionDays", "30", "days the platform bus archive keeps events for replay", True),
    ConfigKey("alertEmail", None,
              "e-mail subscribed to the alerts topic (confirm the subscription mail); unset: no subscription", True,
              example="ops@example.com"),
    ConfigKey("queryResultsDays", "7", "days Athena query results are kept in the results bucket", True),
    ConfigKey("athenaBytesScannedCutoff", str(10 * 1024**3),
              "bytes one Athena query of the workgroup may scan before it is cancelled (default 10 GiB)", True),
    ConfigKey("dashboard", "true", "the env's CloudWatch dashboard ($3/month beyond an account's first 3); "
              "false: none, and the env idles at $0", True),
    ConfigKey("logRetentionDays", "30", "days function logs are kept in CloudWatch Logs", False),
    ConfigKey("lambdaArchitecture", "arm64", "arm64 (cheaper per GB-second) or x86_64; layers must match", False),
    ConfigKey("lambdaLayers", None, "layer ARNs added to the functions (docs/deploy.md § 8); unset: none", False,
              example='["arn:aws:lambda:eu-west-1:123456789012:layer:etl-deps:1"]'),
    ConfigKey("maxConcurrency", "10", "cap on concurrent invocations per queue mapping (minimum 2)", False),
    ConfigKey("maxReceiveCount", "3", "deliveries of a message before it is dead-lettered", False),
    ConfigKey("coreStack", None,
              "StackReference name of core; unset: <org>/<project>/core-<env> (set it if yours differ)", False,
              example="acme/etl/core-{env}"),
    ConfigKey("commitBusyWaitSeconds", "20", "seconds a lake writer (transform, compact, erasure) waits at a "
              "partition another commit holds before its message is retried (0 < s <= 300)", False,
              only=("transform", "compact", "erasure")),
    ConfigKey("chunkMb", "128", "size (MiB) of the chunks a large raw object is split into for transform", False,
              only="transform"),
    ConfigKey("chunkBytes", None, "exact chunk size in bytes; overrides chunkMb (small values exercise chunking)",
              False, only="transform", example="65536"),
    ConfigKey("compactTimeoutSeconds", "900", "compact function timeout, also the commits' max operation time "
              "(1..900)", False, only="compact"),
    ConfigKey("compactGraceSeconds", "14400", "seconds replaced files live before cleanup deletes them; must exceed "
              "the timeout plus the clock margin", False, only="compact"),
    ConfigKey("compactClockMarginSeconds", "30", "clock skew / request-landing margin of partition commits", False,
              only="compact"),
    ConfigKey("compactQuietSeconds", "900", "a partition idle this long is swept if it has more than one small file",
              False, only="compact"),
    ConfigKey("compactSweepRate", "rate(15 minutes)", "schedule of the sweep and cleanup, `rate(...)`", False,
              only="compact"),
    ConfigKey("compactMinFiles", None, "overrides every contract's compaction_min_files; unset: each contract's",
              False, only="compact", example="4"),
    ConfigKey("compactMemoryMb", "1769", "compact function memory; rewrite threads = its whole vCPUs (1769 MB each)",
              False, only="compact"),
    ConfigKey("compactEphemeralMb", "4096", "compact function /tmp for one bin's inputs, sorted runs and outputs",
              False, only="compact"),
    ConfigKey("compactBatchWindowSeconds", "10", "seconds (0..300) the queue gathers PartitionFilesAdded events into "
              "one invocation, which checks each partition once", False, only="compact"),
    ConfigKey("erasureDeadlineDays", "30", "days from receipt within which an erasure request must be completed",
              False, only="erasure"),
    ConfigKey("erasureRiskDays", "7", "open requests this close to their deadline raise the at-risk alarm; "
              "must be shorter than the deadline", False, only="erasure"),
    ConfigKey("erasurePurgeGraceSeconds", "1800", "seconds between rewriting the lake and purging every version of "
              "the replaced files (lets running Athena queries finish)", False, only="erasure"),
    ConfigKey("erasureBatchSize", "100", "pending requests that start a run at once", False, only="erasure"),
    ConfigKey("erasureBatchMaxWaitMinutes", "60", "a scheduled tick starts a run once the oldest pending request "
              "waited this long", False, only="erasure"),
    ConfigKey("erasureScheduleMinutes", "15", "minutes between the erasure schedule's ticks", False, only="erasure"),
    ConfigKey("erasureRawRewriteMaxMb", "1024", "raw copies larger than this (MiB, uncompressed) are deleted instead "
              "of rewritten line by line", False, only="erasure"),
    ConfigKey("erasureRecordRetentionDays", "730", "days a finished erasure request's record is kept in the "
              "state table (TTL)", False, only="erasure"),
    ConfigKey("erasureKmsKeyId", None, "KMS key that also encrypts subject ids at rest; unset: DynamoDB's "
              "encryption only", False, only="erasure", example="arn:aws:kms:eu-west-1:123456789012:key/<id>"),
    ConfigKey("erasureApproval", "false", "four-eyes: a new erasure request waits until someone other than its "
              "filer approves it (console group erasure-approvers, or the API's approve route)", False,
              only="erasure"),
    ConfigKey("console", "true", "the compliance console (Cognito users, S3 + CloudFront, a JWT-authorised API; "
              "all pay-per-use); false: none", False, only="erasure"),
)
DEFAULT_REGION = "eu-west-1"


@dataclass(frozen=True)
class InitOutcome:
    path: Path
    written: bool  # False: the file existed and --force was not given


def config_text(component: str, env: str, region: str = DEFAULT_REGION, overrides: dict[str, str] | None = None) -> str:
    """Pulumi.<component>-<env>.yaml with every key this component reads, commented, set to its default."""
    overrides = overrides or {}
    unknown = set(overrides) - {k.key for k in CONFIG_KEYS}
    if unknown:
        raise DeployError(f"unknown config keys {sorted(unknown)}; known: {', '.join(k.key for k in CONFIG_KEYS)}")
    stack = naming.stack_name(component, env)
    lines = [
        f"# Stack config of {stack}, written by `etl init {env}`;",
        f"# read by `pulumi up -s {stack}` and `etl deploy {env}`.",
        "# Every etl: key is optional: the values below are the defaults documented in docs/deploy.md.",
        "config:",
        "  # AWS region of every resource of the stack (all stacks of an env must share it).",
        f"  aws:region: {region}",
    ]
    for k in CONFIG_KEYS:
        if not k.read_by(component):
            continue
        value = overrides.get(k.key, k.default)
        lines.append(f"  # {k.doc}")
        if value is None:
            lines.append(f"  # etl:{k.key}: {k.example.replace('{env}', env)}")
        else:
            lines.append(f'  etl:{k.key}: "{value}"')
    return "\n".join(lines) + "\n"


def init(
    env: str,
    only: Iterable[str] | None = None,
    *,
    work_dir: Path | None = None,
    force: bool = False,
    region: str = DEFAULT_REGION,
    overrides: dict[str, str] | None = None,
    buildable: Sequence[str] | None = None,
) -> list[InitOutcome]:
    """Write one stack config file per component of the env; an existing file is kept unless `force`."""
    check_env(env)
    work_dir = work_dir or ROOT
    if overrides and overrides.get("lambdaArchitecture") not in (None, "arm64", "x86_64"):
        raise DeployError(f"lambdaArchitecture must be arm64 or x86_64, not {overrides['lambdaArchitecture']!r}")
    buildable = tuple(buildable if buildable is not None else buildable_components())
    outcomes = []
    for component in select(only, buildable):
        path = work_dir / f"Pulumi.{naming.stack_name(component, env)}.yaml"
        if path.exists() and not force:
            outcomes.append(InitOutcome(path, False))
            continue
        path.write_text(config_text(component, env, region, overrides))
        outcomes.append(InitOutcome(path, True))
    return outcomes
