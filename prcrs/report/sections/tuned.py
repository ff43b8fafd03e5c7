"""The tuned comparison: every family at one budget (`prcrs.report.tuned`)."""

from __future__ import annotations

from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report
from prcrs.report.tuned import searches, tuned_section


@section("tuned", order=85, experiments=("tuned",), files=("tuned.md",))
def write(report: Report, inputs: ReportInputs) -> None:
    tuned_section(report, searches())
