"""Dataset contracts, lake layout and event schemas: the promises every part relies on."""

from __future__ import annotations

import json

import pytest

from contracts import events, layout, naming
from contracts.datasets import ContractError, load_datasets, parse_dataset

GOOD = """
name = "people"
subject_columns = ["person_id"]
[[columns]]
name = "person_id"
type = "int64"
nullable = false
personal = true
[[columns]]
name = "born"
type = "date"
[[partitioning]]
name = "born_year"
source = "born"
transform = "year"
"""


def test_shipped_contracts_are_valid_and_have_subjects() -> None:
    datasets = load_datasets()
    assert {"customers", "orders"} <= set(datasets)
    for ds in datasets.values():
        assert ds.subject_columns, f"{ds.name} has no subject column: erasure could not reach it"
        assert set(ds.subject_columns) <= set(ds.personal_columns)


def test_good_contract_parses_with_defaults() -> None:
    ds = parse_dataset(GOOD)
    assert ds.storage.compression == "zstd" and ds.storage.target_file_mb == 256
    assert ds.partition_names == ("born_year",) and ds.raw_retention_days == 30


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('type = "int64"', 'type = "integer"'), "type 'integer' is not one of"),
        (
            lambda t: t.replace('subject_columns = ["person_id"]', 'subject_columns = ["nobody"]'),
            "subject column 'nobody' is not a column",
        ),
        (lambda t: t.replace('source = "born"', 'source = "person_id"'), "year needs a date/timestamp source"),
        (
            lambda t: t.replace('source = "born"\ntransform = "year"', 'source = "person_id"\ntransform = "identity"'),
            "source 'person_id' is personal data",
        ),
        (lambda t: t.replace("personal = true", "personal = false"), "must also be marked personal"),
        (lambda t: t.replace('name = "people"', 'name = "People!"'), "lower snake case"),
        (lambda t: t + "\nsurprise = 1\n", "Extra inputs are not permitted"),
        (lambda t: t.replace("[[columns]]", "[[columns", 1), "not valid TOML"),
        (lambda t: t + "\n[storage]\ntarget_file_mb = 1024\n", "less than or equal to 512"),
    ],
)
def test_bad_contracts_name_the_problem(edit, message: str) -> None:
    with pytest.raises(ContractError) as exc:
        parse_dataset(edit(GOOD), "people.toml")
    assert message in str(exc.value) and "people.toml" in str(exc.value)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("customers/a b/c+d.csv", None),
        ("customers/ünï/日本.csv", None),
        ("customers/x\n.csv", "control"),
        ("customers/../x.csv", "'..'"),
        ("customers/folder/", "folder marker"),
        ("customers/e\u0301.csv", "NFC"),
    ],
)
def test_key_problems(key: str, problem: str | None) -> None:
    found = layout.key_problem(key)
    assert (found is None) if problem is None else (problem in found)


def test_object_id_is_stable_and_version_specific() -> None:
    a = layout.object_id("b", "k", "v1")
    assert a == layout.object_id("b", "k", "v1") and a != layout.object_id("b", "k", "v2") and len(a) == 20


def test_landing_key_and_raw_key() -> None:
    assert layout.LandingKey.parse("orders/2024/x.jsonl") == layout.LandingKey("orders", "2024/x.jsonl")
    assert layout.LandingKey.parse("x.jsonl").dataset is None
    assert layout.raw_key("orders", "2024-01-02", "abc", "x.jsonl") == "orders/received=2024-01-02/abc/x.jsonl"
    assert layout.raw_key(None, "2024-01-02", "abc", "x.jsonl").startswith("_rejected/")


def test_events_round_trip_and_reject_bad_details() -> None:
    detail = events.RawObjectStored(
        dataset="orders",
        object_id="abc",
        raw_bucket="r",
        raw_key="k",
        size=3,
        etag="e",
        source_bucket="l",
        source_key="orders/x",
    )
    entry = detail.entry("bus")
    envelope = {"source": entry["Source"], "detail-type": entry["DetailType"], "detail": json.loads(entry["Detail"])}
    assert events.parse_event(envelope) == detail
    with pytest.raises(ValueError, match="must come from"):
        events.parse_event({**envelope, "source": "etl.transform"})
    with pytest.raises(ValueError):
        events.parse_event({**envelope, "detail": {**envelope["detail"], "size": -1}})
    with pytest.raises(ValueError, match="unknown detail-type"):
        events.parse_event({**envelope, "detail-type": "Nope"})


def test_patterns_come_from_the_contract() -> None:
    p = events.pattern(events.RawObjectStored, events.ObjectRejected)
    assert p == {"source": ["etl.ingest"], "detail-type": ["ObjectRejected", "RawObjectStored"]}


class FakeEvents:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[dict]] = []
        self.fail = fail

    def put_events(self, Entries: list[dict]) -> dict:
        self.calls.append(Entries)
        if self.fail:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "Throttled", "ErrorMessage": "slow down"}]}
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}] * len(Entries)}


def test_publish_batches_by_ten_and_raises_on_refusal() -> None:
    detail = events.ObjectRejected(dataset=None, object_id="a", reason="r", source_bucket="b", source_key="k", size=0)
    fake = FakeEvents()
    assert events.publish(fake, "bus", [detail] * 23) == 23
    assert [len(c) for c in fake.calls] == [10, 10, 3]
    with pytest.raises(events.PublishError, match="Throttled"):
        events.publish(FakeEvents(fail=True), "bus", [detail])


def test_stack_names() -> None:
    assert naming.parse_stack_name("ingest-prod-eu") == ("ingest", "prod-eu")
    with pytest.raises(ValueError, match="<component>-<env>"):
        naming.parse_stack_name("dev")


def test_lake_schema_ends_with_the_lineage_columns_glue_declares() -> None:
    """Parquet files (contracts.arrow) and Glue tables (contracts.lineage) name and type lineage alike."""
    from contracts.arrow import lake_schema
    from contracts.lineage import LINE_COLUMN, LINEAGE_COLUMNS, OBJECT_COLUMN

    glue_of = {"string": "string", "int64": "bigint"}
    for ds in load_datasets().values():
        schema = lake_schema(ds)
        assert schema.names == [c.name for c in ds.columns] + [OBJECT_COLUMN, LINE_COLUMN]
        tail = [(f.name, glue_of[str(f.type)]) for f in list(schema)[len(ds.columns) :]]
        assert tuple(tail) == LINEAGE_COLUMNS
        assert not {n for n, _ in LINEAGE_COLUMNS} & {c.name for c in ds.columns}
