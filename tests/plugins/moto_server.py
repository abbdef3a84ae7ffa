"""moto fixtures: fake AWS credentials for every AWS test, and a moto server for notebook kernels.

- ``aws_credentials``: fake credentials + region in the environment, no profile, no endpoint override, so an
  in-process ``mock_aws`` test can never reach real AWS.
- ``moto_server`` (session): a :class:`moto.server.ThreadedMotoServer` on a free loopback port (port 0, the OS
  picks), yielding a :class:`MotoServer` with its ``url`` and the ``env`` a kernel needs (``AWS_ENDPOINT_URL``,
  fake credentials, region). Stopped at teardown. ``reset()`` wipes its state between tests;
  ``kernel_env()`` gives a child process (papermill kernel) this env with every other ``AWS_*`` variable removed.
- ``moto_server_env``: applies that env to this process for one test and resets the server afterwards.
- ``moto_rds_gaps``: moto's RDS gaps filled for one in-process test, with the patches the emulator uses too
  (:func:`aurora_kit.emulator.gaps.fill_moto_rds_gaps`, moto pinned to 5.2.x there); the ``moto_server`` fixture
  applies them for its whole life. The backend itself carries no moto workaround.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from aurora_kit.emulator.gaps import fill_moto_rds_gaps

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
#: variables that could point boto3 at real credentials or another endpoint
_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_RDS",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@dataclass(frozen=True)
class MotoServer:
    url: str
    region: str = REGION
    env: dict[str, str] = field(default_factory=dict)

    def kernel_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process (papermill kernel): ``base`` (default: this process's env) without any
        ``AWS_*`` variable, plus the server's endpoint, fake credentials and region."""
        source = os.environ if base is None else base
        return {k: v for k, v in source.items() if not k.startswith("AWS_")} | self.env

    def reset(self) -> None:
        """Drop every resource the server holds (moto's reset API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def _fake_env(monkeypatch: pytest.MonkeyPatch, extra: dict[str, str] | None = None) -> None:
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    # a file that does not exist: no real profile can be read even by name
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name, value in {**FAKE_CREDENTIALS, **(extra or {})}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; no profile or endpoint override can leak in."""
    _fake_env(monkeypatch)


@pytest.fixture(scope="session")
def boto_session() -> Any:
    """One boto3 session for the in-process moto tests: its clients share the loaded service models (a fresh
    default session re-reads botocore's JSON models, ~0.3 s per test). Credentials are fake and explicit."""
    import boto3

    return boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=REGION,
    )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    patches = pytest.MonkeyPatch()
    fill_moto_rds_gaps(patches)  # the server runs moto's classes in this process: kernels see the same answers
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        yield MotoServer(url=url, env={**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": url})
    finally:
        server.stop()
        patches.undo()
        werkzeug.setLevel(level)


@pytest.fixture
def moto_server_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """This process talks to ``moto_server`` for one test (env applied), state reset afterwards."""
    _fake_env(monkeypatch, {"AWS_ENDPOINT_URL": moto_server.url})
    try:
        yield moto_server
    finally:
        moto_server.reset()


@pytest.fixture
def moto_rds_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`~aurora_kit.emulator.gaps.fill_moto_rds_gaps` for one test (in-process ``mock_aws``)."""
    fill_moto_rds_gaps(monkeypatch)
