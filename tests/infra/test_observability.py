"""Tracing on every function, its X-Ray permission, and the env's dashboard naming what the stacks deploy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import metrics, naming
from tests.infra.harness import XRAY_WRITE_ACTIONS, Stack, build

SERVICE_STACKS = [f"{c}-dev" for c in naming.SERVICES]


@pytest.fixture(scope="module")
def services() -> list[Stack]:
    return [build(stack) for stack in SERVICE_STACKS]


def dashboard_of(core: Stack) -> dict[str, Any]:
    (dash,) = core.of_type("aws:cloudwatch/dashboard:Dashboard")
    return json.loads(dash.inputs["dashboardBody"])


def metric_rows(body: dict[str, Any]) -> list[list[Any]]:
    return [row for w in body["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]]


def dimension_values(body: dict[str, Any], dimension: str) -> set[str]:
    """Values of `dimension` in plain metric rows: [namespace, metric, dim, value, ..., {options}]."""
    out = set()
    for row in metric_rows(body):
        plain = [x for x in row if not isinstance(x, dict)]
        out |= {plain[i + 1] for i in range(2, len(plain) - 1, 2) if plain[i] == dimension}
    return out


def test_every_function_traces_actively(services: list[Stack]) -> None:
    functions = [fn for s in services for fn in s.of_type("aws:lambda/function:Function")]
    assert len(functions) == sum(len(p) for p in naming.FUNCTIONS.values())
    for fn in functions:
        assert fn.inputs["tracingConfig"] == {"mode": "Active"}, fn.name


def test_every_function_role_may_write_traces_and_nothing_more_on_star(services: list[Stack]) -> None:
    for stack in services:
        policies = {p.inputs["role"]: json.loads(p.inputs["policy"])["Statement"]
                    for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")}
        for fn in stack.of_type("aws:lambda/function:Function"):
            role = fn.inputs["role"].rsplit(":", 1)[-1]
            xray = [st for st in policies[role] if st.get("Sid") == "XRayTraces"]
            assert xray == [{"Sid": "XRayTraces", "Effect": "Allow", "Action": XRAY_WRITE_ACTIONS,
                             "Resource": ["*"]}], fn.name


def test_dashboard_names_every_function_and_queue_the_service_stacks_create(core: Stack,
                                                                            services: list[Stack]) -> None:
    body = dashboard_of(core)
    functions = {fn.inputs["name"] for s in services for fn in s.of_type("aws:lambda/function:Function")}
    queues = {q.inputs["name"] for s in services for q in s.of_type("aws:sqs/queue:Queue")}
    assert functions and queues
    assert dimension_values(body, "FunctionName") == functions
    assert dimension_values(body, "QueueName") == queues
    dlq_widget = next(w for w in body["widgets"] if w["properties"].get("title") == "DLQ depth")
    dlqs = {row[3] for row in dlq_widget["properties"]["metrics"]}
    assert dlqs == {q for q in queues if q.endswith("-dlq")}
    for title in ("Invocations", "Errors", "Duration p99 (ms)", "Throttles"):
        widget = next(w for w in body["widgets"] if w["properties"].get("title") == title)
        assert {row[3] for row in widget["properties"]["metrics"]} == functions, title


def test_dashboard_reads_what_the_services_emit(core: Stack, services: list[Stack]) -> None:
    """Namespace and dataset dimension of the SEARCH expressions; the at-risk metric is the alarm's metric."""
    body = dashboard_of(core)
    namespaces = {fn.inputs["environment"]["variables"]["POWERTOOLS_METRICS_NAMESPACE"]
                  for s in services for fn in s.of_type("aws:lambda/function:Function")}
    assert namespaces == {metrics.NAMESPACE}
    searches = [row[0]["expression"] for row in metric_rows(body) if isinstance(row[0], dict)]
    for name in (metrics.ROWS_GOOD, metrics.ROWS_QUARANTINED, metrics.BYTES_IN, metrics.BYTES_INGESTED,
                 metrics.FILES_BEFORE, metrics.FILES_AFTER, metrics.ROWS_REMOVED):
        assert f"SEARCH('{{etl,dataset,service}} MetricName=\"{name}\"', 'Sum', 300)" in searches, name
    alarm = next(a for s in services for a in s.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                 if a.inputs["metricName"] == metrics.REQUESTS_AT_RISK)
    at_risk = [alarm.inputs["namespace"], alarm.inputs["metricName"], *next(iter(alarm.inputs["dimensions"].items()))]
    assert at_risk in metric_rows(body)


def test_dashboard_is_named_after_the_env_exported_and_deterministic(core: Stack) -> None:
    (dash,) = core.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dash.inputs["dashboardName"] == "etl-dev"
    assert core.run.outputs["dashboardName"] == "etl-dev"
    assert core.run.outputs["dashboardUrl"] == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/etl-dev")
    again = build("core-dev").one("aws:cloudwatch/dashboard:Dashboard", "dashboard")
    assert again.inputs["dashboardBody"] == dash.inputs["dashboardBody"]
    body = dashboard_of(core)
    for w in body["widgets"]:
        assert w["x"] >= 0 and w["x"] + w["width"] <= 24
        if w["type"] == "metric":
            assert w["properties"]["region"] == "eu-west-1"


def test_dashboard_follows_the_env() -> None:
    stack = build("core-test")
    body = dashboard_of(stack)
    assert stack.one("aws:cloudwatch/dashboard:Dashboard", "dashboard").inputs["dashboardName"] == "etl-test"
    assert "etl-test-erasure-worker" in dimension_values(body, "FunctionName")
    assert not any("etl-dev" in v for v in dimension_values(body, "QueueName"))
