"""The ``local`` backend: Aurora-shaped clusters of real PostgreSQL 16 + pgvector processes on loopback."""

from aurora_kit.backends.local.backend import LocalBackend, default_root

__all__ = ["LocalBackend", "default_root"]
