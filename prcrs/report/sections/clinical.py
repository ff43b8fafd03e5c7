"""The clinical evaluation of the platform's models and the model card (`prcrs.report.clinical`,
`prcrs.report.model_card`)."""

from __future__ import annotations

from prcrs.report.clinical import clinical_section
from prcrs.report.model_card import model_card
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report


@section("clinical evaluation and model card", order=90, experiments=("table2", "table3", "clinical"),
         files=("clinical.md", "clinical_calibration.png", "clinical_decision_curves.png", "clinical_importance.png",
                "model_card.md"))
def write(report: Report, inputs: ReportInputs) -> None:
    headline = clinical_section(report, inputs.every, inputs.study("table2"), inputs.study("table3"),
                                inputs.covariates, seed=0)
    model_card(report, headline, inputs.cohort)
