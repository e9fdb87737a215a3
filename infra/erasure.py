"""`erasure` stack: right-to-be-forgotten requests → find → rewrite → purge → verify → certificate.

Resources (all pay-per-use; idle cost is a 15-minute schedule's invocations):
- HTTP API (API Gateway v2) with IAM-authorised routes → `erasure-api` function (Lambda proxy);
- `erasure-intake`: ErasureRequested on the platform bus → queue (+DLQ) → function (QueueFunction);
- `erasure-run`: run ticks, from its own queue (+DLQ; on demand and stage fan-in) and a schedule;
- `erasure-worker`: one task (a partition, a quarantine, a raw object) per message, queue (+DLQ);
- the erasure bucket (run workspaces, certificates), alarms (DLQs, errors, backlog, deadline risk);
- two tables of its own, so no other service's role can reach them: `etl-<env>-erasure` (requests,
  runs, indexes: hashes only; point-in-time recovery on) and `etl-<env>-erasure-vault` (the subject
  ids of open requests: no point-in-time recovery, TTL as a backstop — docs/design/erasure.md);
- the `etl-<env>-erasure-requester` managed policy: what a system filing requests needs (the API
  routes and PutEvents of `ErasureRequested`, which no platform role may emit).
The subject-hash salt is an SSM SecureString the functions create on first use (never in config or
state); an optional KMS key (`etl:erasureKmsKeyId`) also encrypts subject ids at rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from contracts import events, metrics, naming
from contracts.settings import ErasureSettings, ErasureTunables
from infra import policy
from infra.components.queue_function import QueueFunction, QueueFunctionArgs
from infra.components.secure_bucket import SecureBucket
from infra.console import Console
from infra.erasure_routes import ROUTES
from infra.layers import LOCAL_ENV, dependency_layers
from infra.packaging import Archive, build_archive
from infra.settings import Settings
from infra.transform import glue_arns

HANDLERS = "services.erasure.handlers"
RUN_TIMEOUT_S = WORKER_TIMEOUT_S = 900
STATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                 "dynamodb:Query", "dynamodb:ConditionCheckItem"]


@dataclass(frozen=True)
class ErasureStackConfig:
    """The `etl:erasure*` keys: the functions' tunables (contracts.settings, with the defaults) and the
    schedule, which only infra uses. The local env purges at once unless told otherwise."""

    tunables: ErasureTunables = field(default_factory=ErasureTunables)
    schedule_minutes: int = 15

    @classmethod
    def load(cls, env: str, commit_busy_wait_s: float = ErasureTunables().commit_busy_wait_s) -> ErasureStackConfig:
        cfg = pulumi.Config("etl")
        wait_min, raw_mb = cfg.get_int("erasureBatchMaxWaitMinutes"), cfg.get_int("erasureRawRewriteMaxMb")
        given = {  # a key left unset (or 0 where 0 means nothing) takes the model's default
            "deadline_days": cfg.get_int("erasureDeadlineDays") or None,
            "risk_days": cfg.get_int("erasureRiskDays") or None,
            "purge_grace_s": cfg.get_int("erasurePurgeGraceSeconds"),
            "batch_size": cfg.get_int("erasureBatchSize") or None,
            "batch_max_wait_s": wait_min * 60 if wait_min else None,
            "raw_rewrite_max_bytes": raw_mb * 1024 * 1024 if raw_mb else None,
            "record_retention_days": cfg.get_int("erasureRecordRetentionDays") or None,
            "kms_key_id": cfg.get("erasureKmsKeyId") or None,
            "approval_required": cfg.get_bool("erasureApproval"),
            "commit_busy_wait_s": commit_busy_wait_s,
        }
        if env == LOCAL_ENV and given["purge_grace_s"] is None:
            given["purge_grace_s"] = 0
        return cls(ErasureTunables(**{k: v for k, v in given.items() if v is not None}),
                   cfg.get_int("erasureScheduleMinutes") or 15)


def _dlq_alarms(scope: pulumi.Resource, name: str, fn_name: str, topic: pulumi.Input[str],
                queue: aws.sqs.Queue, dlq: aws.sqs.Queue, fn: aws.lambda_.Function, timeout_s: int) -> None:
    """The same three alarms QueueFunction sets: DLQ not empty, errors, backlog age."""
    specs = [
        ("dlq-depth", f"{fn_name}-dlq-not-empty", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
         {"QueueName": dlq.name}, "Maximum", 60, 0, f"Messages {fn_name} could not process wait in its DLQ."),
        ("errors", f"{fn_name}-errors", "AWS/Lambda", "Errors", {"FunctionName": fn.name}, "Sum", 300, 0,
         f"{fn_name} raised errors (messages are retried, then dead-lettered)."),
        ("backlog-age", f"{fn_name}-backlog-age", "AWS/SQS", "ApproximateAgeOfOldestMessage",
         {"QueueName": queue.name}, "Maximum", 300, 10 * timeout_s,
         f"The oldest message for {fn_name} waited longer than 10 function timeouts."),
    ]
    for suffix, alarm, ns, metric, dims, stat, period, threshold, description in specs:
        aws.cloudwatch.MetricAlarm(
            f"{name}-{suffix}", name=alarm, alarm_description=description, namespace=ns, metric_name=metric,
            dimensions=dims, statistic=stat, period=period, threshold=threshold,
            comparison_operator="GreaterThanThreshold", evaluation_periods=1, treat_missing_data="notBreaching",
            alarm_actions=[topic], ok_actions=[topic], opts=pulumi.ResourceOptions(parent=scope))


class Erasure(pulumi.ComponentResource):
    def __init__(self, s: Settings, account_id: str) -> None:
        super().__init__("etl:service:Erasure", naming.name(s.env, "erasure"))
        self.s = s
        self.es = ErasureStackConfig.load(s.env, s.commit_busy_wait_s)
        core = pulumi.StackReference("core", stack_name=s.core_stack_name)
        self.out = out = core.require_output
        self.archive = build_archive("erasure")
        self.layers = dependency_layers(s, "erasure", out("artifactsBucket"))
        child = pulumi.ResourceOptions(parent=self)
        env = s.env

        self.records_table, self.vault_table = self._tables()
        self.bucket = SecureBucket("erasure", naming.bucket_name(env, "erasure", account_id), versioned=False,
                                   lifecycle_rules=[_expire_prefix("expire-run-workspaces", "runs/", 14)], opts=child)
        self.run_queue, self.run_dlq = self._queues("erasure-run", RUN_TIMEOUT_S)
        self.work_queue, self.work_dlq = self._queues("erasure-worker", WORKER_TIMEOUT_S)
        region = aws.get_region().region
        self.execute_arn = f"arn:aws:execute-api:{region}:{account_id}"
        self.salt_parameter = f"/{naming.prefix(env)}/erasure/subject-hash-salt"
        salt_arn = f"arn:aws:ssm:{region}:{account_id}:parameter{self.salt_parameter}"
        b = self.bucket.bucket.arn
        state = [out("stateTableArn")]
        records, vault = [self.records_table.arn], [self.vault_table.arn]
        where: dict[str, pulumi.Input[str]] = {  # the resources, under the settings model's variable names
            "env": env, "bus": out("busName"), "lake_bucket": out("lakeBucket"), "raw_bucket": out("rawBucket"),
            "quarantine_bucket": out("quarantineBucket"), "landing_bucket": out("landingBucket"),
            "erasure_bucket": self.bucket.bucket.bucket, "state_table": out("stateTable"),
            "erasure_table": self.records_table.name, "vault_table": self.vault_table.name,
            "database": out("glueDatabase"), "alerts_topic": out("alertsTopicArn"), "run_queue_url": self.run_queue.url,
            "work_queue_url": self.work_queue.url, "salt_parameter": self.salt_parameter,
            "max_receive_count": str(s.max_receive_count),
        }
        self.common_env: dict[str, pulumi.Input[str]] = {
            **self.es.tunables.to_environ(),
            **ErasureSettings.variables(where),
            "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        salt = policy.statement(["ssm:GetParameter", "ssm:PutParameter"], [salt_arn], "SubjectHashSalt")
        kms = self.es.tunables.kms_key_id
        intake_statements = [
            policy.statement(STATE_ACTIONS, records, "Requests"),
            policy.statement(["dynamodb:PutItem", "dynamodb:DeleteItem"], vault, "FillVault"),
            policy.statement(["sqs:SendMessage"], [self.run_queue.arn], "AskForRun"),
            salt,
            *([policy.statement(["kms:Encrypt"], [kms], "SealSubjects")] if kms else []),
        ]
        runner_statements = [
            policy.statement(STATE_ACTIONS, records, "Requests"),
            policy.statement(["dynamodb:GetItem", "dynamodb:DeleteItem"], vault, "ReadVault"),
            policy.statement(STATE_ACTIONS, state, "PartitionCommits"),
            policy.statement(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                              "s3:GetObjectVersion"], [policy.objects(out("lakeBucketArn")),
                                                       policy.objects(out("quarantineBucketArn")),
                                                       policy.objects(out("rawBucketArn")), policy.objects(b)],
                             "EraseAndVerify"),
            policy.statement(["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                             [policy.objects(out("landingBucketArn"))], "LandingOriginals"),
            policy.statement(["s3:ListBucket", "s3:ListBucketVersions"],
                             [out("lakeBucketArn"), out("quarantineBucketArn"), out("rawBucketArn"),
                              out("landingBucketArn"), b], "List"),
            policy.statement(["glue:GetPartition", "glue:GetPartitions", "glue:CreatePartition",
                              "glue:UpdatePartition", "glue:GetTable"], glue_arns(out("glueDatabase")), "Catalog"),
            policy.statement(["sqs:SendMessage"], [self.run_queue.arn, self.work_queue.arn], "Tasks"),
            policy.put_events(out("busArn"), events.ErasureCompleted),
            policy.statement(["sns:Publish"], [out("alertsTopicArn")], "Alert"),
            salt,
            *([policy.statement(["kms:Decrypt"], [kms], "OpenSubjects")] if kms else []),
        ]

        certificates = policy.statement(["s3:GetObject"], [policy.objects(b, "certificates/")], "Certificates")
        self.api_fn = self._function("erasure-api", "api_handler", 30, 512, [*intake_statements, certificates],
                                     "erasure-api")
        self.run_fn = self._function("erasure-run", "run_handler", RUN_TIMEOUT_S, 1769, runner_statements,
                                     "erasure-run", self.run_queue)
        self.worker_fn = self._function("erasure-worker", "worker_handler", WORKER_TIMEOUT_S, 3008,
                                        runner_statements, "erasure-worker", self.work_queue)
        self._mapping("erasure-run", self.run_queue, self.run_fn, batch_size=10, concurrency=2)
        self._mapping("erasure-worker", self.work_queue, self.worker_fn, batch_size=1,
                      concurrency=s.max_concurrency)
        topic = out("alertsTopicArn")
        _dlq_alarms(self, "erasure-run", self._physical("erasure-run"), topic, self.run_queue, self.run_dlq,
                    self.run_fn, RUN_TIMEOUT_S)
        _dlq_alarms(self, "erasure-worker", self._physical("erasure-worker"), topic, self.work_queue, self.work_dlq,
                    self.worker_fn, WORKER_TIMEOUT_S)
        self._schedule()
        self._deadline_alarm(topic)
        self.intake = QueueFunction("erasure-intake", QueueFunctionArgs(
            function_name=self._physical("erasure-intake"),
            handler=f"{HANDLERS}.events_handler",
            archive=self.archive,
            bus_name=out("busName"),
            event_pattern=events.pattern(events.ErasureRequested),
            alerts_topic_arn=topic,
            environment={**self.common_env, "POWERTOOLS_SERVICE_NAME": "erasure-intake"},
            statements=[*intake_statements, policy.put_events(out("busArn"), events.ErasureCompleted)],
            runtime=s.lambda_runtime, architecture=s.lambda_architecture, layers=self.layers, memory_mb=512,
            timeout_s=60, batch_size=10, max_concurrency=s.max_concurrency, max_receive_count=s.max_receive_count,
            log_retention_days=s.log_retention_days,
        ), opts=child)
        self.api = self._http_api()
        self.console = _console(env, account_id, region, self.api_fn, self.es, child)
        self.requester_policy = self._requester_policy()
        self.register_outputs({})

    # -- pieces ---------------------------------------------------------------------------------
    def _tables(self) -> tuple[aws.dynamodb.Table, aws.dynamodb.Table]:
        """Records (hashes only: backed up) apart from the vault (clear ids: never backed up)."""
        child = pulumi.ResourceOptions(parent=self)

        def table(name: str, purpose: str, pitr: bool, description: str) -> aws.dynamodb.Table:
            return aws.dynamodb.Table(
                name, name=self._physical(purpose), billing_mode="PAY_PER_REQUEST", hash_key="pk", range_key="sk",
                attributes=[aws.dynamodb.TableAttributeArgs(name="pk", type="S"),
                            aws.dynamodb.TableAttributeArgs(name="sk", type="S")],
                ttl=aws.dynamodb.TableTtlArgs(attribute_name="expires_at", enabled=True),
                point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=pitr),
                tags={"etl:contents": description, **({} if pitr else {"etl:backup": "never"})}, opts=child)

        records = table("erasure-records", "erasure", True, "erasure requests and runs (subject hashes only)")
        vault = table("erasure-vault", "erasure-vault", False, "subject ids of open erasure requests")
        return records, vault

    def _physical(self, purpose: str) -> str:
        return naming.name(self.s.env, purpose)

    def _queues(self, name: str, timeout_s: int) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
        child = pulumi.ResourceOptions(parent=self)
        dlq = aws.sqs.Queue(f"{name}-dlq", name=naming.dlq_name(self._physical(name)),
                            message_retention_seconds=14 * 86400, sqs_managed_sse_enabled=True, opts=child)
        queue = aws.sqs.Queue(
            f"{name}-queue", name=naming.queue_name(self._physical(name)), visibility_timeout_seconds=6 * timeout_s,
            message_retention_seconds=4 * 86400, sqs_managed_sse_enabled=True,
            redrive_policy=dlq.arn.apply(lambda arn: json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": self.s.max_receive_count})),
            opts=child)
        return queue, dlq

    def _function(self, name: str, handler: str, timeout_s: int, memory_mb: int, statements: Sequence[dict],
                  service: str, queue: aws.sqs.Queue | None = None) -> aws.lambda_.Function:
        child = pulumi.ResourceOptions(parent=self)
        fn_name = self._physical(name)
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{fn_name}",
                                       retention_in_days=self.s.log_retention_days, opts=child)
        role = aws.iam.Role(f"{name}-role", name=f"{fn_name}-role",
                            assume_role_policy=policy.assume_role("lambda.amazonaws.com"), opts=child)
        own = [policy.statement(["logs:CreateLogStream", "logs:PutLogEvents"],
                                [pulumi.Output.concat(logs.arn, ":*")], "OwnLogs"), policy.xray_write()]
        if queue is not None:
            own.append(policy.statement(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                         "sqs:ChangeMessageVisibility"], [queue.arn], "OwnQueue"))
        aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy.document([*own, *statements]), opts=child)
        return _lambda(self, name, fn_name, f"{HANDLERS}.{handler}", self.archive, role, logs, timeout_s, memory_mb,
                       {**self.common_env, "POWERTOOLS_SERVICE_NAME": service}, self.s, self.layers)

    def _mapping(self, name: str, queue: aws.sqs.Queue, fn: aws.lambda_.Function, *, batch_size: int,
                 concurrency: int) -> None:
        aws.lambda_.EventSourceMapping(
            f"{name}-mapping", event_source_arn=queue.arn, function_name=fn.arn, batch_size=batch_size,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=max(2, concurrency)),
            opts=pulumi.ResourceOptions(parent=self))

    def _schedule(self) -> None:
        child = pulumi.ResourceOptions(parent=self)
        minutes = self.es.schedule_minutes
        rule = aws.cloudwatch.EventRule(
            "erasure-schedule", name=self._physical("erasure-schedule"), event_bus_name="default",
            description="Erasure runs: start batches that waited long enough, advance active runs, report risk",
            schedule_expression=f"rate({minutes} minute{'s' if minutes > 1 else ''})", opts=child)
        aws.cloudwatch.EventTarget("erasure-schedule-target", rule=rule.name, event_bus_name="default",
                                   arn=self.run_fn.arn, opts=child)
        aws.lambda_.Permission("erasure-schedule-invoke", action="lambda:InvokeFunction",
                               function=self.run_fn.name, principal="events.amazonaws.com", source_arn=rule.arn,
                               opts=child)

    def _deadline_alarm(self, topic: pulumi.Input[str]) -> None:
        aws.cloudwatch.MetricAlarm(
            "erasure-deadline-risk", name=self._physical("erasure-deadline-risk"),
            alarm_description=f"Erasure requests are within {self.es.tunables.risk_days:g} days of their "
                              f"{self.es.tunables.deadline_days:g}-day deadline (or past it): `etl erasure list`.",
            namespace=metrics.NAMESPACE, metric_name=metrics.REQUESTS_AT_RISK, dimensions={"service": "erasure-run"},
            statistic="Maximum", period=3600, threshold=0, comparison_operator="GreaterThanThreshold",
            evaluation_periods=1, treat_missing_data="notBreaching", alarm_actions=[topic], ok_actions=[topic],
            opts=pulumi.ResourceOptions(parent=self))

    def _http_api(self) -> aws.apigatewayv2.Api:
        child = pulumi.ResourceOptions(parent=self)
        api = aws.apigatewayv2.Api("erasure-api", name=self._physical("erasure-api"), protocol_type="HTTP",
                                   description="Erasure requests (IAM-authorised: sign with SigV4, service "
                                               "execute-api)", opts=child)
        integration = aws.apigatewayv2.Integration(
            "erasure-api-integration", api_id=api.id, integration_type="AWS_PROXY", integration_method="POST",
            integration_uri=self.api_fn.arn, payload_format_version="2.0", timeout_milliseconds=29000, opts=child)
        for n, key in enumerate(ROUTES):
            aws.apigatewayv2.Route(f"erasure-route-{n}", api_id=api.id, route_key=key, authorization_type="AWS_IAM",
                                   target=integration.id.apply(lambda i: f"integrations/{i}"), opts=child)
        aws.apigatewayv2.Stage("erasure-api-stage", api_id=api.id, name="$default", auto_deploy=True,
                               default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                                   throttling_burst_limit=20, throttling_rate_limit=10), opts=child)
        aws.lambda_.Permission("erasure-api-invoke", action="lambda:InvokeFunction", function=self.api_fn.name,
                               principal="apigateway.amazonaws.com",
                               source_arn=api.id.apply(lambda i: f"{self.execute_arn}:{i}/*/*"), opts=child)
        return api

    def _requester_policy(self) -> aws.iam.Policy:
        """Attach to whoever files requests: the API's routes, and ErasureRequested on the bus (nothing else).

        Not the approve route: with four-eyes approval on, approvers are granted it on their own.
        """
        def route_arn(key: str) -> pulumi.Output[str]:
            return self.api.id.apply(lambda i: f"{self.execute_arn}:{i}/*/{_arn_path(key)}")

        routes = [route_arn(k) for k in ROUTES if not k.endswith("/approve")]
        doc = policy.document([
            policy.statement(["execute-api:Invoke"], routes, "ErasureApi"),
            policy.put_events(self.out("busArn"), events.ErasureRequested, sid="RequestErasure"),
        ])
        return aws.iam.Policy("erasure-requester", name=self._physical("erasure-requester"),
                              description="File and follow erasure requests (API) or send ErasureRequested",
                              policy=doc, opts=pulumi.ResourceOptions(parent=self))

    def outputs(self) -> dict[str, pulumi.Input]:
        return {
            "apiUrl": self.api.api_endpoint,
            "apiId": self.api.id,
            "erasureBucket": self.bucket.bucket.bucket,
            "runQueueUrl": self.run_queue.url,
            "runDlqUrl": self.run_dlq.url,
            "workQueueUrl": self.work_queue.url,
            "workDlqUrl": self.work_dlq.url,
            "intakeQueueUrl": self.intake.queue.url,
            "intakeDlqUrl": self.intake.dlq.url,
            "apiFunctionName": self.api_fn.name,
            "runFunctionName": self.run_fn.name,
            "workerFunctionName": self.worker_fn.name,
            "saltParameter": self.salt_parameter,
            **(self.console.outputs() if self.console else {}),
            "erasureTable": self.records_table.name,
            "vaultTable": self.vault_table.name,
            "requesterPolicyArn": self.requester_policy.arn,
        }


def _console(env: str, account_id: str, region: str, api_fn: aws.lambda_.Function, es: ErasureStackConfig,
             opts: pulumi.ResourceOptions) -> Console | None:
    """The compliance console (infra/console.py) over the same API function; `etl:console: false` leaves it out."""
    enabled = pulumi.Config("etl").get_bool("console")
    return None if enabled is False else Console(env, account_id, region, api_fn, int(es.tunables.deadline_days),
                                                 int(es.tunables.risk_days), es.tunables.approval_required, opts=opts)


def _lambda(scope: pulumi.Resource, name: str, fn_name: str, handler: str, archive: Archive, role: aws.iam.Role,
            logs: aws.cloudwatch.LogGroup, timeout_s: int, memory_mb: int, env: Mapping[str, pulumi.Input[str]],
            s: Settings, layers: Sequence[pulumi.Input[str]]) -> aws.lambda_.Function:
    return aws.lambda_.Function(
        f"{name}-function", name=fn_name, role=role.arn, runtime=s.lambda_runtime,
        architectures=[s.lambda_architecture], handler=handler, code=pulumi.FileArchive(str(archive.path)),
        source_code_hash=archive.sha256_b64, memory_size=memory_mb, timeout=timeout_s, layers=list(layers),
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(env)),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=logs.name),
        tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
        opts=pulumi.ResourceOptions(parent=scope, depends_on=[logs]))


def _arn_path(route_key: str) -> str:
    """`GET /erasure-requests/{id}` → `GET/erasure-requests/*` (execute-api ARNs match path parameters by `*`)."""
    method, path = route_key.split(" ", 1)
    return method + "/".join("*" if part.startswith("{") else part for part in path.split("/"))


def _expire_prefix(rule_id: str, prefix: str, days: int) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    """Backstop only: a run deletes its own workspace when it ends."""
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule_id, status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
        abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=1))


def build(s: Settings) -> dict[str, pulumi.Input]:
    account_id = aws.get_caller_identity().account_id
    return Erasure(s, account_id).outputs()
