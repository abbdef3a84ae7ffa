"""Backend factory: ``get_backend("local" | "aws", **options)`` (like Patroni's ``get_dcs``)."""

from __future__ import annotations

from typing import Any

from aurora_kit.backends.base import ClusterBackend
from aurora_kit.errors import InvalidParameterError

BACKENDS = ("local", "aws")


def get_backend(name: str, **options: Any) -> ClusterBackend:
    """Build the backend named by the ``backend:`` parameter. Imports lazily so ``local`` needs no boto3 setup."""
    if name == "local":
        from aurora_kit.backends.local import LocalBackend

        return LocalBackend(**options)
    if name == "aws":
        from aurora_kit.backends.aws import AwsBackend

        return AwsBackend(**options)
    raise InvalidParameterError("backend", name, f"must be one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "ClusterBackend", "get_backend"]
