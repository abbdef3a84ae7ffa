"""(in progress)"""

from __future__ import annotations

from typing import Any

from aurora_kit.errors import UnsupportedOperationError


def __getattr__(name: str) -> Any:
    def _missing(*args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOperationError(f"local backend: parameters.{name} is not implemented yet")

    return _missing
