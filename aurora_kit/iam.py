"""Least privilege from real calls: the IAM policy each runbook needs on the aws backend, generated from the AWS calls
it made on the emulated AWS (``aurora-kit emulate`` records every call; ``data/iam_calls.json`` holds them per runbook,
written by the rehearsal test ``tests/test_runbooks_aws.py``, which fails when a runbook's calls change without it).
``08-scale`` and ``09-proxy``, which the emulator does not run yet, are recorded on a plain moto server (their control
plane) plus the few calls they make only once the data plane answers, declared in that test (``DATA_PLANE_ONLY``).

An action is ``<service>:<Operation>`` of each recorded call, plus what AWS checks on the caller's behalf for some of
its parameters (:data:`IMPLIED`), plus ``rds-db:connect`` for every IAM token login (recorded by the emulator's front
door). ``aurora-kit iam-policy [RUNBOOK] [-f parameters.yaml]`` prints the policy document; the runbooks' headers list
the same actions (``scripts/sync_runbooks.py`` writes them; a test keeps them in step).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aurora_kit.errors import InvalidParameterError

if TYPE_CHECKING:
    from aurora_kit.params import RunbookParameters

CALLS_FILE = Path(__file__).resolve().parent / "data" / "iam_calls.json"
IAM_LINE_PREFIX = "**Least-privilege IAM (aws backend)**"


@dataclass(frozen=True)
class Implied:
    """Permissions AWS checks on the caller when ``operation`` is called with ``flag`` given (None: always)."""

    service: str
    operation: str
    flag: str | None
    actions: tuple[str, ...]
    why: str


#: what AWS authorises beyond the call itself (Amazon RDS / Aurora User Guides: "Password management with AWS Secrets
#: Manager", "Tagging Amazon RDS resources", "Using service-linked roles for Amazon RDS", "Encrypting Amazon Aurora
#: resources"; IAM User Guide: "Tagging IAM roles"; CloudWatch API reference: PutMetricAlarm's Tags; RDS API
#: reference: DeleteDBCluster)
IMPLIED: tuple[Implied, ...] = (
    Implied("rds", "CreateDBCluster", "ManageMasterUserPassword",
            ("secretsmanager:CreateSecret", "secretsmanager:TagResource", "kms:DescribeKey"),
            "RDS creates the managed master secret (rds!cluster-...) as the caller"),
    Implied("rds", "ModifyDBCluster", "ManageMasterUserPassword",
            ("secretsmanager:CreateSecret", "secretsmanager:TagResource", "kms:DescribeKey"),
            "RDS creates the managed master secret of a restored cluster as the caller"),
    Implied("rds", "CreateDBCluster", "KmsKeyId", ("kms:CreateGrant", "kms:DescribeKey"),
            "storage encrypted with a customer managed key: RDS creates a grant on it as the caller"),
    Implied("rds", "CreateDBCluster", None, ("iam:CreateServiceLinkedRole",),
            "the first cluster of an account creates the AWSServiceRoleForRDS service-linked role"),
    Implied("rds", "*", "Tags", ("rds:AddTagsToResource",), "tags given on create or restore"),
    Implied("rds", "DeleteDBCluster", "FinalDBSnapshotIdentifier", ("rds:CreateDBClusterSnapshot",),
            "a final snapshot is a cluster snapshot the caller takes"),
    Implied("cloudwatch", "PutMetricAlarm", "Tags", ("cloudwatch:TagResource",), "tags given with the alarm"),
    Implied("rds", "CreateDBProxy", None, ("iam:PassRole",), "the proxy's role is passed to RDS Proxy"),
    Implied("iam", "CreateRole", "Tags", ("iam:TagRole",), "a role created with tags (IAM User Guide, \"Tagging IAM "
            "roles\": creating a role with tags needs iam:TagRole too)"),
    Implied("application-autoscaling", "RegisterScalableTarget", None, ("iam:CreateServiceLinkedRole",),
            "the first Aurora scalable target creates AWSServiceRoleForApplicationAutoScaling_RDSCluster"),
    Implied("application-autoscaling", "PutScalingPolicy", None, ("cloudwatch:DescribeAlarms",
            "cloudwatch:PutMetricAlarm"), "target tracking creates its CloudWatch alarms as the caller"),
    Implied("application-autoscaling", "DeleteScalingPolicy", None, ("cloudwatch:DeleteAlarms",
            "cloudwatch:DescribeAlarms"), "deleting the policy deletes its alarms as the caller"),
    Implied("cloudwatch", "PutMetricAlarm", None, ("cloudwatch:DeleteAlarms",),
            "aurora_kit's put_alarms deletes the cluster's alarms the new set no longer has (an instance gone): a call "
            "a fresh rehearsal never makes"),
)  # fmt: skip


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    flags: tuple[str, ...] = ()

    @property
    def action(self) -> str:
        return f"{self.service}:{self.operation}"


# -- the recorded calls ---------------------------------------------------------------------------------------------
def normalise(calls: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The emulator's call log of one runbook as it is kept: one entry per (service, operation, flags), successful
    token logins only, sorted."""
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for call in calls:
        if call.get("service") == "rds-db" and not call.get("ok", False):
            continue
        seen.add((str(call["service"]), str(call["operation"]), tuple(sorted(call.get("flags") or ()))))
    return [{"service": s, "operation": o, "flags": list(f)} for s, o, f in sorted(seen)]


def load_calls(path: Path = CALLS_FILE) -> dict[str, list[Call]]:
    data = json.loads(path.read_text())
    return {
        runbook: [Call(c["service"], c["operation"], tuple(c.get("flags") or ())) for c in calls]
        for runbook, calls in data["runbooks"].items()
    }


# -- actions and policies -------------------------------------------------------------------------------------------
def actions(calls: Sequence[Call], *, kms_key: bool = False) -> list[str]:
    """Every IAM action ``calls`` need. ``kms_key``: storage encrypted with a customer managed key (aws.kms_key_id),
    which the recording (no key) cannot show."""
    out = set()
    for call in calls:
        out.add(call.action)
        flags = set(call.flags) | ({"KmsKeyId"} if kms_key and call.operation == "CreateDBCluster" else set())
        for rule in IMPLIED:
            applies = rule.service == call.service and rule.operation in (call.operation, "*")
            if applies and (rule.flag is None or rule.flag in flags):
                out.update(rule.actions)
    return sorted(out)


def resolve(runbook: str) -> str:
    """``06`` → ``06-failover`` (InvalidParameterError for an unknown runbook)."""
    from aurora_kit.params import RUNBOOKS

    match = next((r for r in RUNBOOKS if r == runbook or r.split("-", 1)[0] == runbook), None)
    if match is None:
        raise InvalidParameterError("runbook", runbook, f"unknown; one of {', '.join(RUNBOOKS)}")
    return match


def policy(runbook: str | None = None, params: RunbookParameters | None = None) -> dict[str, Any]:
    """The IAM policy document (JSON-able) for ``runbook`` (None: every runbook). With ``params``: secrets, IAM tokens
    and the KMS key scoped to its Region, IAM database user and key."""
    recorded = load_calls()
    names = [resolve(runbook)] if runbook else list(recorded)
    calls = [c for name in names for c in recorded[name]]
    wanted = actions(calls, kms_key=bool(params and params.aws.kms_key_id))
    region = params.region if params else "*"
    by_resource: dict[str, list[str]] = {}
    conditions: dict[str, dict[str, Any]] = {}
    for action in wanted:
        service = action.split(":")[0]
        if service == "secretsmanager":
            resource = f"arn:aws:secretsmanager:{region}:*:secret:rds!cluster-*"  # RDS-managed master secrets
        elif service == "rds-db":
            user = params.aws.iam_db_user if params and params.aws.iam_db_user else "*"
            resource = f"arn:aws:rds-db:{region}:*:dbuser:*/{user}"
        elif service == "kms" and params and params.aws.kms_key_id:
            resource = params.aws.kms_key_id
        elif action == "iam:CreateServiceLinkedRole":  # one statement per role, each for its own service
            for resource, service_name in _service_linked_roles(calls):
                conditions[resource] = {"StringLike": {"iam:AWSServiceName": service_name}}
                by_resource.setdefault(resource, []).append(action)
            continue
        elif service == "iam":  # the role 09-proxy creates for its proxy (or the one given to it)
            given = params.proxy.role_arn if params and params.proxy and action == "iam:PassRole" else None
            resource = given or f"arn:aws:iam::*:role/{PROXY_ROLE_PREFIX}*"
        else:
            resource = "*"  # Describe* need "*"; scope further by tag conditions (aws:ResourceTag) if wanted
        by_resource.setdefault(resource, []).append(action)
    statements = []
    for resource, acts in sorted(by_resource.items(), key=lambda kv: (kv[0] != "*", kv[0])):
        sid = "Calls" if resource == "*" else _sid(resource)
        statement: dict[str, Any] = {"Sid": f"AuroraKit{sid}", "Effect": "Allow", "Action": sorted(acts)}
        statement["Resource"] = resource
        if resource in conditions:
            statement["Condition"] = conditions[resource]
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


#: the role name 09-proxy gives the role it creates for a proxy starts so (aurora_kit.backends.aws.scale_decisions's)
PROXY_ROLE_PREFIX = "aurora-kit-proxy-"
_SERVICE_LINKED = {
    "CreateDBCluster": (
        "rds.amazonaws.com",
        "arn:aws:iam::*:role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS",
    ),
    "RegisterScalableTarget": (
        "rds.application-autoscaling.amazonaws.com",
        "arn:aws:iam::*:role/aws-service-role/rds.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_RDSCluster",
    ),
}


def _sid(resource: str) -> str:
    """A statement id from its resource: the service, and for IAM roles the role's name (Sids are unique)."""
    service = resource.split(":")[2]
    name = resource.rsplit("/", 1)[-1] if service == "iam" else ""
    return "".join(ch for ch in service.title() + name.title() if ch.isalnum())


def _service_linked_roles(calls: Sequence[Call]) -> list[tuple[str, str]]:
    """The service-linked roles ``calls`` may create (RDS's; Application Auto Scaling's for Aurora): (ARN, service)."""
    return sorted(
        {(arn, name) for c in calls if c.operation in _SERVICE_LINKED for name, arn in [_SERVICE_LINKED[c.operation]]}
    )


def header_line(runbook: str) -> str:
    """The runbook header's IAM paragraph, from the same recording as :func:`policy`."""
    listed = ", ".join(f"`{a}`" for a in actions(load_calls()[runbook]))
    name = runbook.split("-", 1)[0]
    return (
        f"{IAM_LINE_PREFIX} — generated from the calls this runbook makes (`aurora-kit iam-policy {name}` prints the "
        f"policy; with `-f <parameters>` scoped to its Region, IAM user and KMS key): {listed}."
    )


def header_paragraph(runbook: str, width: int = 118) -> str:
    """:func:`header_line` as the ``# `` comment lines of a runbook's py:percent markdown cell."""
    import textwrap

    lines = textwrap.wrap(header_line(runbook), width - 2, break_long_words=False, break_on_hyphens=False)
    return "\n".join(f"# {line}" for line in lines)
