"""``RdsShaped``: dataclasses that render with RDS API names (``db_cluster_identifier`` → ``DBClusterIdentifier``).

Kept apart from :mod:`.base` so the result types of :mod:`.capacity` share it without an import circle.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any


def _pascal(name: str) -> str:
    special = {"db": "DB", "arn": "Arn", "id": "Id", "az": "AZ", "iam": "IAM", "kms": "Kms", "tls": "TLS"}
    return "".join(special.get(part, part.capitalize()) for part in name.split("_"))


class RdsShaped:
    """Mixin: ``as_rds()`` renders a dataclass with RDS API names (db_cluster_identifier → DBClusterIdentifier)."""

    def as_rds(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, RdsShaped):
                value = value.as_rds()
            elif isinstance(value, list):
                value = [v.as_rds() if isinstance(v, RdsShaped) else v for v in value]
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[_pascal(f.name)] = value
        return out
