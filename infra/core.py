"""`core` stack: what every service shares — bus, buckets, catalog, state tables, alerts."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from contracts import events, naming
from contracts.datasets import load_datasets
from infra import dashboard, policy
from infra.catalog import check_contracts, dataset_table
from infra.components.secure_bucket import SecureBucket, expire_rule, noncurrent_rule
from infra.settings import Settings

#: ErasureRequested carries subject ids in clear; an archive would keep them past the erasure itself.
ARCHIVE_PATTERN = {"detail-type": [{"anything-but": [events.ErasureRequested.DETAIL_TYPE]}]}


class Core(pulumi.ComponentResource):
    def __init__(self, s: Settings, account_id: str, region: str) -> None:
        check_contracts(load_datasets().values())  # a contract change that breaks the lake stops before any resource
        super().__init__("etl:core:Core", naming.prefix(s.env))
        child = pulumi.ResourceOptions(parent=self)
        env = s.env

        self.bus = aws.cloudwatch.EventBus("platform-bus", name=naming.name(env, "bus"), opts=child)
        self.archive = aws.cloudwatch.EventArchive(
            "platform-archive",
            name=naming.name(env, "archive"),
            event_source_arn=self.bus.arn,
            retention_days=s.archive_retention_days,
            description="Every platform event but ErasureRequested (it carries subject ids), for replay",
            event_pattern=json.dumps(ARCHIVE_PATTERN, sort_keys=True),
            opts=child,
        )

        def bucket(purpose: str, versioned: bool, rules: list) -> SecureBucket:
            return SecureBucket(
                purpose,
                naming.bucket_name(env, purpose, account_id),
                versioned=versioned,
                lifecycle_rules=rules,
                opts=child,
            )

        self.landing = bucket("landing", False, [expire_rule("expire-landed", s.landing_ttl_days)])
        self.raw = bucket("raw", True, [expire_rule("raw-ttl", s.raw_ttl_days, s.noncurrent_version_days)])
        self.lake = bucket("lake", True, [noncurrent_rule("lake-old-versions", s.noncurrent_version_days)])
        self.quarantine = bucket(
            "quarantine", True, [noncurrent_rule("quarantine-old-versions", s.noncurrent_version_days)]
        )
        self.results = bucket("results", False, [expire_rule("expire-query-results", s.query_results_days)])
        self.artifacts = bucket("artifacts", False, [])
        self.workgroup = aws.athena.Workgroup(
            "athena",
            name=naming.prefix(env),
            description="Analyst queries of the compacted tables",
            force_destroy=True,
            configuration=aws.athena.WorkgroupConfigurationArgs(
                enforce_workgroup_configuration=True,
                publish_cloudwatch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=s.athena_bytes_cutoff,
                engine_version=aws.athena.WorkgroupConfigurationEngineVersionArgs(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=aws.athena.WorkgroupConfigurationResultConfigurationArgs(
                    output_location=self.results.bucket.bucket.apply(lambda b: f"s3://{b}/athena/"),
                    encryption_configuration=aws.athena.WorkgroupConfigurationResultConfigurationEncryptionConfigurationArgs(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
            opts=child,
        )
        aws.s3.BucketNotification(
            "landing-to-eventbridge", bucket=self.landing.bucket.id, eventbridge=True, opts=child
        )
        self._forward_landing_events(env)

        self.database = aws.glue.CatalogDatabase(
            "catalog", name=f"{naming.PROJECT}_{env}".replace("-", "_"), opts=child
        )
        self.tables = [
            dataset_table(ds, self.database.name, self.lake.bucket.bucket, self)
            for ds in load_datasets().values()
        ]
        self.state_table = aws.dynamodb.Table(
            "state",
            name=naming.name(env, "state"),
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk",
            range_key="sk",
            attributes=[
                aws.dynamodb.TableAttributeArgs(name="pk", type="S"),
                aws.dynamodb.TableAttributeArgs(name="sk", type="S"),
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name="expires_at", enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            opts=child,
        )
        self.idempotency_table = aws.dynamodb.Table(
            "idempotency",
            name=naming.name(env, "idempotency"),
            billing_mode="PAY_PER_REQUEST",
            hash_key="id",
            attributes=[aws.dynamodb.TableAttributeArgs(name="id", type="S")],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name="expiration", enabled=True),
            opts=child,
        )
        self.alerts = aws.sns.Topic("alerts", name=naming.name(env, "alerts"), opts=child)
        if s.alert_email:
            aws.sns.TopicSubscription(
                "alerts-email", topic=self.alerts.arn, protocol="email", endpoint=s.alert_email, opts=child
            )
        self.region = region
        self.dashboard = dashboard.dashboard(env, region, child) if s.dashboard else None
        self.register_outputs({})

    def _forward_landing_events(self, env: str) -> None:
        """S3 sends to the default bus only; a rule forwards landing events to the platform bus."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            "forward-role",
            name=naming.name(env, "forward-landing"),
            assume_role_policy=policy.assume_role("events.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            "forward-policy",
            role=role.id,
            policy=policy.document([policy.statement(["events:PutEvents"], [self.bus.arn], "ToPlatformBus")]),
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            "forward-landing",
            name=naming.name(env, "forward-landing"),
            event_bus_name="default",
            description="Landing bucket Object Created → platform bus",
            event_pattern=self.landing.bucket.bucket.apply(
                lambda b: json.dumps(events.s3_object_created_pattern(b), sort_keys=True)
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            "forward-landing-target",
            rule=rule.name,
            event_bus_name="default",
            arn=self.bus.arn,
            role_arn=role.arn,
            opts=child,
        )

    def outputs(self) -> dict[str, pulumi.Input]:
        """Stable output names other stacks read through a StackReference."""
        b = {
            "landingBucket": self.landing.bucket,
            "rawBucket": self.raw.bucket,
            "lakeBucket": self.lake.bucket,
            "quarantineBucket": self.quarantine.bucket,
            "resultsBucket": self.results.bucket,
            "artifactsBucket": self.artifacts.bucket,
        }
        out: dict[str, pulumi.Input] = {}
        for key, res in b.items():
            out[key] = res.bucket
            out[f"{key}Arn"] = res.arn
        out.update(
            busName=self.bus.name,
            busArn=self.bus.arn,
            archiveName=self.archive.name,
            glueDatabase=self.database.name,
            stateTable=self.state_table.name,
            stateTableArn=self.state_table.arn,
            idempotencyTable=self.idempotency_table.name,
            idempotencyTableArn=self.idempotency_table.arn,
            alertsTopicArn=self.alerts.arn,
            athenaWorkgroup=self.workgroup.name,
        )
        if self.dashboard is not None:
            out["dashboardName"] = self.dashboard.dashboard_name
            out["dashboardUrl"] = self.dashboard.dashboard_name.apply(lambda n: dashboard.url(self.region, n))
        return out


def build(s: Settings) -> dict[str, pulumi.Input]:
    account_id = aws.get_caller_identity().account_id
    return Core(s, account_id, aws.get_region().region).outputs()
