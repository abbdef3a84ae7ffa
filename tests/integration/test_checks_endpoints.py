"""Endpoint role check on a real local cluster, and that it reports a reader endpoint that reaches the writer."""

from __future__ import annotations

from typing import Any

import pytest
from _checks_display import assert_displays

from aurora_kit.backends.base import Cluster
from aurora_kit.checks import check_endpoint_roles, check_endpoint_roles_at
from aurora_kit.checks.endpoints import READ_ONLY_SQLSTATE
from aurora_kit.errors import VerificationError

pytestmark = pytest.mark.integration


def test_roles_and_spread_on_a_healthy_cluster(local_backend: Any, local_cluster: Cluster) -> None:
    report = check_endpoint_roles(local_backend, local_cluster.db_cluster_identifier, connections=24)
    assert report.problems() == []
    assert report.cluster.instance_id == local_cluster.writer_id
    assert report.cluster.in_recovery is False
    assert report.reader.instance_id in local_cluster.reader_ids
    assert report.reader.in_recovery is True
    assert report.reader_write_sqlstate == READ_ONLY_SQLSTATE
    assert sum(report.distribution.values()) == 24
    # load_balance_hosts=random over two readers: both answer (P(all 24 on one) = 2 * 0.5**24)
    assert set(report.distribution) == set(local_cluster.reader_ids)
    report.assert_ok()
    summary = assert_displays(report)
    assert summary["reader_write_sqlstate"] == "25006"
    assert "PASS" in report._repr_html_()


def test_reader_endpoint_that_reaches_the_writer_is_reported(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    writer_info = local_backend.connection_info(cid, local_cluster.writer_id)
    report = check_endpoint_roles_at(
        local_backend.connection_info(cid, "cluster"),
        writer_info,  # a "reader endpoint" misconfigured to the writer
        expected_writer=local_cluster.writer_id,
        expected_readers=local_cluster.reader_ids,
        connections=5,
    )
    assert report.reader_write_sqlstate is None  # the write went through (and was rolled back)
    problems = " | ".join(report.problems())
    assert "not read-only" in problems
    assert "expected SQLSTATE 25006" in problems
    assert "non-readers" in problems
    with pytest.raises(VerificationError) as excinfo:
        report.assert_ok()
    assert excinfo.value.context["evidence"]["distribution"] == {local_cluster.writer_id: 5}


def test_reader_endpoint_stuck_on_one_reader_is_reported(local_backend: Any, local_cluster: Cluster) -> None:
    cid = local_cluster.db_cluster_identifier
    one_reader = local_cluster.reader_ids[0]
    report = check_endpoint_roles_at(
        local_backend.connection_info(cid, "cluster"),
        local_backend.connection_info(cid, one_reader),
        expected_writer=local_cluster.writer_id,
        expected_readers=local_cluster.reader_ids,
        connections=10,
    )
    assert report.distribution == {one_reader: 10}
    assert any("no load balancing" in p for p in report.problems())
    relaxed = check_endpoint_roles_at(
        local_backend.connection_info(cid, "cluster"),
        local_backend.connection_info(cid, one_reader),
        expected_readers=local_cluster.reader_ids,
        connections=10,
        require_spread=False,
    )
    relaxed.assert_ok()
