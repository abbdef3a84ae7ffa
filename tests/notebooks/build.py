"""Regenerate the runner's test notebooks: ``.venv/bin/python tests/notebooks/build.py``.

Their ``parameters`` cell comes from parameters/local.yaml (every top-level key), like a runbook's.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from aurora_kit.params import parameters_cell

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def notebook(
    title: str, cells: list[str], *, extra_params: str = "", runbook: str = "selftest"
) -> nbformat.NotebookNode:
    params = new_code_cell(parameters_cell(ROOT / "parameters" / "local.yaml") + extra_params)
    params.metadata["tags"] = ["parameters"]
    start = new_code_cell(
        f'import aurora_kit.runbook\n\nrun = aurora_kit.runbook.start("{runbook}", globals(), sections=())'
    )
    nb = new_notebook(
        cells=[new_markdown_cell(f"# {title}"), params, start, *(new_code_cell(c) for c in cells)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    return nb


NOTEBOOKS = {
    "passing": notebook(
        "A passing runbook",
        [
            'import aurora_kit\n\naurora_kit.record_result("answer", 42)',
            'aurora_kit.record_results({"cluster": cluster_id, "readers": readers, "answer": 43})',
            "from aurora_kit.checks.result import Findings\nfrom aurora_kit.steps.common import verify\n\n"
            'verify(Findings("the answer", {"answer": 43}, [], judged_against="answer = 43"))',
        ],
    ),
    "failing": notebook(
        "A failing runbook",
        [
            'print("before the failure")',
            'from aurora_kit.errors import VerificationError\n\nraise VerificationError("3 acknowledged commits lost")',
            'print("never runs")',
        ],
    ),
    "secret": notebook(
        "A runbook that leaks secrets (redaction test)",
        [
            "import os\nimport time\n\nimport aurora_kit\n\n"
            'runtime = os.environ["AK_TEST_VALUE"]  # stands for a password the backend generates\n'
            "aurora_kit.register_secret(runtime)",
            'print(f"connecting with {runtime}")\nprint(os.environ["PGPASSWORD"][:])\nprint("param:", db_password)',
            "import json\n\n"
            'v = json.loads(os.environ["AK_TEST_SHAPES"])  # secrets only the patterns can recognise\n'
            "print(f\"PGPASSWORD={v['pgpassword']} psql -h localhost\")\n"
            'print(json.dumps({"user": "app", "password": v["json"]}))\n'
            "print(f\"postgresql://app:{v['uri']}@localhost:5432/app\")\n"
            'print(v["access_key_id"], v["secret_access_key"])\n'
            "print(f\"db:5432/?Action=connect&DBUser=app&X-Amz-Security-Token={v['token']}&X-Amz-Signature={v['sig']}\")",
            "from IPython.display import display\n\n"
            'display({"text/plain": f"rich {runtime}", "text/html": f"<b>{runtime}</b>"}, raw=True)\n'
            'aurora_kit.record_result("connection", {"user": "app", "note": f"pw {runtime}"})',
            "import subprocess\n\n"  # a child process writes to the kernel's own stdout/stderr, not to the notebook
            "shell = f\"echo child {runtime}; echo PGPASSWORD={v['pgpassword']} >&2\"\n"
            'subprocess.run(["sh", "-c", shell], check=True)',
            "time.sleep(1.2)  # slow cell: papermill saves at its start",
            'raise RuntimeError(f"authentication failed for password {runtime}")',
        ],
        extra_params="db_password = None\n",
    ),
}

if __name__ == "__main__":
    for name, nb in NOTEBOOKS.items():
        nbformat.write(nb, str(HERE / f"{name}.ipynb"))
        print(f"wrote {HERE / name}.ipynb")
