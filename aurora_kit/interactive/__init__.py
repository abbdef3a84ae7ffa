"""The interactive DBA: runbooks run by hand in JupyterLab, with the same gates and the same audit record as
``aurora-kit run``.

When is a run interactive? When its kernel has a live notebook frontend and no runner: the kernel runs under
IPython, neither ``aurora-kit run`` (``$AURORA_KIT_RUN_ID``) nor the redacting papermill engine
(``$AURORA_KIT_REDACTION_KEY``) started it, and the cell being executed was sent by a frontend that names its
cells (JupyterLab and Notebook 7 send ``metadata.cellId`` with every execute request; papermill, nbclient and nbval
do not). ``$AURORA_KIT_INTERACTIVE=0`` forces headless, ``=1`` interactive (tests).

What changes then (and only then):

- :mod:`.gate` — each destructive step's confirmation (:func:`aurora_kit.steps.common.confirm`) is a widget: the
  plan of this step's mutating calls, the cluster id to type for a teardown, Confirm / Cancel. The cell waits for
  the click (:mod:`.kernel` explains how); Cancel or no click in time stops the step with one line.
- :mod:`.progress` — a long wait shows a progress widget (:func:`aurora_kit.polling.wait_for`).
- :mod:`.form` — ``wf.parameters_form(...)`` edits the runbook's parameters in a form validated by the model.
- :mod:`.session` / :mod:`.recorder` / :mod:`.record` — the run is recorded from the kernel and sealed into the
  audit folder like a headless run, when its last cell ran, when a cell fails or is interrupted, or when the
  kernel shuts down.

Every widget is displayed together with a static rendering of what it shows (``text/plain`` + ``text/html`` in the
same display output, updated when the widget settles), so the record — and a notebook opened without a kernel —
reads well without widgets.
"""

from __future__ import annotations
