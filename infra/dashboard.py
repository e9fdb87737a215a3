"""The env's CloudWatch dashboard (core stack): every function and queue, per-dataset throughput, risks.

Function and queue names come from contracts/naming.py, the functions the service stacks name theirs
with, so the dashboard shows what is deployed without reading the service stacks (core goes up first).
Per-dataset widgets are SEARCH expressions over the `dataset` dimension (contracts/metrics.py): a new
dataset contract appears without a redeploy. The body is plain JSON from names alone: deterministic.

Cost: a dashboard is $3/month beyond the account's first three; `etl:dashboard: "false"` leaves it out.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from contracts import metrics, naming

WIDTH, HEIGHT, COLUMNS = 12, 6, 24
PERIOD = 300


def function_names(env: str) -> list[str]:
    return [naming.name(env, purpose) for purposes in naming.FUNCTIONS.values() for purpose in purposes]


def queue_names(env: str) -> tuple[list[str], list[str]]:
    """(queues, their DLQs) of every queue-fed function."""
    fns = [naming.name(env, purpose) for purpose in naming.QUEUE_FED]
    return [naming.queue_name(f) for f in fns], [naming.dlq_name(f) for f in fns]


def _graph(title: str, region: str, stat: str, metric_rows: list[list[Any]]) -> dict[str, Any]:
    return {"type": "metric", "properties": {"title": title, "region": region, "view": "timeSeries",
                                             "stacked": False, "stat": stat, "period": PERIOD,
                                             "metrics": metric_rows}}


def _aws(namespace: str, metric: str, dimension: str, names: list[str], env: str) -> list[list[Any]]:
    """One line per resource, labelled without the env prefix."""
    cut = len(naming.prefix(env)) + 1
    return [[namespace, metric, dimension, n, {"label": n[cut:]}] for n in names]


def _per_dataset(metric: str, stat: str) -> list[Any]:
    """Every (service, dataset) series of an etl metric, found at read time, labelled `<dataset> <metric>`."""
    expr = f"SEARCH('{{{metrics.NAMESPACE},{metrics.DATASET},service}} MetricName=\"{metric}\"', '{stat}', {PERIOD})"
    label = f"${{PROP('Dim.{metrics.DATASET}')}} {metric}"
    return [{"expression": expr, "id": metric[0].lower() + metric[1:], "label": label}]


def widgets(env: str, region: str) -> list[dict[str, Any]]:
    fns = function_names(env)
    queues, dlqs = queue_names(env)
    lam, sqs = "AWS/Lambda", "AWS/SQS"
    per_dataset = [
        ("Rows good per dataset (transform)", [metrics.ROWS_GOOD]),
        ("Rows quarantined per dataset (transform)", [metrics.ROWS_QUARANTINED]),
        ("Bytes per dataset: ingested, read by transform", [metrics.BYTES_INGESTED, metrics.BYTES_IN]),
        ("Objects per dataset: ingested, rejected", [metrics.OBJECTS_INGESTED, metrics.OBJECTS_REJECTED]),
        ("Compaction per dataset: files before, after", [metrics.FILES_BEFORE, metrics.FILES_AFTER]),
        ("Erasure per dataset: rows removed, files rewritten", [metrics.ROWS_REMOVED, metrics.FILES_REWRITTEN]),
    ]
    out = [
        {"type": "text", "width": COLUMNS, "height": 2, "properties": {"markdown": (
            f"# {naming.dashboard_name(env)}\nFunctions and queues of every service, per-dataset throughput "
            "(`dataset` dimension), erasure deadline risk. Alarms go to the alerts topic; `etl dlq list` "
            "shows what a DLQ holds.")}},
        _graph("Invocations", region, "Sum", _aws(lam, "Invocations", "FunctionName", fns, env)),
        _graph("Errors", region, "Sum", _aws(lam, "Errors", "FunctionName", fns, env)),
        _graph("Duration p99 (ms)", region, "p99", _aws(lam, "Duration", "FunctionName", fns, env)),
        _graph("Throttles", region, "Sum", _aws(lam, "Throttles", "FunctionName", fns, env)),
        _graph("Queue depth (visible messages)", region, "Maximum",
               _aws(sqs, "ApproximateNumberOfMessagesVisible", "QueueName", queues, env)),
        _graph("Age of oldest message (s)", region, "Maximum",
               _aws(sqs, "ApproximateAgeOfOldestMessage", "QueueName", queues, env)),
        _graph("DLQ depth", region, "Maximum", _aws(sqs, "ApproximateNumberOfMessagesVisible", "QueueName", dlqs, env)),
        _graph("Erasure requests at deadline risk", region, "Maximum",
               [[metrics.NAMESPACE, metrics.REQUESTS_AT_RISK, "service", "erasure-run"]]),
    ]
    out += [_graph(title, region, "Sum", [_per_dataset(n, "Sum") for n in names]) for title, names in per_dataset]
    return _placed(out)


def _placed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Left to right, top to bottom on the 24-column grid."""
    x = y = row_height = 0
    placed = []
    for w in items:
        width, height = w.get("width", WIDTH), w.get("height", HEIGHT)
        if x + width > COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**w, "x": x, "y": y, "width": width, "height": height})
        x, row_height = x + width, max(row_height, height)
    return placed


def body(env: str, region: str) -> str:
    return json.dumps({"widgets": widgets(env, region)}, sort_keys=True)


def url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def dashboard(env: str, region: str, opts: pulumi.ResourceOptions | None = None) -> aws.cloudwatch.Dashboard:
    return aws.cloudwatch.Dashboard("dashboard", dashboard_name=naming.dashboard_name(env),
                                    dashboard_body=body(env, region), opts=opts)
