"""The parameters form: a runbook's parameters edited in JupyterLab, checked by the same model as every run.

``wf.parameters_form("06-failover", globals())`` — the cell after the ``parameters`` cell — shows, in JupyterLab,
one field per parameter of the runbook's own sections (:data:`aurora_kit.params.RUNBOOK_SECTIONS`; 01, which has
none, gets the cluster's shape) plus ``cluster_id`` and ``dry_run``, filled from the parameters cell:

- a field's text is typed exactly as ``aurora-kit run -p section.key=value`` types it
  (:func:`aurora_kit.params.load.apply_override`: strings stay text, other values are YAML, ``null`` or an empty
  field is None where allowed); a check box for a boolean, a list for a choice;
- every change is validated at once by the model (:func:`aurora_kit.params.for_runbook`, the rules included), and
  the message appears next to the field it names;
- **Apply** (enabled only when everything is valid) writes the values into the notebook's namespace: the opening
  cell below then validates and uses them, and the run's record lists them as changed parameters.

The form does not wait: Run All goes on with the parameters cell's values. Headless (papermill, nbval) it shows
nothing. Its display output carries the static table of the values (and, once applied, what changed).
"""

from __future__ import annotations

import html
import json
import typing
from collections.abc import Mapping, MutableMapping
from typing import Any

from aurora_kit.interactive import kernel, static

#: the common keys the form offers besides the runbook's sections
COMMON = ("cluster_id", "dry_run")
#: 01 has no section: it offers the cluster's shape
SHAPE = (
    "readers",
    "instance_class",
    "engine_version",
    "backup_retention_period",
    "preferred_backup_window",
    "deletion_protection",
    "iam_auth",
)
_RED, _MUTED = "#cf222e", "#57606a"


def fields_of(runbook: str) -> list[tuple[str, Any]]:
    """``(key, annotation)`` of every field the form shows: ``cluster_id``, ``failover.mode``..."""
    from pydantic import BaseModel

    from aurora_kit.params import RUNBOOK_SECTIONS, RunbookParameters

    model = RunbookParameters.model_fields
    sections = RUNBOOK_SECTIONS.get(runbook, ())
    out = [(k, model[k].annotation) for k in (*COMMON, *(() if sections else SHAPE))]
    for section in sections:
        inner = [a for a in typing.get_args(model[section].annotation) if isinstance(a, type)]
        cls = next(a for a in inner if issubclass(a, BaseModel))
        out += [(f"{section}.{k}", f.annotation) for k, f in cls.model_fields.items()]
    return out


def _get(values: Mapping[str, Any], key: str) -> Any:
    cur: Any = values
    for part in key.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    return cur


def as_text(value: Any) -> str:
    """A value as the form's text field shows it (what ``-p key=value`` would read back)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, default=str)


def check(runbook: str, values: Mapping[str, Any], texts: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameters with the form's values typed in, and the messages by field (``""`` for the model as a
    whole) — empty when they are valid."""
    from aurora_kit.errors import InvalidParameterError
    from aurora_kit.params import for_runbook
    from aurora_kit.params.load import apply_override

    data: dict[str, Any] = dict(values)
    errors: dict[str, str] = {}
    for key, raw in texts.items():
        text = as_text(raw) if isinstance(raw, bool) else str(raw)
        try:
            data = apply_override(data, f"{key}={text if text.strip() else 'null'}")
        except InvalidParameterError as exc:
            errors[key] = exc.reason
    if not errors:
        try:
            data = {**data, **for_runbook(runbook, data).injected(runbook)}  # typed by the model: 30 -> 30.0
        except InvalidParameterError as exc:
            # a nested key (scale.serverless.min_capacity) belongs to the field that holds it (scale.serverless)
            field = next((k for k in texts if exc.field == k or str(exc.field).startswith(k + ".")), "")
            inner = str(exc.field)[len(field) + 1 :] if field and exc.field != field else ""
            errors[field] = (f"{inner}: " if inner else "") + exc.reason if field else str(exc.message)
    return data, errors


def _table(rows: list[tuple[str, str, str]]) -> tuple[str, str]:
    text = "\n".join(f"  {k} = {v}{('   # ' + e) if e else ''}" for k, v, e in rows)
    body = "".join(
        f"<tr><td style='padding:1px 12px 1px 0;color:{_MUTED}'>{html.escape(k)}</td>"
        f"<td style='padding:1px 12px 1px 0;font-family:monospace'>{html.escape(v)}</td>"
        f"<td style='color:{_RED}'>{html.escape(e)}</td></tr>"
        for k, v, e in rows
    )
    return text, f"<table style='border-collapse:collapse;font-size:13px'>{body}</table>"


def show(runbook: str, namespace: MutableMapping[str, Any]) -> None:
    """The form (module docstring); nothing outside JupyterLab."""
    if not (kernel.widgets_available() and kernel.frontend_is_live()):
        return
    import ipywidgets as w

    from aurora_kit.params import RunbookParameters

    values = {k: namespace[k] for k in RunbookParameters.model_fields if k in namespace}
    inputs: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    rows: list[Any] = []
    for key, annotation in fields_of(runbook):
        current = _get(values, key)
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
        if annotation is bool:
            widget: Any = w.Checkbox(value=bool(current), indent=False)
        elif choices:
            widget = w.Dropdown(options=list(choices), value=current if current in choices else choices[0])
        else:
            widget = w.Text(value=as_text(current), placeholder="null", layout=w.Layout(width="320px"))
        inputs[key], messages[key] = widget, w.HTML()
        label = w.HTML(f"<code>{html.escape(key)}</code>", layout=w.Layout(width="260px"))
        rows.append(w.HBox([label, widget, messages[key]]))
    overall = w.HTML()
    apply = w.Button(description="Apply", button_style="primary", icon="check")
    box = w.VBox(
        [
            w.HTML(
                f"<b>Parameters of {html.escape(runbook)}</b> — checked as you type; Apply, then run the cells below"
            ),
            *rows,
            w.HBox([apply, overall]),
        ],
        layout=w.Layout(border="1px solid #d0d7de", padding="6px 12px", width="fit-content"),
    )
    box.add_class("aurora-kit-parameters-form")

    def current_rows(errors: Mapping[str, str]) -> list[tuple[str, str, str]]:
        return [(k, as_text(inputs[k].value), errors.get(k, "")) for k in inputs]

    def refresh(_: Any = None) -> tuple[dict[str, Any], dict[str, str]]:
        data, errors = check(runbook, values, {k: v.value for k, v in inputs.items()})
        for key, message in messages.items():
            message.value = f"<span style='color:{_RED}'>{html.escape(errors.get(key, ''))}</span>"
        overall.value = f"<span style='color:{_RED}'>{html.escape(errors.get('', ''))}</span>"
        apply.disabled = bool(errors)
        return data, errors

    text, body = _table(current_rows({}))
    handle = static.show(box, f"parameters form of {runbook}:\n{text}", body)

    def on_apply(_: Any) -> None:
        data, errors = refresh()
        if errors:
            return
        changed = [f"{k} = {as_text(_get(data, k))}" for k in inputs if _get(data, k) != _get(values, k)]
        for top in {k.split(".")[0] for k in inputs}:
            namespace[top] = data[top]
            values[top] = data[top]
        done = "applied: " + ("; ".join(changed) or "nothing changed") + " — now run the opening cell below"
        overall.value = f"<span style='color:#1a7f37'>{html.escape(done)}</span>"
        text, body = _table(current_rows({}))
        static.settle(handle, box, f"parameters form of {runbook} ({done}):\n{text}", body + html.escape(done))

    for widget in inputs.values():
        widget.observe(refresh, names="value")
    apply.on_click(on_apply)
    refresh()
