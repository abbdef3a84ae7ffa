"""The aws backend against a moto *server* (``tests/plugins/moto_server.py``), the way notebook kernels will use it:
boto3 finds the server through ``AWS_ENDPOINT_URL`` alone, and another process sees the same state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from plugins.moto_server import MotoServer

from aurora_kit.backends import get_backend
from aurora_kit.backends.aws import AwsBackend, PollSettings
from aurora_kit.specs import ClusterSpec

FAST = {"initial_delay": 0.01, "max_delay": 0.05, "timeout": 10, "short_timeout": 10}


def test_backend_reaches_the_server_through_aws_endpoint_url(moto_server_env: MotoServer) -> None:
    server = moto_server_env
    assert os.environ["AWS_ENDPOINT_URL"] == server.url
    assert server.url.startswith("http://127.0.0.1:")
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"} <= set(server.env)

    backend = get_backend("aws", region=server.region, poll=FAST)
    assert isinstance(backend, AwsBackend)
    cluster = backend.create_cluster(ClusterSpec.with_readers("srv", 1))
    assert cluster.status == "available"
    assert cluster.writer_id == "srv-1"
    # no engine-default catalogue (moto: HTTP 500; the plugin's patch: an empty one): the built-in table decides
    result = backend.apply_parameters("srv", {"log_min_duration_statement": "500", "max_connections": "400"})
    assert {c.parameter_name: c.apply_method for c in result.changes} == {
        "log_min_duration_statement": "immediate",
        "max_connections": "pending-reboot",
    }
    assert backend.connection_info("srv").password

    # a separate process (a notebook kernel) with only the plugin's env sees the same cluster
    child_env = server.kernel_env({**os.environ, "AWS_PROFILE": "production"})
    assert "AWS_PROFILE" not in child_env
    script = (
        "import boto3, json; r = boto3.client('rds').describe_db_clusters()['DBClusters'];"
        "print(json.dumps([c['DBClusterIdentifier'] for c in r]))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=child_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["srv"]


def test_reset_wipes_the_server_state(moto_server_env: MotoServer) -> None:
    backend = AwsBackend(region=moto_server_env.region, poll=PollSettings(**FAST))
    backend.create_cluster(ClusterSpec.with_readers("gone", 0), wait=False)
    assert [c.db_cluster_identifier for c in backend.list_clusters()] == ["gone"]
    moto_server_env.reset()
    assert backend.list_clusters() == []
