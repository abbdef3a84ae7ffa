"""The interactive mode's pure parts: the confirmation trace (headless too), the one-line errors, the record's
notebook built from executions, parameters changed against the runbook's defaults, the parameters form's checks,
the progress widget's static line, and the names the interactive detection relies on."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aurora_kit import confirmation, params, redaction, runbook
from aurora_kit.errors import ConfirmationDeclinedError, ConfirmationRequiredError, RunSealedError
from aurora_kit.interactive import form, kernel, record
from aurora_kit.interactive.recorder import Execution
from aurora_kit.interactive.static import WIDGET_VIEW_MIME
from aurora_kit.runbook import Run
from aurora_kit.steps import teardown

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


def _run(*overrides: str, backend: Any = None) -> Run:
    p = params.load(ROOT / "parameters" / "local.yaml", list(overrides))
    return Run("99-teardown", p, "run-1", "ana", "db1", T0, _backend=backend)


class _Deleting:
    """Just enough backend for the teardown step: records the delete it is asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def delete_cluster(self, cluster_id: str, **kwargs: Any) -> None:
        self.calls.append(cluster_id)


def test_a_headless_confirmation_leaves_its_trace_and_a_refusal_leaves_none(capsys: pytest.CaptureFixture[str]) -> None:
    backend = _Deleting()
    cluster = type(
        "C", (), {"db_cluster_identifier": "ak-local", "deletion_protection": False, "db_cluster_members": []}
    )()
    with pytest.raises(ConfirmationRequiredError):
        teardown.teardown(_run(backend=backend), cluster)  # type: ignore[arg-type]
    assert backend.calls == []
    assert "CONFIRMED" not in capsys.readouterr().out
    typed = _run("confirm=true", "teardown.confirm_cluster_id=ak-local", backend=backend)
    teardown.teardown(typed, cluster)  # type: ignore[arg-type]
    assert backend.calls == ["ak-local"]
    line = capsys.readouterr().out
    assert line.startswith("CONFIRMED deleting the cluster on 'ak-local' by ana@db1 at ")
    assert "(parameter confirm: true and teardown.confirm_cluster_id; cluster typed: ak-local)" in line


def test_confirmations_are_read_back_from_a_notebook_in_order() -> None:
    first = confirmation.Confirmation("planned failover", "ak-local", confirmation.CONFIRMED, "button", "ana@db1")
    second = confirmation.Confirmation("failback", "ak-local", confirmation.DECLINED, "button", "ana@db1", plan=[])
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "x",
            outputs=[
                nbformat.v4.new_output("display_data", {confirmation.CONFIRMATION_MIME: c.to_json(), "text/plain": ""})
            ],
        )
        for c in (first, second)
    ]
    found = confirmation.confirmations_in(nb)
    assert [c["decision"] for c in found] == ["confirmed", "declined"]
    assert confirmation.Confirmation.from_json(found[1]) == second
    assert "plan: 0 mutating call(s)" in second.line()


def test_expected_stops_show_as_one_line_in_a_notebook() -> None:
    for error in (
        ConfirmationRequiredError("failover on 'ak-local' needs confirm: true"),
        ConfirmationDeclinedError("deleting the cluster on 'ak-local' declined"),
        RunSealedError("run r1 has ended"),
    ):
        lines = error._render_traceback_()
        assert len(lines) == 1
        assert type(error).__name__ in lines[0]
        assert str(error) in lines[0]
    assert "nothing was changed" in str(ConfirmationDeclinedError("x declined"))


def test_a_sealed_run_refuses_its_backend() -> None:
    run = _run(backend=_Deleting())
    run.sealed = "/audit/r1"
    with pytest.raises(RunSealedError, match="/audit/r1"):
        _ = run.backend


def test_the_runner_environment_names_are_the_ones_the_runner_sets() -> None:
    assert kernel.RUNNER_ENV == (runbook.RUN_ID_ENV, redaction.KEY_ENV)
    assert not kernel.frontend_is_live()  # no kernel here


def _source() -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("cluster_id = 'ak-local'\nconfirm = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("run = start()"),
        nbformat.v4.new_markdown_cell("## step"),
        nbformat.v4.new_code_cell("step(run)"),
        nbformat.v4.new_markdown_cell("## summary"),
        nbformat.v4.new_code_cell("summary(run)"),
    ]
    return nb


def _execution(n: int, source: str, cell_id: str | None, outputs: list[Any] | None = None) -> Execution:
    return Execution(f"m{n}", cell_id, source, n, T0, T0, outputs or [])


def test_the_record_places_executions_among_the_runbook_cells() -> None:
    source = _source()
    ids = [c.id for c in source.cells]
    widget = nbformat.v4.new_output(
        "display_data", {WIDGET_VIEW_MIME: {"model_id": "m"}, "text/plain": "static", "text/html": "<b>static</b>"}
    )
    executions = [
        # before the session: from the input history, no cell id; the parameters cell as edited
        _execution(1, "cluster_id = 'ak-local'\nconfirm = False\ncluster_id = 'other'", None),
        _execution(2, "run = start()", ids[2]),
        _execution(3, "step(run)", ids[4], [widget]),
        _execution(4, "step(run)", ids[4]),  # run twice: both executions are in the record
        _execution(5, "scratch()", "not-in-the-runbook"),
    ]
    nb = record.build_notebook(executions, source)
    kinds = [(c.cell_type, c.source.splitlines()[-1] if c.source else "") for c in nb.cells]
    assert kinds == [
        ("markdown", "# title"),
        ("code", "cluster_id = 'other'"),
        ("code", "run = start()"),
        ("markdown", "## step"),
        ("code", "step(run)"),
        ("code", "step(run)"),
        ("code", "scratch()"),
        ("markdown", "## summary"),
        ("code", "summary(run)"),
    ]
    assert nb.cells[1].metadata.tags == ["parameters"]
    assert nb.cells[4].outputs[0].data == {"text/plain": "static", "text/html": "<b>static</b>"}  # no widget view
    assert nb.cells[-1].metadata.tags == [record.NOT_RUN_TAG]
    assert not nb.cells[-1].outputs
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"][:5] == [1, 2, 3, 4, 5]
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    nbformat.validate(nb)


def test_overrides_name_the_parameters_that_differ_from_the_runbook_defaults() -> None:
    source = nbformat.v4.new_notebook()
    source.cells = [
        nbformat.v4.new_code_cell(
            "cluster_id = 'ak-local'\nfailover = {'mode': 'planned', 'max_rto_s': 15.0}",
            metadata={"tags": ["parameters"]},
        )
    ]
    used = {"cluster_id": "ak-local", "failover": {"mode": "crash", "max_rto_s": 15.0}}
    assert record.overrides(used, source) == ["failover.mode=crash"]
    assert record.overrides(used, None) == []


def _values(runbook_name: str) -> dict[str, Any]:
    return params.load(ROOT / "parameters" / "local.yaml").injected(runbook_name)


def test_the_parameters_form_offers_the_runbook_sections_and_checks_like_the_cli() -> None:
    keys = [k for k, _ in form.fields_of("06-failover")]
    assert keys[:2] == ["cluster_id", "dry_run"]
    assert "failover.mode" in keys
    assert "probe.interval_s" in keys
    assert "teardown.final_snapshot_id" not in keys
    assert "readers" in [k for k, _ in form.fields_of("01-create-cluster")]
    values = _values("06-failover")
    data, errors = form.check("06-failover", values, {"failover.max_rto_s": "30", "failover.mode": "crash"})
    assert errors == {}
    assert data["failover"]["max_rto_s"] == 30.0
    _, errors = form.check("06-failover", values, {"failover.max_rto_s": "-1"})
    assert list(errors) == ["failover.max_rto_s"]
    assert "greater than 0" in errors["failover.max_rto_s"]
    _, errors = form.check("06-failover", values, {"cluster_id": "Not_an_id!"})
    assert list(errors) == ["cluster_id"]
    # a rule over two fields is named where the model names it (here: the section)
    _, errors = form.check(
        "99-teardown", _values("99-teardown"), {"teardown.skip_final_snapshot": False, "teardown.final_snapshot_id": ""}
    )
    assert errors
    assert "exactly one of final_snapshot_id or skip_final_snapshot" in next(iter(errors.values()))


def test_the_parameters_form_offers_08_and_09_and_names_the_field_holding_a_nested_key() -> None:
    assert {"scale.instance_class_to", "scale.serverless", "scale.autoscaling", "probe.interval_s"} <= {
        k for k, _ in form.fields_of("08-scale")
    }
    assert {"proxy.proxy_name", "proxy.max_connections_percent", "proxy.failover_modes"} <= {
        k for k, _ in form.fields_of("09-proxy")
    }
    values = _values("08-scale")
    assert form.check("08-scale", values, {"scale.add_readers": "2"})[1] == {}
    _, errors = form.check(
        "08-scale", values, {"scale.serverless": '{"min_capacity": 0.7, "max_capacity": 4, "instance_id": "added"}'}
    )
    assert list(errors) == ["scale.serverless"]
    assert "min_capacity: " in errors["scale.serverless"]
    assert "0.5" in errors["scale.serverless"]
    _, errors = form.check("09-proxy", _values("09-proxy"), {"proxy.max_connections_percent": "0"})
    assert list(errors) == ["proxy.max_connections_percent"]


def test_a_progress_widget_static_line_says_how_the_wait_ended() -> None:
    from aurora_kit.interactive.progress import static_html

    assert "✓" in static_html({"done": "done"}, "waited 2 s for x: available")
    assert "✗" in static_html({"done": "timed out"}, "timed out after 2 s for x: creating")
    assert "⏳" in static_html({"done": None}, "waiting for x")
