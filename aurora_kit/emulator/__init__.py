"""An emulated AWS whose data plane is real: ``aurora-kit emulate`` (install with ``pip install aurora_kit[emulate]``).

A moto server (moto 5.2.x, its RDS gaps filled in one place: :mod:`.gaps`) whose RDS clusters are clusters of the
``local`` backend, so the ``aws`` backend runs unchanged against it — boto3 through ``AWS_ENDPOINT_URL``, the waits,
the managed secret, IAM auth tokens, ``sslmode=verify-full``, psycopg connections:

- :mod:`.bridge`     moto's RDS resources ↔ local clusters (one worker per cluster; statuses, writer, secret)
- :mod:`.hooks`      the patches on moto that call the bridge, and the recording of every AWS call
- :mod:`.frontdoor`  the TLS listener behind every endpoint hostname: routing by SNI, Aurora's IAM check
- :mod:`.routing`    where each endpoint hostname leads; who is an IAM user
- :mod:`.proxies`    RDS Proxy: a proxy of an emulated cluster is a local PgBouncer proxy (targets, endpoints, health)
- :mod:`.pinning`    RDS Proxy's session pinning, added by the front door on proxy sessions
- :mod:`.iam`        auth-token verification (SigV4 presigned ``rds-db:connect``)
- :mod:`.pgwire`     the PostgreSQL protocol pieces the front door needs (startup, errors, SCRAM client)
- :mod:`.tls`        the emulator's CA and server certificate
- :mod:`.events`     Aurora's event catalogue (DescribeEvents)
- :mod:`.metrics`    AWS/RDS metrics measured on the instances, alarm evaluation
- :mod:`.server`     :class:`Emulator`: everything together, plus a control API (info, recorded calls, faults)
- :mod:`.client`     :class:`EmulatorClient` for the control API

What it emulates and what it does not: the table in the README (section "Try the aws runbooks without an account").
"""

from __future__ import annotations

from aurora_kit.emulator.client import EmulatorClient
from aurora_kit.emulator.server import Emulator, EmulatorConfig

__all__ = ["Emulator", "EmulatorClient", "EmulatorConfig"]
