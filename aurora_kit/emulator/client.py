"""A client for the emulator's control API (``/_aurora_kit/``): what tests and tools ask a running emulator."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


class EmulatorClient:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(f"{self.url}/_aurora_kit/{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def info(self) -> dict[str, Any]:
        """Endpoints, CA bundle, the ``aws.endpoint_overrides`` to use, clusters and job errors."""
        return dict(self._request("GET", "info"))

    def calls(self) -> list[dict[str, Any]]:
        """Every AWS call recorded since the last :meth:`reset_calls` (service, operation, flags; rds-db:connect)."""
        return list(self._request("GET", "calls")["calls"])

    def reset_calls(self) -> None:
        self._request("POST", "calls/reset")

    def inject_fault(self, operation: str, cluster_id: str, reason: str = "injected by the control API") -> None:
        """The next ``operation`` on ``cluster_id`` fails as it can on Aurora (FailoverDBCluster: event 0069)."""
        self._request("POST", "fault", {"operation": operation, "cluster_id": cluster_id, "reason": reason})
