"""The history study: one day against a patient's past (`prcrs.report.history`)."""

from __future__ import annotations

from prcrs.report.history import history_section
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report


@section("history", order=80, experiments=("history", "history_networks"), files=("history.md", "history.png"))
def write(report: Report, inputs: ReportInputs) -> None:
    history_section(report, inputs.study("history"))
