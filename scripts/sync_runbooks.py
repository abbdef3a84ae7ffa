"""Keep the runbooks' pairs in step: ``.venv/bin/python scripts/sync_runbooks.py``.

1. rewrite the ``parameters`` cell of every ``runbooks/<name>.py`` from ``parameters/local.yaml`` (every top-level
   key; the sections other runbooks use are ``None``), via :func:`aurora_kit.params.parameters_cell`;
2. rewrite the header's "Least-privilege IAM" paragraph from the AWS calls the runbook makes (recorded on the
   emulated AWS, ``aurora_kit/data/iam_calls.json``), via :func:`aurora_kit.iam.header_paragraph`;
3. regenerate each ``runbooks/<name>.ipynb`` from its ``.py`` twin with ``jupytext --update`` (cell ids kept, so
   diffs stay small; outputs are never written — committed notebooks stay clean).

Run it after editing a ``.py`` twin or ``parameters/local.yaml``; ``tests/test_runbooks_pairing.py`` fails until
the pair agrees.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from aurora_kit.iam import header_paragraph
from aurora_kit.params import RUNBOOKS, parameters_cell

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r'(# %% tags=\["parameters"\]\n)(.*?)(\n\n# %%)', re.DOTALL)
IAM = re.compile(r"^# \*\*Least-privilege IAM \(aws backend\)\*\*.*?(?=\n#\n)", re.DOTALL | re.MULTILINE)


def main() -> int:
    jupytext = Path(sys.executable).with_name("jupytext")
    for name in RUNBOOKS:
        py = ROOT / "runbooks" / f"{name}.py"
        text = py.read_text()
        cell = parameters_cell(ROOT / "parameters" / "local.yaml", name).rstrip("\n")
        new, count = CELL.subn(lambda m, cell=cell: m.group(1) + cell + m.group(3), text, count=1)
        if count != 1:
            print(f"{py.name}: no parameters cell found", file=sys.stderr)
            return 1
        new, count = IAM.subn(lambda m, name=name: header_paragraph(name), new, count=1)
        if count != 1:
            print(f"{py.name}: no 'Least-privilege IAM' paragraph found", file=sys.stderr)
            return 1
        if new != text:
            py.write_text(new)
            print(f"{py.name}: parameters cell / IAM paragraph updated")
        ipynb = py.with_suffix(".ipynb")
        update = ["--update"] if ipynb.exists() else []
        subprocess.run([str(jupytext), "--quiet", *update, "--to", "ipynb", str(py)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
