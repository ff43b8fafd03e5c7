"""reports/model_card.md: the platform's models as a model card (Mitchell et al. 2019) with a
TRIPOD+AI checklist (Collins et al., BMJ 2024) whose every item points to where it is covered, or
says why it does not apply. Numbers come from the logged runs (`prcrs.report.clinical`)."""

from __future__ import annotations

import csv
from pathlib import Path

from prcrs.clinical import subgroups
from prcrs.clinical.conformal import BAND_CONFIDENCE
from prcrs.data.cohort import Cohort
from prcrs.report.clinical import span
from prcrs.report.tables import Report, ci_cell, md_table

TRIPOD_AI = Path(__file__).with_name("tripod_ai.csv")  # item, topic, where it is covered or why not applicable


PERFORMANCE_NOTE = ("AUROC, AUPRC, Brier: mean over folds with 95 % t interval. The rest: pooled out-of-fold, 95 % "
                    "patient bootstrap (reports/clinical.md, which also holds calibration, decision curves against "
                    "treat-all and the bedside scores, and subgroups).")


def _checklist() -> list[list[str]]:
    """The TRIPOD+AI checklist rows (`TRIPOD_AI`): item, topic, where the card covers it."""
    with TRIPOD_AI.open(newline="") as handle:
        return [row for row in csv.reader(handle)][1:]


def _cohort_facts(cohort: Cohort) -> str:
    frame = cohort.frame
    severe_patients = int(frame.groupby("patient")["grade"].max().ge(3).sum())
    covariates = subgroups.patient_covariates(frame)
    young = int((covariates["age"] < subgroups.YOUNG_BELOW).sum())
    return (f"{cohort.data_source} data, content id {cohort.content_id}: {cohort.n_patients} patients, {len(frame)} "
            f"patient-days, {int((frame['grade'] >= 3).sum())} severe days (grade ≥ 3) in {severe_patients} "
            f"patients; {young} patients aged under {subgroups.YOUNG_BELOW}, "
            f"{int((covariates['female'] == 1).sum())} female.")


def model_card(report: Report, headline: dict, cohort: Cohort) -> None:
    """Write reports/model_card.md from the clinical section's `headline` (per horizon: the
    platform's run, net benefit and warning time with CIs) and the report's `cohort`."""
    if not headline:
        return
    perf, models = [], []
    for h, entry in headline.items():
        run, nb, w = entry["run"], entry["net_benefit"], entry["warning"]
        models.append([h, run["model"], run.get("history", "none"), f"`{run['run_id']}`",
                       f"conf/model/{run['model']}.yaml", run.get("study", "")])

        perf.append([h, ci_cell(run, "auroc"), ci_cell(run, "auprc"), ci_cell(run, "brier"),
                     span(*nb[0.10], 4) if 0.10 in nb else "–",
                     span(*w["warned_share"], 2) if w else "–", span(*w["median_warning_days"], 1) if w else "–",
                     span(*w["false_alarms_per_patient_week"], 2) if w else "–"])
    groups = list(subgroups.subgroup_patients(subgroups.patient_covariates(cohort.frame)))
    text = ("# Model card: prcrs platform models\n\n"
            "## Intended use\n\nDecision support for clinicians caring for patients after CAR-T cell therapy: the "
            "risk that cytokine release syndrome becomes severe (grade ≥ 3) on the same day or 1–3 days ahead, "
            "from that day's routine labs and cytokines (and, for history models, earlier days). It is meant to "
            "prompt closer monitoring or earlier treatment; it is not a diagnosis, and it has not been validated "
            "outside the centre whose data trained it. Users: clinician-researchers; not patients.\n\n"
            f"## Data\n\n{_cohort_facts(cohort)} One centre, as published with Wei et al. (BMC Bioinformatics "
            "2024); no dates. Missing cells of the published sheet were filled with the median of the same CRS "
            "grade (a label leak): the honest protocol sets every such fill value back to missing "
            "(reports/audit.md).\n\n"
            "## Outcome and inputs\n\nOutcome: CRS grade ≥ 3 on day t + horizon (grading as recorded in the "
            "sheet). Inputs: the 42 lab factors of day t in four groups (prcrs/schema.py, with units and "
            "plausible ranges); the platform routes a day to the first factor combination whose groups are "
            "measured.\n\n"
            "## Models\n\n" + md_table(["horizon", "model", "history", "MLflow CV run", "config", "study"], models)
            + "\n\n## Validation design\n\nHonest protocol: 5-fold cross-validation grouped by patient (no patient "
              "on both sides); fill values masked; imputation, scaling, early stopping, the F1 threshold and the "
              "alarm threshold (90 % specificity) fitted on training folds and their inner patient-grouped "
              "validation split only; probability conversions cross-fitted by patient on out-of-fold predictions. "
              "The paper's own protocol (row split, leak kept) is reported beside it in reports/ only to "
              "reproduce its numbers.\n\n"
            "## Performance (held-out patients)\n\n"
            + md_table(["horizon", "AUROC", "AUPRC", "Brier (raw)", "net benefit at 10 % (95 % CI)",
                        "warned ≥ 1 day ahead", "median warning (days)", "false alarms / patient-week"], perf)
            + f"\n\n{PERFORMANCE_NOTE}\n\n"
            "## Calibration, subgroups, uncertainty, explanations\n\n"
            "- Calibration: the platform serves the better of isotonic and Platt (cross-fitted Brier); CITL, slope "
            "and ECE per conversion and reliability diagrams in reports/clinical.md.\n"
            f"- Subgroups: {', '.join(groups)}; groups with fewer than {subgroups.MIN_SEVERE_PATIENTS} severe "
            "patients are flagged there.\n"
            f"- Uncertainty: each prediction says whether severe CRS is ruled out at {BAND_CONFIDENCE:.0%} (a "
            "split-conformal p-value of the severe class, and a risk below the base rate), fitted on out-of-fold "
            "predictions of held-out patients; the calibrated risk is never more extreme than the out-of-fold "
            "share of severe days among the 5 % highest- or lowest-scoring days. The band's coverage is checked "
            "on held-out patients in reports/clinical.md and tests/test_clinical.py.\n"
            "- Explanations: each prediction lists the factors that moved its calibrated probability against the "
            "training rows' median day (factor Shapley values); global importance in reports/clinical.md.\n\n"
            "## Known limits\n\n"
            "- One centre, 202 patients, few severe patients: wide intervals, no external validation.\n"
            "- The sheet was label-imputed; masking removes the fill values but also real values equal to them, "
            "and the missingness pattern itself may differ from a prospective setting.\n"
            "- Grading system, timing of draws within the day and treatments given (tocilizumab, steroids) are not "
            "recorded; treatment may have prevented severe CRS in some patients.\n"
            "- Probabilities are calibrated to this cohort's prevalence; another centre needs recalibration.\n"
            "- History models need the same patient's earlier days, matched by day since infusion.\n\n"
            "## TRIPOD+AI checklist\n\n" + md_table(["item", "topic", "where"], _checklist()))
    report.write("model_card.md", text + "\n")
