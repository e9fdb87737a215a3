"""Provision each resource the Pulumi program registers as real API calls against moto server.

One handler per resource type, named after the type token. A type without a handler fails loudly
by name: the local platform never silently skips part of the program.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from contracts import aws
from etl.local import moto_apigw, moto_console

Result = tuple[str, dict[str, Any], str]
CREATED = "created"
NOT_ENFORCED = "created, not enforced locally"
IN_PROCESS = "runs in-process (etl.local.functions)"
RECORDED = "recorded without effect"


def _attr(v: Any) -> str:
    """Mock inputs carry numbers as floats; AWS attributes want `300`, not `300.0`."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class UnsupportedResource(NotImplementedError):
    pass


class MotoBackend:
    """Turns registered resources into moto API calls and returns their real ids and ARNs."""

    def __init__(self) -> None:
        self.region = aws.client("sts").meta.region_name
        self.account = aws.client("sts").get_caller_identity()["Account"]
        self._handlers: dict[str, Callable[[str, dict[str, Any]], Result]] = {
            "aws:cloudwatch/eventBus:EventBus": self._event_bus,
            "aws:cloudwatch/eventArchive:EventArchive": self._event_archive,
            "aws:cloudwatch/eventRule:EventRule": self._event_rule,
            "aws:cloudwatch/eventTarget:EventTarget": self._event_target,
            "aws:cloudwatch/logGroup:LogGroup": self._log_group,
            "aws:cloudwatch/metricAlarm:MetricAlarm": self._metric_alarm,
            "aws:cloudwatch/dashboard:Dashboard": self._dashboard,
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": self._public_access_block,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": self._sse,
            "aws:s3/bucketPolicy:BucketPolicy": self._bucket_policy,
            "aws:s3/bucketVersioning:BucketVersioning": self._versioning,
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": self._lifecycle,
            "aws:s3/bucketNotification:BucketNotification": self._notification,
            "aws:sqs/queue:Queue": self._queue,
            "aws:sqs/queuePolicy:QueuePolicy": self._queue_policy,
            "aws:iam/role:Role": self._role,
            "aws:iam/rolePolicy:RolePolicy": self._role_policy,
            "aws:iam/policy:Policy": self._managed_policy,
            "aws:lambda/function:Function": self._function,
            "aws:lambda/eventSourceMapping:EventSourceMapping": self._event_source_mapping,
            "aws:lambda/permission:Permission": self._recorded,
            "aws:glue/catalogDatabase:CatalogDatabase": self._glue_database,
            "aws:glue/catalogTable:CatalogTable": self._glue_table,
            "aws:dynamodb/table:Table": self._table,
            "aws:sns/topic:Topic": self._topic,
            "aws:sns/topicSubscription:TopicSubscription": self._recorded,
            "aws:athena/workgroup:Workgroup": self._workgroup,
        }
        self._handlers.update(moto_apigw.handlers(self.region, self.account))
        self._handlers.update(moto_console.handlers(self.region, self.account))

    # -- Backend protocol -------------------------------------------------------------------------
    def create(self, type_: str, name: str, inputs: dict[str, Any]) -> Result:
        handler = self._handlers.get(type_)
        if handler is None:
            raise UnsupportedResource(
                f"the local platform cannot provision {type_} (resource {name!r}); "
                "add a handler to etl/local/moto_backend.py or keep it out of the program"
            )
        return handler(name, inputs)

    def call(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            ident = aws.client("sts").get_caller_identity()
            return {
                "accountId": ident["Account"],
                "arn": ident["Arn"],
                "userId": ident["UserId"],
                "id": ident["Account"],
            }
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        raise UnsupportedResource(f"the local platform cannot answer provider function {token}")

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    # -- EventBridge --------------------------------------------------------------------------------
    def _event_bus(self, name: str, i: dict[str, Any]) -> Result:
        arn = aws.client("events").create_event_bus(Name=i["name"])["EventBusArn"]
        return i["name"], {"arn": arn, "name": i["name"]}, CREATED

    def _event_archive(self, name: str, i: dict[str, Any]) -> Result:
        kw = {"ArchiveName": i["name"], "EventSourceArn": i["eventSourceArn"]}
        if i.get("retentionDays") is not None:
            kw["RetentionDays"] = int(i["retentionDays"])
        if i.get("description"):
            kw["Description"] = i["description"]
        if i.get("eventPattern"):
            kw["EventPattern"] = i["eventPattern"]
        arn = aws.client("events").create_archive(**kw)["ArchiveArn"]
        return i["name"], {"arn": arn, "name": i["name"]}, CREATED

    def _event_rule(self, name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"Name": i["name"], "EventBusName": i.get("eventBusName") or "default"}
        if i.get("eventPattern"):
            kw["EventPattern"] = i["eventPattern"]
        if i.get("scheduleExpression"):
            kw["ScheduleExpression"] = i["scheduleExpression"]
        if i.get("description"):
            kw["Description"] = i["description"]
        arn = aws.client("events").put_rule(**kw)["RuleArn"]
        effect = CREATED if i.get("eventPattern") else "schedule fired by the local timer"
        return f"{kw['EventBusName']}/{i['name']}", {"arn": arn, "name": i["name"]}, effect

    def _event_target(self, name: str, i: dict[str, Any]) -> Result:
        target_id = i.get("targetId") or name
        if ":lambda:" in i["arn"]:
            return target_id, {"targetId": target_id}, "invoked in-process by the local runtime"
        target = {"Id": target_id, "Arn": i["arn"]}
        if i.get("roleArn"):
            target["RoleArn"] = i["roleArn"]
        resp = aws.client("events").put_targets(
            Rule=i["rule"], EventBusName=i.get("eventBusName") or "default", Targets=[target]
        )
        if resp.get("FailedEntryCount"):
            raise RuntimeError(f"put_targets for {name} failed: {resp['FailedEntries']}")
        return target_id, {"targetId": target_id}, CREATED

    # -- S3 -----------------------------------------------------------------------------------------
    def _bucket(self, name: str, i: dict[str, Any]) -> Result:
        bucket = i["bucket"]
        kw: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":
            kw["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        aws.client("s3").create_bucket(**kw)
        state = {
            "arn": f"arn:aws:s3:::{bucket}",
            "bucket": bucket,
            "region": self.region,
            "bucketDomainName": f"{bucket}.s3.amazonaws.com",
        }
        return bucket, state, CREATED

    def _public_access_block(self, name: str, i: dict[str, Any]) -> Result:
        aws.client("s3").put_public_access_block(
            Bucket=i["bucket"],
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": bool(i.get("blockPublicAcls")),
                "IgnorePublicAcls": bool(i.get("ignorePublicAcls")),
                "BlockPublicPolicy": bool(i.get("blockPublicPolicy")),
                "RestrictPublicBuckets": bool(i.get("restrictPublicBuckets")),
            },
        )
        return i["bucket"], {}, CREATED

    def _sse(self, name: str, i: dict[str, Any]) -> Result:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": r["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
                },
                "BucketKeyEnabled": bool(r.get("bucketKeyEnabled")),
            }
            for r in i["rules"]
        ]
        aws.client("s3").put_bucket_encryption(Bucket=i["bucket"], ServerSideEncryptionConfiguration={"Rules": rules})
        return i["bucket"], {}, CREATED

    def _bucket_policy(self, name: str, i: dict[str, Any]) -> Result:
        """The emulator speaks plain HTTP on loopback, so TLS-only denies are left out locally."""
        doc = json.loads(i["policy"])
        kept = [st for st in doc.get("Statement", []) if "aws:SecureTransport" not in json.dumps(st)]
        if kept:
            aws.client("s3").put_bucket_policy(Bucket=i["bucket"], Policy=json.dumps({**doc, "Statement": kept}))
        dropped = len(doc.get("Statement", [])) - len(kept)
        effect = f"created without {dropped} TLS-only statement(s): the emulator is HTTP" if dropped else CREATED
        return i["bucket"], {}, effect

    def _versioning(self, name: str, i: dict[str, Any]) -> Result:
        status = i["versioningConfiguration"]["status"]
        aws.client("s3").put_bucket_versioning(Bucket=i["bucket"], VersioningConfiguration={"Status": status})
        return i["bucket"], {}, CREATED

    def _lifecycle(self, name: str, i: dict[str, Any]) -> Result:
        rules = []
        for r in i["rules"]:
            rule: dict[str, Any] = {
                "ID": r["id"],
                "Status": r["status"],
                "Filter": {"Prefix": (r.get("filter") or {}).get("prefix", "")},
            }
            if r.get("expiration"):
                rule["Expiration"] = {"Days": int(r["expiration"]["days"])}
            if r.get("noncurrentVersionExpiration"):
                rule["NoncurrentVersionExpiration"] = {
                    "NoncurrentDays": int(r["noncurrentVersionExpiration"]["noncurrentDays"])
                }
            if r.get("abortIncompleteMultipartUpload"):
                rule["AbortIncompleteMultipartUpload"] = {
                    "DaysAfterInitiation": int(r["abortIncompleteMultipartUpload"]["daysAfterInitiation"])
                }
            rules.append(rule)
        aws.client("s3").put_bucket_lifecycle_configuration(Bucket=i["bucket"], LifecycleConfiguration={"Rules": rules})
        return i["bucket"], {}, "created, expiry not run locally"

    def _notification(self, name: str, i: dict[str, Any]) -> Result:
        config: dict[str, Any] = {}
        if i.get("eventbridge"):
            config["EventBridgeConfiguration"] = {}
        aws.client("s3").put_bucket_notification_configuration(Bucket=i["bucket"], NotificationConfiguration=config)
        return i["bucket"], {}, CREATED

    # -- SQS ----------------------------------------------------------------------------------------
    def _queue(self, name: str, i: dict[str, Any]) -> Result:
        attrs = {
            "VisibilityTimeout": i.get("visibilityTimeoutSeconds"),
            "MessageRetentionPeriod": i.get("messageRetentionSeconds"),
            "RedrivePolicy": i.get("redrivePolicy"),
            "SqsManagedSseEnabled": i.get("sqsManagedSseEnabled"),
            "FifoQueue": i.get("fifoQueue") or None,
            "ContentBasedDeduplication": i.get("contentBasedDeduplication") or None,
            "DelaySeconds": i.get("delaySeconds"),
        }
        attributes = {k: _attr(v) for k, v in attrs.items() if v is not None}
        sqs = aws.client("sqs")
        url = sqs.create_queue(QueueName=i["name"], Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, {"arn": arn, "url": url, "name": i["name"]}, CREATED

    def _queue_policy(self, name: str, i: dict[str, Any]) -> Result:
        aws.client("sqs").set_queue_attributes(QueueUrl=i["queueUrl"], Attributes={"Policy": i["policy"]})
        return i["queueUrl"], {}, NOT_ENFORCED

    # -- IAM ----------------------------------------------------------------------------------------
    def _role(self, name: str, i: dict[str, Any]) -> Result:
        role = aws.client("iam").create_role(RoleName=i["name"], AssumeRolePolicyDocument=i["assumeRolePolicy"])
        return (
            i["name"],
            {"arn": role["Role"]["Arn"], "name": i["name"], "uniqueId": role["Role"]["RoleId"]},
            NOT_ENFORCED,
        )

    def _role_policy(self, name: str, i: dict[str, Any]) -> Result:
        aws.client("iam").put_role_policy(RoleName=i["role"], PolicyName=name, PolicyDocument=i["policy"])
        return f"{i['role']}:{name}", {"name": name}, NOT_ENFORCED

    def _managed_policy(self, name: str, i: dict[str, Any]) -> Result:
        """A managed policy for principals outside the platform (e.g. the erasure requester's)."""
        arn = aws.client("iam").create_policy(PolicyName=i["name"], PolicyDocument=i["policy"],
                                              Description=i.get("description", ""))["Policy"]["Arn"]
        return arn, {"arn": arn, "name": i["name"]}, NOT_ENFORCED

    # -- Lambda (run in-process by etl.local.functions) -------------------------------------------
    def _function(self, name: str, i: dict[str, Any]) -> Result:
        arn = self._arn("lambda", f"function:{i['name']}")
        state = {
            "arn": arn,
            "name": i["name"],
            "qualifiedArn": f"{arn}:$LATEST",
            "version": "$LATEST",
            "invokeArn": f"arn:aws:apigateway:{self.region}:lambda:path/2015-03-31/functions/{arn}/invocations",
        }
        return i["name"], state, IN_PROCESS

    def _event_source_mapping(self, name: str, i: dict[str, Any]) -> Result:
        mapping_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{i['eventSourceArn']}|{i['functionName']}"))
        return mapping_id, {"uuid": mapping_id, "functionArn": i["functionName"]}, IN_PROCESS

    def _recorded(self, name: str, i: dict[str, Any]) -> Result:
        return name, {}, RECORDED

    # -- CloudWatch ---------------------------------------------------------------------------------
    def _log_group(self, name: str, i: dict[str, Any]) -> Result:
        logs = aws.client("logs")
        logs.create_log_group(logGroupName=i["name"])
        if i.get("retentionInDays"):
            logs.put_retention_policy(logGroupName=i["name"], retentionInDays=int(i["retentionInDays"]))
        return i["name"], {"arn": self._arn("logs", f"log-group:{i['name']}"), "name": i["name"]}, CREATED

    def _metric_alarm(self, name: str, i: dict[str, Any]) -> Result:
        aws.client("cloudwatch").put_metric_alarm(
            AlarmName=i["name"],
            AlarmDescription=i.get("alarmDescription", ""),
            Namespace=i["namespace"],
            MetricName=i["metricName"],
            Dimensions=[{"Name": k, "Value": str(v)} for k, v in (i.get("dimensions") or {}).items()],
            Statistic=i["statistic"],
            Period=int(i["period"]),
            EvaluationPeriods=int(i["evaluationPeriods"]),
            Threshold=float(i["threshold"]),
            ComparisonOperator=i["comparisonOperator"],
            TreatMissingData=i.get("treatMissingData", "missing"),
            AlarmActions=list(i.get("alarmActions") or []),
            OKActions=list(i.get("okActions") or []),
        )
        return i["name"], {"arn": self._arn("cloudwatch", f"alarm:{i['name']}")}, "created, never evaluated locally"

    def _dashboard(self, name: str, i: dict[str, Any]) -> Result:
        """Stored so tools can read it; it graphs nothing locally (EMF metrics stay in the function logs)."""
        aws.client("cloudwatch").put_dashboard(DashboardName=i["dashboardName"], DashboardBody=i["dashboardBody"])
        arn = f"arn:aws:cloudwatch::{self.account}:dashboard/{i['dashboardName']}"
        return i["dashboardName"], {"dashboardArn": arn, "dashboardName": i["dashboardName"]}, (
            "created; no data locally (metrics stay in the function logs)")

    # -- Glue, DynamoDB, SNS ------------------------------------------------------------------------
    def _glue_database(self, name: str, i: dict[str, Any]) -> Result:
        aws.client("glue").create_database(DatabaseInput={"Name": i["name"]})
        return i["name"], {"arn": self._arn("glue", f"database/{i['name']}"), "name": i["name"]}, CREATED

    def _glue_table(self, name: str, i: dict[str, Any]) -> Result:
        sd = i["storageDescriptor"]
        table_input = {
            "Name": i["name"],
            "Description": i.get("description", ""),
            "TableType": i.get("tableType", "EXTERNAL_TABLE"),
            "Parameters": i.get("parameters") or {},
            "PartitionKeys": [{"Name": p["name"], "Type": p["type"]} for p in i.get("partitionKeys") or []],
            "StorageDescriptor": {
                "Location": sd["location"],
                "InputFormat": sd["inputFormat"],
                "OutputFormat": sd["outputFormat"],
                "SerdeInfo": {
                    "SerializationLibrary": sd["serDeInfo"]["serializationLibrary"],
                    "Parameters": sd["serDeInfo"].get("parameters") or {},
                },
                "Columns": [{"Name": c["name"], "Type": c["type"]} for c in sd["columns"]],
            },
        }
        aws.client("glue").create_table(DatabaseName=i["databaseName"], TableInput=table_input)
        arn = self._arn("glue", f"table/{i['databaseName']}/{i['name']}")
        return f"{i['databaseName']}:{i['name']}", {"arn": arn, "name": i["name"]}, CREATED

    def _table(self, name: str, i: dict[str, Any]) -> Result:
        keys = [{"AttributeName": i["hashKey"], "KeyType": "HASH"}]
        if i.get("rangeKey"):
            keys.append({"AttributeName": i["rangeKey"], "KeyType": "RANGE"})
        ddb = aws.client("dynamodb")
        desc = ddb.create_table(
            TableName=i["name"],
            BillingMode=i.get("billingMode", "PAY_PER_REQUEST"),
            KeySchema=keys,
            AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]} for a in i["attributes"]],
        )["TableDescription"]
        ttl = i.get("ttl") or {}
        if ttl.get("enabled"):
            ddb.update_time_to_live(
                TableName=i["name"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]},
            )
        return i["name"], {"arn": desc["TableArn"], "name": i["name"]}, CREATED

    def _workgroup(self, name: str, i: dict[str, Any]) -> Result:
        """Created so tools find it; queries run on DuckDB locally (moto's Athena executes no SQL)."""
        conf = i.get("configuration") or {}
        config: dict[str, Any] = {"EnforceWorkGroupConfiguration": bool(conf.get("enforceWorkgroupConfiguration"))}
        location = (conf.get("resultConfiguration") or {}).get("outputLocation")
        if location:
            config["ResultConfiguration"] = {"OutputLocation": location}
        if conf.get("bytesScannedCutoffPerQuery"):
            config["BytesScannedCutoffPerQuery"] = int(conf["bytesScannedCutoffPerQuery"])
        aws.client("athena").create_work_group(Name=i["name"], Configuration=config,
                                               Description=i.get("description", ""))
        return i["name"], {"arn": self._arn("athena", f"workgroup/{i['name']}"), "name": i["name"]}, (
            "created; local queries run on DuckDB (etl query)")

    def _topic(self, name: str, i: dict[str, Any]) -> Result:
        arn = aws.client("sns").create_topic(Name=i["name"])["TopicArn"]
        return arn, {"arn": arn, "name": i["name"]}, CREATED
