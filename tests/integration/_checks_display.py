"""Shared assertion for the checks' integration tests: a result must render for a notebook and an audit record."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def assert_displays(report: Any) -> dict[str, Any]:
    """HTML with a verdict and a table, plain-JSON summary (no ``default=``), text form, and the plot if any."""
    html = report._repr_html_()
    assert "<table>" in html
    assert ("PASS" in html) == report.ok
    summary = report.summary()
    json.dumps(summary)
    assert report.title in str(report)
    if hasattr(report, "plot"):
        report.plot()
        plt.close("all")
    return summary
