"""Each runbook is a jupytext py:percent file paired with its .ipynb (the two cannot drift), thin, with the
metadata header a reviewer needs, safe local defaults and a recorded summary."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import pytest
import yaml

from aurora_kit import params

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = [ROOT / "runbooks" / name for name in params.RUNBOOKS]
HEADER_FIELDS = ("Intent", "Risk", "Blast radius", "Prerequisites", "Least-privilege IAM", "Rollback")


def _cells(nb: Any) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def _code(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _params_cell(nb: Any) -> Any:
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def test_the_runbooks_are_the_ordered_list() -> None:
    """The expected runbooks, not a glob: a tree without one fails here instead of skipping parametrized tests."""
    from aurora_kit import runner

    assert list(params.RUNBOOKS) == sorted(params.RUNBOOKS)
    assert sorted(p.stem for p in (ROOT / "runbooks").glob("*.ipynb")) == list(params.RUNBOOKS)
    assert runner.resolve_all() == [p.with_suffix(".ipynb") for p in RUNBOOKS]


@pytest.mark.parametrize("base", RUNBOOKS, ids=lambda p: p.name)
def test_ipynb_cells_equal_their_py_percent_twin(base: Path) -> None:
    py, ipynb = base.with_suffix(".py"), base.with_suffix(".ipynb")
    assert py.exists(), f"{py.name} missing: the .py twin is the reviewable source"
    assert ipynb.exists(), f"{ipynb.name} missing: generate it with jupytext --to ipynb"
    twin = jupytext.read(str(py))
    nb = nbformat.read(str(ipynb), as_version=4)
    assert _cells(nb) == _cells(twin), (
        f"{ipynb.name} differs from {py.name}; regenerate with `.venv/bin/python scripts/sync_runbooks.py`"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_the_pairing_check_catches_drift(tmp_path: Path) -> None:
    py = RUNBOOKS[0].with_suffix(".py")
    nb = nbformat.read(str(py.with_suffix(".ipynb")), as_version=4)
    _code(nb)[-1].source += "\nprint('edited in Jupyter only')"
    assert _cells(nb) != _cells(jupytext.read(str(py)))


@pytest.mark.parametrize("base", RUNBOOKS, ids=lambda p: p.name)
def test_header_carries_the_runbook_metadata(base: Path) -> None:
    nb = nbformat.read(str(base.with_suffix(".ipynb")), as_version=4)
    header = nb.cells[0]
    assert header.cell_type == "markdown"
    assert header.source.startswith(f"# {base.name[:2]} ·")
    missing = [f for f in HEADER_FIELDS if f"**{f}" not in header.source]
    assert not missing, f"{base.name}: header lacks {missing}"
    assert re.search(r"`rds:\w+`", header.source), "the IAM section names rds: actions"


@pytest.mark.parametrize("base", RUNBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_the_local_defaults(base: Path) -> None:
    """The keys this runbook receives — the common ones and its own sections, nothing else — with the values of
    parameters/local.yaml."""
    nb = nbformat.read(str(base.with_suffix(".ipynb")), as_version=4)
    tree = ast.parse(_params_cell(nb).source)
    values = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
    expected = params.load(ROOT / "parameters" / "local.yaml").injected(base.name)
    assert values == expected, "stale parameters cell: run `.venv/bin/python scripts/sync_runbooks.py`"
    others = set(params.SECTIONS) - set(params.RUNBOOK_SECTIONS[base.name])
    assert not others & set(values), "a runbook's parameters cell holds only its own sections"
    assert values["backend"] == "local"
    assert yaml.safe_load((ROOT / "parameters" / "local.yaml").read_text())["backend"] == "local"


@pytest.mark.parametrize("base", RUNBOOKS, ids=lambda p: p.name)
def test_cells_are_thin_and_let_errors_escape(base: Path) -> None:
    nb = nbformat.read(str(base.with_suffix(".ipynb")), as_version=4)
    for cell in _code(nb):
        if "parameters" in cell.metadata.get("tags", []):
            continue
        lines = [line for line in cell.source.splitlines() if line.strip()]
        assert 1 <= len(lines) <= 3, f"{base.name}: a cell of {len(lines)} lines:\n{cell.source}"
        tree = ast.parse(cell.source)
        kinds = {type(n).__name__ for n in ast.walk(tree)}
        assert not kinds & {"FunctionDef", "AsyncFunctionDef", "ClassDef", "Lambda"}, f"{base.name}: logic in a cell"
        assert not kinds & {"Try", "TryStar", "With", "For", "While"}, f"{base.name}: control flow in a cell"
        assert all(len(line) <= 120 for line in lines), f"{base.name}: line over 120 characters"


@pytest.mark.parametrize("base", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_starts_its_run_and_ends_with_a_recorded_summary(base: Path) -> None:
    nb = nbformat.read(str(base.with_suffix(".ipynb")), as_version=4)
    code = _code(nb)
    form = code[1].source.splitlines()  # the import, and the parameters form (JupyterLab; nothing headless)
    assert form[0].startswith("from aurora_kit.steps import "), form
    assert form[0].endswith(" as wf"), form
    assert form[-1].startswith(f'wf.parameters_form("{base.name}", globals())'), form
    opening = code[2].source.splitlines()
    assert opening == [f'run, dp = wf.start("{base.name}", globals())'], "one opening cell in every runbook"
    assert code[-1].source.startswith("run.record_all(")


@pytest.mark.parametrize("base", RUNBOOKS, ids=lambda p: p.name)
def test_the_iam_paragraph_is_generated_from_the_recorded_calls(base: Path) -> None:
    """The header's least-privilege line is what `aurora-kit iam-policy` derives from the runbook's recorded calls."""
    from aurora_kit import iam

    assert iam.header_paragraph(base.name) in base.with_suffix(".py").read_text(), (
        f"{base.name}: IAM paragraph out of step with aurora_kit/data/iam_calls.json; run scripts/sync_runbooks.py"
    )
