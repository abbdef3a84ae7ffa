"""Committed runbooks are clean (STYLE 2): no outputs, no execution counts, one tagged parameters cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from aurora_kit.params import RUNBOOKS

ROOT = Path(__file__).resolve().parents[1]
# the expected ten, not a glob: a tree without its runbooks fails the parametrized tests instead of skipping them
NOTEBOOKS = [ROOT / "runbooks" / f"{name}.ipynb" for name in RUNBOOKS]


def test_the_ten_runbooks_exist() -> None:
    assert len(NOTEBOOKS) == 10
    assert sorted(p.stem for p in (ROOT / "runbooks").glob("*.ipynb")) == sorted(RUNBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runbook_has_no_outputs_nor_execution_counts(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing"
    assert "papermill" not in nb.metadata, f"{path.name} is an executed copy (papermill metadata)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runbook_has_exactly_one_parameters_cell(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert tagged[0].cell_type == "code"
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_the_clean_check_catches_a_dirty_notebook(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.cells[0].execution_count = 1
    path = tmp_path / "dirty.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(AssertionError, match="execution counts"):
        test_runbook_has_no_outputs_nor_execution_counts(path)
