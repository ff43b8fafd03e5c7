"""What a clinician asks of one cross-validated model, from its out-of-fold predictions: are the
probabilities right, does acting on them beat treating everyone, how many days of warning at
what false-alarm cost, and does it hold in each subgroup. `clinical_metrics` gives them as the
metrics every parent run logs (prefix `oof_`: pooled over the out-of-fold rows of held-out
patients), point estimates; `prcrs report` adds patient-bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prcrs.clinical import alarms, calibration, decision, subgroups

MIN_PATIENTS = 10  # fewer held-out patients than this: no pooled clinical metric


def calibrated_oof(oof: pd.DataFrame, seed: int = 0) -> tuple[str, dict[str, np.ndarray]]:
    """The finite out-of-fold rows' probabilities after each conversion, cross-fitted by patient
    (`calibration.choose_calibrator`), with 'raw model output' first; and the name of the one the
    platform would serve."""
    y, p, g = oof["label"].to_numpy(int), oof["probability"].to_numpy(float), oof["patient"].to_numpy()
    name, converted, _ = calibration.choose_calibrator(p, y, g, seed)
    return name, {"raw model output": p, **converted}


def clinical_metrics(oof: pd.DataFrame, covariates: pd.DataFrame | None = None,
                     seed: int = 0) -> dict[str, float]:
    """Calibration of the raw output and of each conversion (`oof_calibration_<conversion>_<citl|
    slope|ece|brier>`), net benefit at `decision.REPORTED` thresholds of the served calibrated
    probability and of treat-all (`oof_net_benefit_t10`, `oof_net_benefit_treat_all_t10`),
    warning time at the alarm threshold (`oof_median_warning_days`, `oof_warned_share`, ...:
    `alarms.warning_summary`, when the folds chose one), and subgroup AUROC, AUPRC and
    calibration-in-the-large (`oof_subgroup_<group>_<metric>`, given the patients' `covariates`).
    {} when there are too few held-out patients or one class."""
    oof = oof[np.isfinite(oof["probability"])]
    y = oof["label"].to_numpy(int)
    if oof["patient"].nunique() < MIN_PATIENTS or len(np.unique(y)) < 2:
        return {}
    served, converted = calibrated_oof(oof, seed)
    out = {}
    for name, q in converted.items():
        key = "raw" if name == "raw model output" else name
        out.update({f"oof_calibration_{key}_{k}": v for k, v in calibration.calibration_stats(q, y).items()
                    if k != "oe"})
    thresholds = np.array(decision.REPORTED)
    for t, nb, all_ in zip(thresholds, decision.net_benefit(y, converted[served], thresholds),
                           decision.treat_all(y, thresholds), strict=True):
        out[f"oof_net_benefit_t{round(t * 100):02d}"] = float(nb)
        out[f"oof_net_benefit_treat_all_t{round(t * 100):02d}"] = float(all_)
    if "alarm_threshold" in oof and np.isfinite(oof["alarm_threshold"]).any():
        summary = alarms.warning_summary(alarms.patient_outcomes(oof))
        out.update({f"oof_{k}": v for k, v in summary.items()})
    if covariates is not None:
        table = subgroups.subgroup_table(oof, covariates, converted[served])
        for row in table.to_dict("records"):
            key = subgroups.metric_key(row["subgroup"])
            out.update({f"oof_subgroup_{key}_{m}": float(row[m])
                        for m in ("auroc", "auprc", "citl", "severe_patients")})
    return {k: v for k, v in out.items() if np.isfinite(v)}
