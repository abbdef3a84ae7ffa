"""`aurora-kit iam-policy`: valid IAM policy documents derived from the calls each runbook made on the emulated AWS
(aurora_kit/data/iam_calls.json, kept in step by tests/test_runbooks_aws.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aurora_kit import iam, params
from aurora_kit.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA_PLANE = ("01-create-cluster", "02-configure-parameters", "03-extensions", "04-verify-read-write",
              "05-backup-restore", "06-failover")  # fmt: skip


def _policy(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["iam-policy", *args]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == sorted(set(statement["Action"]))
        assert all(":" in action for action in statement["Action"])
        assert statement["Resource"]
    return document


def _actions(document: dict) -> set[str]:
    return {a for s in document["Statement"] for a in s["Action"]}


def test_every_runbook_has_a_policy_covering_its_recorded_calls(capsys: pytest.CaptureFixture[str]) -> None:
    recorded = iam.load_calls()
    assert list(recorded) == list(params.RUNBOOKS)
    union: set[str] = set()
    for runbook, calls in recorded.items():
        actions = _actions(_policy(capsys, runbook.split("-")[0]))
        assert {c.action for c in calls} <= actions
        assert actions == set(iam.actions(calls))
        union |= actions
        if runbook in DATA_PLANE:
            assert "rds-db:connect" in actions, runbook  # IAM token logins (iam_auth)
    assert _actions(_policy(capsys)) == union


def test_the_issues_missing_permissions_are_there(capsys: pytest.CaptureFixture[str]) -> None:
    """01 and 05 create managed secrets (CreateSecret, TagResource, kms:DescribeKey), 07 tags its alarms."""
    for runbook in ("01", "05"):
        assert {"secretsmanager:CreateSecret", "secretsmanager:TagResource", "kms:DescribeKey"} <= _actions(
            _policy(capsys, runbook)
        )
    assert "cloudwatch:TagResource" in _actions(_policy(capsys, "07"))
    assert "rds:CreateDBClusterSnapshot" in _actions(_policy(capsys, "99"))  # its final snapshot


def test_a_parameters_file_scopes_tokens_secrets_and_the_kms_key(capsys: pytest.CaptureFixture[str]) -> None:
    document = _policy(capsys, "01", "-f", str(ROOT / "parameters" / "aws-prod.example.yaml"))
    by_action = {a: s for s in document["Statement"] for a in s["Action"]}
    assert by_action["rds-db:connect"]["Resource"] == "arn:aws:rds-db:eu-west-1:*:dbuser:*/aurora_kit_ops"
    assert by_action["secretsmanager:GetSecretValue"]["Resource"].startswith("arn:aws:secretsmanager:eu-west-1:")
    assert by_action["kms:CreateGrant"]["Resource"].startswith("arn:aws:kms:eu-west-1:")  # aws.kms_key_id is set
    assert by_action["iam:CreateServiceLinkedRole"]["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "rds.amazonaws.com"}
    }


def test_an_unknown_runbook_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iam-policy", "42"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_the_readme_shows_the_generated_policy() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Every runbook together (`aurora-kit iam-policy`):", 1)[1].split("```json\n", 1)[1]
    assert json.loads(block.split("\n```", 1)[0]) == iam.policy(), "README's policy: paste `aurora-kit iam-policy`"


def test_the_proxy_role_is_created_where_the_policy_allows() -> None:
    from aurora_kit.backends.aws import scale_decisions

    assert scale_decisions.PROXY_ROLE_PREFIX == iam.PROXY_ROLE_PREFIX
    assert scale_decisions.proxy_role_name("ak-proxy").startswith(iam.PROXY_ROLE_PREFIX)
    statement = next(s for s in iam.policy("09")["Statement"] if "iam:PassRole" in s["Action"])
    assert statement["Resource"] == f"arn:aws:iam::*:role/{iam.PROXY_ROLE_PREFIX}*"
