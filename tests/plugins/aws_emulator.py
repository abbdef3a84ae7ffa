"""The emulated AWS for tests: ``aurora-kit emulate`` itself, as a child process (the command a user runs).

- ``aws_emulator`` (module): the emulator on free ports (``--port 0 --db-port 0``) with a fresh home under /tmp;
  yields a :class:`RunningEmulator` (API url, data-plane address, CA bundle, control client). At the end it is
  stopped with SIGTERM — it deletes its clusters and snapshots itself — and no PostgreSQL process of its home nor
  snapshot may survive.
- ``emulator_env`` (function): this process (and the notebook kernels it starts) talks to it: ``AWS_ENDPOINT_URL``,
  fake credentials, region; every other ``AWS_*`` variable removed. The recorded calls are reset.

``RunningEmulator.parameters(path, **changes)`` writes a parameters file: ``parameters/aws-emulated.yaml`` with
this emulator's CA bundle and endpoint overrides (the committed file names the default ports), then the changes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from aurora_kit.emulator.client import EmulatorClient
from plugins.local_cluster import _new_root, clean_up_root, postmasters_under
from plugins.moto_server import FAKE_CREDENTIALS, REGION, _fake_env

ROOT = Path(__file__).resolve().parents[2]
EMULATED = ROOT / "parameters" / "aws-emulated.yaml"


@dataclass
class RunningEmulator:
    url: str
    data_plane: str
    ca_bundle: str
    home: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    region: str = REGION

    @property
    def client(self) -> EmulatorClient:
        return EmulatorClient(self.url)

    @property
    def env(self) -> dict[str, str]:
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    @property
    def endpoint_overrides(self) -> dict[str, str]:
        return {f"*.{self.region}.rds.amazonaws.com": self.data_plane}

    def backend_options(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for AwsBackend against this emulator (fast polls: its operations take seconds)."""
        from aurora_kit.backends.aws import PollSettings

        poll = PollSettings(initial_delay=0.1, max_delay=1.0, timeout=300, short_timeout=120)
        return {"region": self.region, "ca_bundle": self.ca_bundle, "endpoint_overrides": self.endpoint_overrides,
                "poll": poll, **extra}  # fmt: skip

    def parameters(self, path: Path, **changes: Any) -> Path:
        """parameters/aws-emulated.yaml for this emulator (CA bundle, endpoint overrides), then ``changes``
        (a top-level key, or a section given as a dict of the keys that change)."""
        data = yaml.safe_load(EMULATED.read_text())
        data["aws"] = {**data["aws"], "ca_bundle": self.ca_bundle, "endpoint_overrides": self.endpoint_overrides}
        for key, value in changes.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


def _start(home: Path) -> RunningEmulator:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | FAKE_CREDENTIALS
    process = subprocess.Popen(
        [sys.executable, "-m", "aurora_kit.cli", "emulate", "--home", str(home), "--port", "0", "--db-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=str(home),
    )
    output: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if "data plane" in line:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(90) or process.poll() is not None:
        process.kill()
        raise RuntimeError("aurora-kit emulate did not start:\n" + "\n".join(output))
    banner = next(line for line in output if "data plane" in line)
    info = EmulatorClient(next(w for w in banner.split() if w.startswith("http"))).info()
    return RunningEmulator(
        url=info["aws_endpoint_url"],
        data_plane=info["data_plane"],
        ca_bundle=info["ca_bundle"],
        home=home,
        process=process,
        output=output,
    )


def _stop(emulator: RunningEmulator) -> None:
    emulator.process.send_signal(signal.SIGTERM)
    try:
        emulator.process.wait(timeout=120)
    except subprocess.TimeoutExpired:  # pragma: no cover - a hung emulator must not outlive the tests
        emulator.process.kill()
        emulator.process.wait(timeout=30)
        raise


@pytest.fixture(scope="module")
def aws_emulator() -> Iterator[RunningEmulator]:
    home = _new_root("ak-emulator-")
    started = time.monotonic()
    emulator = _start(home)
    emulator.output.append(f"(started in {time.monotonic() - started:.1f}s)")
    try:
        yield emulator
    finally:
        try:
            _stop(emulator)
            leftovers = postmasters_under(home)
            assert not leftovers, f"the emulator left PostgreSQL processes: {[p.pid for p in leftovers]}"
            snapshots = home / "local" / "snapshots"  # a final snapshot left would break the next emulator's teardown
            kept = sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []
            assert not kept, f"the emulator left snapshots: {kept}"
        finally:
            clean_up_root(home / "local")
            if home.exists():
                import shutil

                shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def emulator_env(aws_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    _fake_env(monkeypatch, {"AWS_ENDPOINT_URL": aws_emulator.url})
    aws_emulator.client.reset_calls()
    return aws_emulator
