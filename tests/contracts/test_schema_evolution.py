"""Schema evolution: which contract changes are allowed, lock files, versions in file footers, the
Pulumi-side refusal and the `etl datasets` commands. Catalog updates against moto: test_schema_catalog.py."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from contracts import schema_evolution as ev
from contracts.arrow import lake_schema
from contracts.datasets import DATASETS_DIR, ContractError, load_dataset_file, load_datasets, parse_dataset

V2 = load_datasets()["usage_events"]
V1 = ev.locked_dataset(V2, 1, DATASETS_DIR)

BASE = """
name = "events"
subject_columns = ["user_id"]
[[partitioning]]
name = "tenant"
source = "tenant_id"
[[columns]]
name = "user_id"
type = "int64"
nullable = false
personal = true
[[columns]]
name = "tenant_id"
type = "string"
nullable = false
[[columns]]
name = "n"
type = "int32"
[[columns]]
name = "price"
type = "float32"
[[columns]]
name = "amount"
type = "decimal(10,2)"
"""


def shape(text: str) -> ev.Shape:
    return ev.Shape.of(parse_dataset(text))


def col(name: str, type_: str, extra: str = "") -> str:
    return f'\n[[columns]]\nname = "{name}"\ntype = "{type_}"\n{extra}\n'


def retype(name: str, new: str) -> str:
    old = {"n": "int32", "price": "float32", "amount": "decimal(10,2)", "user_id": "int64"}[name]
    return BASE.replace(f'name = "{name}"\ntype = "{old}"', f'name = "{name}"\ntype = "{new}"')


ALLOWED = {
    "add a nullable column": BASE + col("plan", "string"),
    "widen int32 to int64": retype("n", "int64"),
    "widen float32 to float64": retype("price", "float64"),
    "widen decimal precision at the same scale": retype("amount", "decimal(18,2)"),
    "make a column nullable": BASE.replace('type = "int64"\nnullable = false', 'type = "int64"\nnullable = true'),
    "reorder columns": BASE.replace('[[columns]]\nname = "n"\ntype = "int32"\n', "") + col("n", "int32"),
}
REFUSED = {
    "drop a column": ("drop", BASE.replace('[[columns]]\nname = "price"\ntype = "float32"\n', "")),
    "rename a column": ("rename", BASE.replace('name = "price"', 'name = "unit_price"')),
    "narrow int64 to int32": ("retype", retype("user_id", "int32")),
    "narrow decimal precision": ("retype", retype("amount", "decimal(8,2)")),
    "change decimal scale": ("retype", retype("amount", "decimal(12,4)")),
    "int to string": ("retype", retype("n", "string")),
    "float to int": ("retype", retype("price", "int64")),
    "add a non-nullable column": ("add-required", BASE + col("plan", "string", "nullable = false")),
    "make a column non-nullable": ("tighten", retype("n", "int32").replace(
        'name = "n"\ntype = "int32"', 'name = "n"\ntype = "int32"\nnullable = false')),
    "change partitioning": ("partitioning", BASE.replace('name = "tenant"\nsource', 'name = "org"\nsource')),
    "change subject columns": ("subjects", BASE.replace('subject_columns = ["user_id"]', "subject_columns = []")),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_allowed_changes_are_not_breaking(case: str) -> None:
    changes = ev.diff(shape(BASE), shape(ALLOWED[case]))
    assert not [c for c in changes if c.breaking], changes
    if case != "reorder columns":
        assert changes, "the change is reported (allowed)"


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_breaking_changes_are_refused_with_what_to_do(case: str) -> None:
    kind, text = REFUSED[case]
    changes = ev.diff(shape(BASE), shape(text))
    broken = [c for c in changes if c.breaking]
    assert [c.kind for c in broken] == [kind], changes
    assert any(w in broken[0].effect for w in ("new dataset", "nullable", "keep")), broken[0].effect


def test_partitioning_and_subjects_may_change_while_a_dataset_holds_no_data() -> None:
    for case in ("change partitioning", "change subject columns"):
        changes = ev.diff(shape(BASE), shape(REFUSED[case][1]), holds_data=False)
        assert changes and not [c for c in changes if c.breaking]


def test_shipped_contracts_are_locked_and_usage_events_records_its_history() -> None:
    for ds in load_datasets().values():
        report = ev.against_lock(ds, DATASETS_DIR)
        assert report.locked and ds.version == report.version, f"{ds.name}: run `etl datasets lock {ds.name}`"
    lock = ev.read_lock("usage_events", DATASETS_DIR)
    assert [v for v, _ in lock.versions] == [1, 2]
    kinds = sorted((c.kind, c.subject) for c in ev.diff(lock.shape(1), lock.shape(2)))
    assert kinds == [("add", "plan"), ("widen", "amount"), ("widen", "quantity"), ("widen", "unit_price")]
    assert V1.version == 1 and V1.column("quantity").type == "int32" and "plan" not in [c.name for c in V1.columns]


def contract_dir(tmp_path: Path, text: str, name: str = "events") -> Path:
    (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path


def test_lock_records_allowed_versions_and_refuses_breaking_ones(tmp_path: Path) -> None:
    d = contract_dir(tmp_path, BASE)
    ds = load_dataset_file(d / "events.toml")
    assert ds.version is None and ev.against_lock(ds, d).version == 1
    lock, _ = ev.next_lock(ds, d)
    ev.write_lock(lock, d)
    assert load_dataset_file(d / "events.toml").version == 1
    contract_dir(tmp_path, ALLOWED["add a nullable column"])
    ds2 = load_dataset_file(d / "events.toml")
    report = ev.against_lock(ds2, d)
    assert (report.locked, report.version, [c.kind for c in report.changes]) == (False, 2, ["add"])
    ev.write_lock(ev.next_lock(ds2, d)[0], d)
    assert load_dataset_file(d / "events.toml").version == 2
    assert [v for v, _ in ev.read_lock("events", d).versions] == [1, 2]
    contract_dir(tmp_path, ALLOWED["add a nullable column"].replace('name = "price"', 'name = "cost"'))
    with pytest.raises(ev.EvolutionError, match="rename price"):
        ev.next_lock(load_dataset_file(d / "events.toml"), d)
    assert [v for v, _ in ev.read_lock("events", d).versions] == [1, 2], "a refused change is not recorded"


def test_the_version_is_not_written_in_the_contract() -> None:
    with pytest.raises(ContractError, match="etl datasets lock"):
        parse_dataset("version = 3\n" + BASE)


def test_a_corrupt_lock_file_is_named(tmp_path: Path) -> None:
    d = contract_dir(tmp_path, BASE)
    (d / "events.lock.json").write_text("{not json")
    with pytest.raises(ContractError, match=r"events\.lock\.json"):
        load_dataset_file(d / "events.toml")


def test_table_shape_from_glue_without_recorded_contract_compares_columns_only() -> None:
    table = {"Name": "usage_events", "PartitionKeys": [{"Name": "tenant"}, {"Name": "event_year"}],
             "StorageDescriptor": {"Columns": [{"Name": n, "Type": t} for n, t in ev.glue_columns(V1)]}}
    report = ev.against_table(V2, table, holds_data=True, lineage=["_source_object_id", "_source_line"])
    assert not report.breaking and sorted(c.kind for c in report.changes) == ["add", "widen", "widen", "widen"]
    back = ev.against_table(V1, {**table, "StorageDescriptor": {"Columns": [
        {"Name": n, "Type": t} for n, t in ev.glue_columns(V2)]}}, holds_data=True,
        lineage=["_source_object_id", "_source_line"])
    assert sorted(c.kind for c in back.breaking) == ["drop", "retype", "retype", "retype"]


# -- the Pulumi-side check -------------------------------------------------------------------------------------
def test_the_program_refuses_a_breaking_contract_before_any_resource(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import catalog

    d = contract_dir(tmp_path, BASE)
    ev.write_lock(ev.next_lock(load_dataset_file(d / "events.toml"), d)[0], d)
    monkeypatch.setattr(catalog, "DATASETS_DIR", d)
    narrowed = parse_dataset(retype("user_id", "int32"))
    with pytest.raises(ev.EvolutionError, match=r"retype user_id: int64 -> int32.*new dataset"):
        catalog.dataset_table(narrowed, "db", "bucket", None)  # type: ignore[arg-type]
    catalog.check_contract(parse_dataset(ALLOWED["add a nullable column"]))  # allowed: only a warning


def test_glue_tables_record_their_contract() -> None:
    from infra.catalog import table_parameters

    params = table_parameters(V2)
    assert params[ev.TABLE_VERSION] == "2" and params[ev.TABLE_FINGERPRINT] == ev.fingerprint(V2)
    assert ev.Shape.from_json(json.loads(params[ev.TABLE_SHAPE])) == ev.Shape.of(V2)


# -- versions in the files ------------------------------------------------------------------------------------
def rows(ds_version: int) -> pa.Table:
    ds = V1 if ds_version == 1 else V2
    data = {"event_id": [1, 2], "tenant_id": ["acme", "acme"], "user_id": [7, 8], "event_date": [None, None],
            "quantity": [1, 2], "unit_price": [0.5, None], "amount": [Decimal("1.00"), Decimal("2.00")],
            "_source_object_id": ["o", "o"], "_source_line": [1, 2]}
    if ds_version == 2:
        data["plan"] = ["pro", None]
    return pa.table(data, schema=lake_schema(ds))


def test_transform_files_record_the_contract_version() -> None:
    from services.transform.parquet import parquet_bytes

    for version, ds in ((1, V1), (2, V2)):
        meta = pq.read_metadata(pa.BufferReader(parquet_bytes(rows(version), ds))).metadata
        found = ev.file_contract(meta)
        assert (found.dataset, found.version, found.fingerprint) == ("usage_events", version, ev.fingerprint(ds))
    unlocked = parse_dataset(BASE)
    assert ev.footer_metadata(unlocked)[ev.FOOTER_VERSION] == ev.UNLOCKED
    assert ev.file_contract(None) == ev.FileContract(None, None, None)


def test_compaction_of_both_versions_writes_the_new_schema_and_version(tmp_path: Path) -> None:
    from services.compact.rewrite import compact_files
    from services.compact.runs import InputFile
    from services.transform.parquet import parquet_bytes

    inputs = []
    for version, ds in ((1, V1), (2, V2)):
        path = tmp_path / f"v{version}.parquet"
        path.write_bytes(parquet_bytes(rows(version), ds))
        inputs.append(InputFile(path, 2))
    out = tmp_path / "out"
    out.mkdir()
    result = compact_files(inputs, V2, out)
    (written,) = result.outputs
    assert ev.file_contract(pq.read_metadata(written.path).metadata).version == 2
    table = pq.read_table(written.path)
    assert table.schema.field("quantity").type == pa.int64()
    assert table.schema.field("amount").type == pa.decimal128(14, 2)
    assert table.schema.field("unit_price").type == pa.float64()
    assert sorted(zip(table["event_id"].to_pylist(), table["plan"].to_pylist(), strict=True),
                  key=str) == sorted([(1, None), (2, None), (1, "pro"), (2, None)], key=str)


# -- the CLI ---------------------------------------------------------------------------------------------------
class Run:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, " ".join(output.split())  # rich wraps long lines


def cli(*args: str) -> Run:
    from etl.cli import app

    result = CliRunner().invoke(app, list(args))
    return Run(result.exit_code, result.output)


def test_validate_reports_breaking_changes_and_exits_non_zero(tmp_path: Path) -> None:
    d = contract_dir(tmp_path, BASE)
    ev.write_lock(ev.next_lock(load_dataset_file(d / "events.toml"), d)[0], d)
    ok = cli("datasets", "validate", str(d / "events.toml"))
    assert ok.exit_code == 0 and "events v1" in ok.output
    contract_dir(tmp_path, ALLOWED["widen int32 to int64"])
    noted = cli("datasets", "validate", str(d / "events.toml"))
    assert noted.exit_code == 0 and "etl datasets lock events" in noted.output
    assert cli("datasets", "validate", "--locked", str(d / "events.toml")).exit_code == 1
    contract_dir(tmp_path, REFUSED["drop a column"][1])
    refused = cli("datasets", "validate", str(d / "events.toml"))
    assert refused.exit_code == 1
    assert "drop price" in refused.output and "new dataset" in refused.output


def test_shipped_contracts_validate_and_diff_clean() -> None:
    assert cli("datasets", "validate", "--locked").exit_code == 0
    shown = cli("datasets", "diff")
    assert shown.exit_code == 0 and "usage_events: no change of shape against lock v2" in shown.output
    listed = cli("datasets", "list")
    assert listed.exit_code == 0 and "v2" in listed.output


def test_diff_and_lock_of_a_changed_shipped_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import etl.cli as cli_mod
    from contracts import datasets as datasets_mod

    d = tmp_path / "datasets"
    shutil.copytree(DATASETS_DIR, d)
    text = (d / "orders.toml").read_text() + '\n[[columns]]\nname = "coupon"\ntype = "string"\n'
    (d / "orders.toml").write_text(text)
    monkeypatch.setattr(cli_mod, "DATASETS_DIR", d)
    monkeypatch.setattr(cli_mod, "load_datasets", lambda: datasets_mod.load_datasets.__wrapped__(d))
    monkeypatch.setattr(cli_mod.load_datasets, "cache_clear", lambda: None, raising=False)
    shown = cli("datasets", "diff", "orders")
    assert shown.exit_code == 0 and "coupon" in shown.output and "allowed" in shown.output
    locked = cli("datasets", "lock", "orders")
    assert locked.exit_code == 0 and "orders v2" in locked.output
    assert [v for v, _ in ev.read_lock("orders", d).versions] == [1, 2]
    (d / "orders.toml").write_text(text.replace('name = "status"', 'name = "state"'))
    refused = cli("datasets", "lock", "orders")
    assert refused.exit_code == 1 and "rename status" in refused.output


def test_storage_and_compaction_settings_change_freely_without_a_new_version(tmp_path: Path) -> None:
    d = contract_dir(tmp_path, BASE)
    ev.write_lock(ev.next_lock(load_dataset_file(d / "events.toml"), d)[0], d)
    contract_dir(tmp_path, BASE + '\n[storage]\ntarget_file_mb = 512\ncompaction_min_files = 4\n'
                                  'small_file_ratio = 0.5\ncompression = "snappy"\n')
    changed = load_dataset_file(d / "events.toml")
    assert changed.storage.target_file_mb == 512 and changed.version == 1
    assert ev.against_lock(changed, d).locked and ev.against_lock(changed, d).changes == []


# -- the program under Pulumi's mock runtime ----------------------------------------------------------------
def test_the_core_stack_records_each_contract_in_its_table() -> None:
    from tests.infra.harness import build

    table = build("core-dev").one("aws:glue/catalogTable:CatalogTable", "table-usage_events")
    params = table.inputs["parameters"]
    assert params[ev.TABLE_VERSION] == "2" and params[ev.TABLE_FINGERPRINT] == ev.fingerprint(V2)
    assert [(c["name"], c["type"]) for c in table.inputs["storageDescriptor"]["columns"]] == ev.glue_columns(V2)


def test_the_core_stack_registers_nothing_when_a_contract_would_break(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.local.program import run_stack
    from etl.local.recording import RecordingBackend
    from infra import core

    narrowed = V1.model_copy(update={"version": None})  # v2 deployed and locked; the contract goes back to v1
    monkeypatch.setattr(core, "load_datasets", lambda: {**load_datasets(), "usage_events": narrowed})
    backend = RecordingBackend()
    created: list[str] = []
    original = backend.create
    monkeypatch.setattr(backend, "create", lambda t, n, i: created.append(n) or original(t, n, i))
    with pytest.raises(Exception, match=r"(?s)usage_events: contract change against lock v2.*retype quantity"):
        run_stack("core-dev", backend, {}, {})
    assert created == [], "no resource is registered before the refusal"


def test_an_unlocked_allowed_change_still_deploys_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from etl.local.program import run_stack
    from etl.local.recording import RecordingBackend
    from infra import core

    data = V2.model_dump(exclude={"version"})
    data["columns"] = [*data["columns"], {"name": "coupon", "type": "string"}]
    added = type(V2).model_validate(data)
    monkeypatch.setattr(core, "load_datasets", lambda: {**load_datasets(), "usage_events": added})
    run = run_stack("core-dev", RecordingBackend(), {}, {})
    table = next(r for r in run.resources if r.name == "table-usage_events")
    assert table.inputs["parameters"][ev.TABLE_VERSION] == ev.UNLOCKED
    assert "coupon" in [c["name"] for c in table.inputs["storageDescriptor"]["columns"]]
    warnings = [r.getMessage() for r in caplog.records if "etl datasets lock" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("usage_events: contract changed since lock v2")
