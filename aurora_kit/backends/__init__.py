"""Backend factory: ``get_backend("local" | "aws", **options)`` (like Patroni's ``get_dcs``).

Backend classes are imported lazily, so ``local`` needs no boto3 and ``aws`` no PostgreSQL binaries. What differs
between them is declared on each class (``traits``, ``check_parameters``, ``options_from``): code outside this
package asks the backend and never compares its name.
"""

from __future__ import annotations

from typing import Any

from aurora_kit.backends.base import BackendSettings, ClusterBackend
from aurora_kit.errors import InvalidParameterError

BACKENDS = ("local", "aws")


def backend_class(name: str) -> type[ClusterBackend]:
    """The class behind ``backend: <name>``."""
    if name == "local":
        from aurora_kit.backends.local import LocalBackend

        return LocalBackend
    if name == "aws":
        from aurora_kit.backends.aws import AwsBackend

        return AwsBackend
    raise InvalidParameterError("backend", name, f"must be one of {', '.join(BACKENDS)}")


def get_backend(name: str, **options: Any) -> ClusterBackend:
    """Build the backend named by the ``backend:`` parameter."""
    return backend_class(name)(**options)


def from_parameters(params: BackendSettings) -> ClusterBackend:
    """The backend a runbook's parameters describe (its class turns the parameters into its options)."""
    cls = backend_class(params.backend)
    return cls(**cls.options_from(params))


__all__ = ["BACKENDS", "ClusterBackend", "backend_class", "from_parameters", "get_backend"]
