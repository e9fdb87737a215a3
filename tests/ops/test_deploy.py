"""`etl deploy|preview|destroy|init`: ordering, --only, config files, missing CLI — with a fake stack factory."""

from __future__ import annotations

import ast
import contextvars
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.automation import OpType
from typer.testing import CliRunner

from contracts import naming
from contracts.settings import ErasureTunables
from etl import deploy, deploy_cli
from infra import settings as infra_settings
from infra.compact import CompactConfig
from infra.erasure import ErasureStackConfig
from infra.settings import Settings
from tests.infra.harness import build as build_stack

ALL = ("core", "ingest", "transform", "compact", "erasure")


class FakeStack:
    def __init__(self, name: str, log: list[tuple[str, str]], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def _op(self, op: str, on_output: Any) -> Any:
        self.log.append((op, self.name))
        on_output(f"{op} {self.name}: 3 resources\n")
        if self.fail:
            raise RuntimeError("provider said no")
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={"create": 3, "same": 1}))

    def up(self, on_output: Any) -> Any:
        return self._op("up", on_output)

    def preview(self, on_output: Any) -> Any:
        self.log.append(("preview", self.name))
        on_output(f"preview {self.name}\n")
        return SimpleNamespace(change_summary={OpType.CREATE: 2})

    def destroy(self, on_output: Any) -> Any:
        return self._op("destroy", on_output)


class FakeFactory:
    """Records (stack, work_dir, create) and hands out fake stacks; some stacks may be absent or fail."""

    def __init__(self, absent: set[str] = frozenset(), failing: set[str] = frozenset()) -> None:
        self.absent, self.failing = absent, failing
        self.calls: list[tuple[str, Path, bool]] = []
        self.ops: list[tuple[str, str]] = []

    def __call__(self, name: str, work_dir: Path, create: bool) -> FakeStack | None:
        self.calls.append((name, work_dir, create))
        if name in self.absent and not create:
            return None
        return FakeStack(name, self.ops, fail=name in self.failing)


def have_cli(_: str) -> str:
    return "/usr/local/bin/pulumi"


def run(action: deploy.Action, only: list[str] | None = None, factory: FakeFactory | None = None,
        buildable: tuple[str, ...] = ALL, tmp: Path | None = None) -> tuple[list[deploy.StackOutcome], list[str]]:
    out: list[str] = []
    outcomes = deploy.run(action, "dev", only, on_output=out.append, factory=factory or FakeFactory(),
                          which=have_cli, work_dir=tmp or Path("/nonexistent"), buildable=buildable)
    return outcomes, out


# -- ordering ----------------------------------------------------------------------------------------------
def test_core_first_then_services_in_contract_order() -> None:
    assert deploy.plan("deploy", "dev", buildable=ALL) == [f"{c}-dev" for c in ALL]
    assert deploy.plan("preview", "dev", buildable=("core", "ingest")) == ["core-dev", "ingest-dev"]


def test_destroy_reverses_the_order() -> None:
    assert deploy.plan("destroy", "prod", buildable=ALL) == [f"{c}-prod" for c in reversed(ALL)]


def test_only_components_the_program_can_build_have_stacks() -> None:
    buildable = deploy.buildable_components()
    assert buildable[0] == "core" and "ingest" in buildable
    assert list(buildable) == [c for c in ALL if c in buildable]
    assert deploy.plan("deploy", "dev") == [f"{c}-dev" for c in buildable]


# -- --only --------------------------------------------------------------------------------------------------
def test_only_selects_components_and_keeps_the_order() -> None:
    assert deploy.plan("deploy", "dev", ["ingest"], ALL) == ["ingest-dev"]
    assert deploy.plan("deploy", "dev", ["compact", "core", "compact"], ALL) == ["core-dev", "compact-dev"]
    assert deploy.plan("destroy", "dev", ["ingest", "erasure"], ALL) == ["erasure-dev", "ingest-dev"]


def test_only_rejects_unknown_and_unbuildable_components() -> None:
    with pytest.raises(deploy.DeployError, match="'billing': not a component"):
        deploy.plan("deploy", "dev", ["billing"], ALL)
    with pytest.raises(deploy.DeployError, match="no erasure stack yet; buildable: core, ingest"):
        deploy.plan("deploy", "dev", ["erasure"], ("core", "ingest"))


def test_destroying_core_alone_is_refused() -> None:
    with pytest.raises(deploy.DeployError, match="core is shared by every service"):
        deploy.plan("destroy", "dev", ["core"], ALL)
    assert deploy.plan("destroy", "dev", list(ALL), ALL)[-1] == "core-dev"


@pytest.mark.parametrize("env", ["", "Dev", "dev_1", "-x", "a b", "local"])
def test_env_names_are_checked(env: str) -> None:
    with pytest.raises(deploy.DeployError):
        deploy.plan("deploy", env, buildable=ALL)


# -- running through the factory ------------------------------------------------------------------------------
def test_deploy_runs_up_on_each_stack_in_order_and_streams_output(tmp_path: Path) -> None:
    factory = FakeFactory()
    outcomes, out = run("deploy", factory=factory, buildable=("core", "ingest"), tmp=tmp_path)
    assert factory.ops == [("up", "core-dev"), ("up", "ingest-dev")]
    assert [(n, w, c) for n, w, c in factory.calls] == [("core-dev", tmp_path, True), ("ingest-dev", tmp_path, True)]
    assert "up core-dev: 3 resources\n" in out and "up ingest-dev: 3 resources\n" in out
    assert out.index("up core-dev: 3 resources\n") < out.index("up ingest-dev: 3 resources\n")
    assert [o.changes for o in outcomes] == [{"create": 3, "same": 1}] * 2
    assert any("no Pulumi.core-dev.yaml" in line for line in out)


def test_preview_reports_the_change_summary() -> None:
    factory = FakeFactory()
    outcomes, _ = run("preview", factory=factory, buildable=("core",))
    assert factory.ops == [("preview", "core-dev")]
    assert outcomes == [deploy.StackOutcome("core-dev", "succeeded", {"create": 2})]


def test_destroy_selects_without_creating_and_skips_absent_stacks() -> None:
    factory = FakeFactory(absent={"transform-dev"})
    outcomes, out = run("destroy", factory=factory, buildable=("core", "ingest", "transform"))
    assert [c[2] for c in factory.calls] == [False, False, False]
    assert factory.ops == [("destroy", "ingest-dev"), ("destroy", "core-dev")]
    assert [(o.stack, o.status) for o in outcomes] == [
        ("transform-dev", "absent"), ("ingest-dev", "succeeded"), ("core-dev", "succeeded")
    ]
    assert "stack transform-dev does not exist: nothing to destroy" in out


def test_a_failing_stack_stops_the_run_and_names_what_was_done() -> None:
    factory = FakeFactory(failing={"ingest-dev"})
    with pytest.raises(deploy.DeployError, match=r"deploy of stack ingest-dev failed \(RuntimeError: provider said "
                                                 r"no\); stacks already done: core-dev"):
        run("deploy", factory=factory)
    assert factory.ops == [("up", "core-dev"), ("up", "ingest-dev")]


# -- missing CLI ------------------------------------------------------------------------------------------------
def test_missing_cli_raises_a_typed_error_with_install_instructions_before_anything_runs() -> None:
    factory = FakeFactory()
    with pytest.raises(deploy.PulumiMissing) as info:
        deploy.run("deploy", "dev", factory=factory, which=lambda _: None, buildable=ALL)
    assert "pulumi CLI is not installed" in str(info.value) and "get.pulumi.com" in str(info.value)
    assert "pulumi login" in str(info.value)
    assert factory.calls == []
    assert info.value.exit_code == 127


def test_cli_turns_the_missing_cli_into_one_line_and_an_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy.shutil, "which", lambda _: None)
    result = CliRunner().invoke(deploy_cli.app, ["deploy", "dev"], env={"COLUMNS": "2000"})
    assert result.exit_code == 127
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the pulumi CLI is not installed")
    assert "Traceback" not in result.output


def test_cli_destroy_without_yes_asks_and_aborts_on_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy.shutil, "which", have_cli)
    called: list[str] = []
    monkeypatch.setattr(deploy, "pulumi_stack", lambda *a: called.append(a[0]))
    result = CliRunner().invoke(deploy_cli.app, ["destroy", "dev"], input="n\n")
    assert result.exit_code == 1 and "destroy " in result.output and "core-dev?" in result.output
    assert called == []


@pytest.mark.parametrize("command", ["deploy", "preview", "destroy", "init"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(deploy_cli.app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--only" in result.output and "ENV" in result.output


# -- stack config files ----------------------------------------------------------------------------------------------
#: keys infra reads that are not stack settings: they override what the stack name says
STACK_IDENTITY_KEYS = {"component", "env"}
_CONFIG_METHOD = re.compile(r"^(get|require)(_\w+)?$")


def _is_etl_config(node: ast.expr) -> bool:
    """`pulumi.Config("etl")` / `Config("etl")` (or no name: the project's, which is etl)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name != "Config":
        return False
    args = [a.value for a in node.args if isinstance(a, ast.Constant)] or ["etl"]
    return args[0] == "etl"


def keys_read_by_infra() -> dict[str, set[str]]:
    """Every `etl:` key infra/ reads with a literal name, per file: `cfg.get_int("x")` where cfg = Config("etl")."""
    found: dict[str, set[str]] = {}
    for path in sorted((deploy.ROOT / "infra").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        configs = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and _is_etl_config(n.value)
                   for t in n.targets if isinstance(t, ast.Name)}
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and _CONFIG_METHOD.match(n.func.attr)):
                continue
            receiver = n.func.value
            if not ((isinstance(receiver, ast.Name) and receiver.id in configs) or _is_etl_config(receiver)):
                continue
            assert n.args and isinstance(n.args[0], ast.Constant), f"{path}:{n.lineno}: config key is not a literal"
            found.setdefault(n.args[0].value, set()).add(path.name)
    return found


def test_the_scan_finds_config_reads() -> None:
    """The scan itself works: it sees keys of the three readers (settings, compact, erasure)."""
    read = keys_read_by_infra()
    assert {"rawTtlDays", "compactSweepRate", "erasureKmsKeyId"} <= set(read)
    assert read["erasureDeadlineDays"] == {"erasure.py"}


def test_every_key_infra_reads_is_written_by_init_and_vice_versa() -> None:
    """Drift guard: a key added to infra/ without a CONFIG_KEYS entry (default + doc) fails here."""
    read = set(keys_read_by_infra()) - STACK_IDENTITY_KEYS
    known = {k.key for k in deploy.CONFIG_KEYS}
    assert not read - known, f"read by infra/ but missing from etl/deploy.py CONFIG_KEYS: {sorted(read - known)}"
    assert not known - read, f"in CONFIG_KEYS but read nowhere in infra/: {sorted(known - read)}"
    assert len(known) == len(deploy.CONFIG_KEYS), "a key is listed twice"


def test_service_only_keys_go_to_the_stack_that_reads_them() -> None:
    """A key read in infra/<service>.py only belongs to that service's file, not every service's.

    Keys of the shared Settings (settings.py) may still name the one service that uses them (chunkMb).
    """
    read = keys_read_by_infra()
    services = {f"{c}.py": c for c in naming.COMPONENTS if c != "core"}
    for k in deploy.CONFIG_KEYS:
        files = read[k.key]
        owner = services.get(next(iter(files))) if len(files) == 1 else None
        if owner is not None or files != {"settings.py"}:
            assert k.only == owner, f"{k.key} is read in {sorted(files)}: only={owner!r}, not {k.only!r}"


def _loaded(config: dict[str, Any], load: Any) -> Any:
    """What one of infra's config readers returns for `config` (set in a copy of Pulumi's config context)."""

    def run() -> Any:
        pulumi.runtime.set_all_config({f"etl:{key}": str(value) for key, value in config.items()})
        return load()

    return contextvars.copy_context().run(run)


@pytest.mark.parametrize("component", ALL)
def test_written_defaults_are_the_programs_defaults(tmp_path: Path, component: str) -> None:
    """Each file `etl init` writes, read by infra's own loaders, gives what they give with no config at all."""
    deploy.init("dev", [component], work_dir=tmp_path, buildable=ALL)
    written = yaml.safe_load((tmp_path / f"Pulumi.{component}-dev.yaml").read_text())["config"]
    config = {k.removeprefix("etl:"): v for k, v in written.items() if k.startswith("etl:")}
    identity = {"component": component, "env": "dev"}
    loaders = [lambda: infra_settings.load()]
    if component == "compact":
        loaders.append(CompactConfig.load)
    if component == "erasure":
        loaders.append(lambda: ErasureStackConfig.load("dev"))
    for load in loaders:
        assert _loaded({**identity, **config}, load) == _loaded(identity, load)


def test_documented_defaults_match_the_program_dataclasses() -> None:
    """Unset-by-default keys are unset in the program too (None, empty), never a hidden value."""
    defaults = {**{f.name: f.default for f in dataclasses.fields(Settings)},
                **{f.name: f.default for f in dataclasses.fields(CompactConfig)},
                **{name: f.default for name, f in ErasureTunables.model_fields.items()}}
    unset = {"alertEmail": "alert_email", "coreStack": "core_stack", "lambdaLayers": "lambda_layers",
             "chunkBytes": None, "compactMinFiles": "min_files", "erasureKmsKeyId": "kms_key_id"}
    assert {k.key for k in deploy.CONFIG_KEYS if k.default is None} == set(unset)
    for key, field in unset.items():
        assert field is None or not defaults[field], key
        assert next(k for k in deploy.CONFIG_KEYS if k.key == key).example, key


def test_docs_config_table_lists_every_key_with_its_default() -> None:
    """docs/deploy.md's config reference is the same list as CONFIG_KEYS, with the same defaults."""
    text = (deploy.ROOT / "docs" / "deploy.md").read_text()
    rows = dict(re.findall(r"^\| `etl:(\w+)` \| [^|]+ \| ([^|]+) \|", text, re.MULTILINE))
    known = {k.key for k in deploy.CONFIG_KEYS}
    assert not known - set(rows), f"CONFIG_KEYS without a row in docs/deploy.md: {sorted(known - set(rows))}"
    assert not set(rows) - known, f"docs/deploy.md documents keys not in CONFIG_KEYS: {sorted(set(rows) - known)}"
    for k in deploy.CONFIG_KEYS:
        if k.default is not None:
            assert rows[k.key].strip().strip("`") == k.default, k.key


def test_init_writes_one_file_per_stack_with_the_keys_its_component_reads(tmp_path: Path) -> None:
    outcomes = deploy.init("dev", work_dir=tmp_path, region="eu-central-1", buildable=("core", "ingest"))
    assert [(o.path.name, o.written) for o in outcomes] == [("Pulumi.core-dev.yaml", True),
                                                           ("Pulumi.ingest-dev.yaml", True)]
    core = yaml.safe_load((tmp_path / "Pulumi.core-dev.yaml").read_text())["config"]
    ingest = yaml.safe_load((tmp_path / "Pulumi.ingest-dev.yaml").read_text())["config"]
    assert core == {"aws:region": "eu-central-1", "etl:rawTtlDays": "30", "etl:landingTtlDays": "7",
                    "etl:noncurrentVersionDays": "3", "etl:archiveRetentionDays": "30", "etl:queryResultsDays": "7",
                    "etl:athenaBytesScannedCutoff": str(10 * 1024**3), "etl:dashboard": "true"}
    assert ingest == {"aws:region": "eu-central-1", "etl:logRetentionDays": "30", "etl:lambdaArchitecture": "arm64",
                      "etl:maxConcurrency": "10", "etl:maxReceiveCount": "3"}
    text = (tmp_path / "Pulumi.core-dev.yaml").read_text()
    assert "# etl:alertEmail: ops@example.com" in text  # documented, left unset


def test_init_never_overwrites_unless_forced(tmp_path: Path) -> None:
    mine = tmp_path / "Pulumi.core-dev.yaml"
    mine.write_text("config:\n  etl:rawTtlDays: '90'\n")
    outcomes = deploy.init("dev", work_dir=tmp_path, buildable=("core", "ingest"))
    assert [o.written for o in outcomes] == [False, True]
    assert mine.read_text() == "config:\n  etl:rawTtlDays: '90'\n"
    deploy.init("dev", ["core"], work_dir=tmp_path, force=True, buildable=("core", "ingest"))
    assert yaml.safe_load(mine.read_text())["config"]["etl:rawTtlDays"] == "30"


def test_init_rejects_a_bad_architecture(tmp_path: Path) -> None:
    with pytest.raises(deploy.DeployError, match="arm64 or x86_64"):
        deploy.init("dev", work_dir=tmp_path, overrides={"lambdaArchitecture": "ppc"}, buildable=("core",))
    assert list(tmp_path.iterdir()) == []


def test_written_config_is_what_the_program_reads(tmp_path: Path) -> None:
    """The files go through the real program (mock runtime): the values land on the resources."""
    deploy.init("dev", work_dir=tmp_path, buildable=("core", "ingest"),
                overrides={"alertEmail": "ops@example.com", "lambdaArchitecture": "x86_64"})

    def config(stack: str) -> dict[str, Any]:
        return yaml.safe_load((tmp_path / f"Pulumi.{stack}.yaml").read_text())["config"]

    core = build_stack("core-dev", config("core-dev"))
    sub = core.one("aws:sns/topicSubscription:TopicSubscription", "alerts-email")
    assert sub.inputs["endpoint"] == "ops@example.com"
    assert core.one("aws:cloudwatch/eventArchive:EventArchive", "platform-archive").inputs["retentionDays"] == 30
    ingest = build_stack("ingest-dev", config("ingest-dev"))
    fn = ingest.one("aws:lambda/function:Function", "ingest-function")
    assert fn.inputs["architectures"] == ["x86_64"]
    mapping = ingest.one("aws:lambda/eventSourceMapping:EventSourceMapping", "ingest-mapping")
    assert mapping.inputs["scalingConfig"]["maximumConcurrency"] == 10


def test_cli_init_reports_written_and_kept_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy, "ROOT", tmp_path)
    (tmp_path / "Pulumi.core-dev.yaml").write_text("config: {}\n")
    result = CliRunner().invoke(deploy_cli.app, ["init", "dev", "--alert-email", "ops@example.com"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "kept  Pulumi.core-dev.yaml" in result.output and "wrote Pulumi.ingest-dev.yaml" in result.output
    assert (tmp_path / "Pulumi.core-dev.yaml").read_text() == "config: {}\n"
