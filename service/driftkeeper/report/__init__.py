"""``driftkeeper report``: the drift report as an HTML page with figures, for people.

A JSON drift report answers "did it drift?"; this page shows where and how much: reference
vs current distributions per feature, the model's residuals then and now, and the verdicts.
"""

from .build import ServiceError, model_summary, report_from_csv, report_from_service
from .html import render_report

__all__ = [
    "ServiceError",
    "model_summary",
    "render_report",
    "report_from_csv",
    "report_from_service",
]
