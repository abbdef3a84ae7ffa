"""A widget and its static rendering in one display output.

JupyterLab renders the richest mimetype it can: the widget view when the widget manager is there; a record, an
HTML export, nbval or a notebook reopened without its kernel render the ``text/html`` / ``text/plain`` of the same
output. :func:`show` displays both under a display id; :func:`settle` replaces the static part (and keeps the
widget) once the widget shows its final state. The sealed record drops the widget view (:data:`WIDGET_VIEW_MIME`):
it is a static document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def bundle(widget: Any, text: str, html: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"text/plain": text, "text/html": html, **(extra or {})}
    if widget is not None:
        data[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
    return data


def show(widget: Any, text: str, html: str, extra: Mapping[str, Any] | None = None) -> Any:
    """Display ``widget`` with its static rendering; returns the handle :func:`settle` updates."""
    from IPython.display import display

    return display(bundle(widget, text, html, extra), raw=True, display_id=True)


def settle(handle: Any, widget: Any, text: str, html: str, extra: Mapping[str, Any] | None = None) -> None:
    """Replace the static rendering of a displayed widget (the widget itself stays)."""
    handle.update(bundle(widget, text, html, extra), raw=True)
