"""Write tests/data/botocore-floor.json: the request shapes, in the oldest botocore pyproject allows, of every AWS
operation the aws backend calls — so a fast test can check each call the backend makes against that botocore
(tests/test_aws_botocore_floor.py), without installing it.

    .venv/bin/python scripts/botocore_floor.py        # downloads the botocore wheel once (pip download)

Rerun it when pyproject's boto3 floor changes (the test says so when they disagree).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "botocore-floor.json"
MODELS = {
    "rds": "rds/2014-10-31",
    "secretsmanager": "secretsmanager/2017-10-17",
    "cloudwatch": "cloudwatch/2010-08-01",
    "application-autoscaling": "application-autoscaling/2016-02-06",
    "iam": "iam/2010-05-08",
}


def floor_version() -> str:
    """boto3>=A.B[.C] in pyproject → botocore A.B.C (boto3 and botocore share minor versions since 1.26)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("boto3"))
    parts = re.search(r">=\s*([\d.]+)", spec).group(1).split(".")  # type: ignore[union-attr]
    return ".".join([*parts, "0", "0"][:3])


def operations() -> dict[str, set[str]]:
    """Every (service, operation) the aws backend names in a call."""
    found: dict[str, set[str]] = {s: set() for s in MODELS}
    for path in (ROOT / "aurora_kit" / "backends" / "aws").glob("*.py"):
        text = path.read_text()
        for service, op in re.findall(r'_(?:call|pages)\(\s*(RDS|"[a-z-]+"),\s*"([A-Z][A-Za-z]+)"', text):
            found["rds" if service == "RDS" else service.strip('"')].add(op)
    return found


def _plain(value: object) -> object:
    """The model without its documentation (most of its size)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def closure(shapes: dict, name: str, out: dict) -> None:
    if name in out:
        return
    shape = _plain(shapes[name])
    assert isinstance(shape, dict)
    out[name] = shape
    for ref in [*(m["shape"] for m in shape.get("members", {}).values()), shape.get("member", {}).get("shape"),
                shape.get("key", {}).get("shape"), shape.get("value", {}).get("shape")]:  # fmt: skip
        if ref:
            closure(shapes, ref, out)


def main() -> int:
    version = floor_version()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"botocore=={version}", "-d", tmp],
                       check=True)  # fmt: skip
        wheel = zipfile.ZipFile(next(Path(tmp).glob("botocore-*.whl")))
        result: dict = {"botocore": version, "services": {}}
        for service, ops in operations().items():
            raw = wheel.read(f"botocore/data/{MODELS[service]}/service-2.json.gz")
            model = json.loads(gzip.decompress(raw))
            shapes: dict = {}
            kept = {}
            for op in sorted(ops):
                kept[op] = {k: v for k, v in model["operations"][op].items() if k in ("name", "http", "input")}
                if "input" in kept[op]:
                    closure(model["shapes"], kept[op]["input"]["shape"], shapes)
            result["services"][service] = {"metadata": model["metadata"], "operations": kept, "shapes": shapes}
    OUT.write_text(json.dumps(result, indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: botocore {version}, "
          + ", ".join(f"{s} {len(v['operations'])} operations" for s, v in result["services"].items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
