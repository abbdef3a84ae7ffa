"""One conversion to plain JSON types, for recorded results (:func:`aurora_kit.runbook.record_result`) and check
summaries (:meth:`aurora_kit.checks.result.CheckResult.to_json`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any


def jsonable(value: Any, *, strict: bool = True) -> Any:
    """``value`` as plain JSON types: datetimes/dates/times → ISO strings, RDS-shaped results ``as_rds()``,
    pydantic models ``model_dump(mode="json")``, other dataclasses ``asdict``, mappings → dicts with string keys,
    tuples/sets → lists, numpy scalars → Python numbers.

    Anything else raises TypeError when ``strict`` (a recorded result must be data, caught in the cell that
    records it), or becomes ``str(value)`` when not (display and diagnostics: better a string than no record).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if hasattr(value, "as_rds"):
        return jsonable(value.as_rds(), strict=strict)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), strict=strict)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, strict=strict) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item(), strict=strict)
    if strict:
        raise TypeError(f"cannot record a {type(value).__name__} as a result; pass numbers, strings, lists or dicts")
    return str(value)
