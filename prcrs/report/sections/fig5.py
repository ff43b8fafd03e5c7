"""Fig. 5: the paper's probability conversion against isotonic and Platt calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from prcrs.clinical import calibration
from prcrs.plots import perfect_calibration, plt
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report, honest_prcrs_oof, md_table


def fig5_calibration(report: Report, t2: pd.DataFrame) -> None:
    frame = honest_prcrs_oof(t2)
    if frame is None:
        return
    y, p, groups = frame["label"].to_numpy(), frame["probability"].to_numpy(), frame["patient"].to_numpy()
    converted = {"raw model output": p, **calibration.cross_fitted_all(p, y, groups)}
    brier = {name: brier_score_loss(y, q, pos_label=1) for name, q in converted.items()}
    rows = [[name, f"{score:.4f}"] for name, score in brier.items()]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, q in converted.items():
        observed, predicted = calibration_curve(y, np.clip(q, 1e-4, 1), n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=f"{name} (Brier {brier[name]:.4f})")
    perfect_calibration(ax, label="perfect calibration")
    ax.set(xscale="log", xlim=(1e-3, 1), ylim=(0, 1), xlabel="predicted probability (log scale; 10 equal-count bins)",
           ylabel="observed frequency of severe CRS", title="Reliability (PrCRS, honest, out-of-fold)")
    ax.legend(fontsize=8)
    report.save(fig, "fig5_calibration.png")
    text = ("## Fig. 5: probability conversion\n\nThe paper's \"actual probability\" (average severe label in a "
            "window around the nearest out-of-fold prediction; half-window 10 above 0.8, 15 between, 20 below 0.3) "
            "against isotonic and Platt calibration. Every conversion is fitted on other patients' out-of-fold "
            "predictions (5 patient-grouped folds) and scored on the held-out ones.\n\n"
            + md_table(["conversion", "Brier score"], rows) + "\n\n![Fig. 5](fig5_calibration.png)")
    report.write("fig5_calibration.md", text + "\n")
    report.sections.append(text)
    best = min((name for name in brier if name != "raw model output"), key=brier.get)
    report.claims.append(f"**The paper's probability conversion.** Cross-fitted Brier: "
                         f"{', '.join(f'{r[0]} {r[1]}' for r in rows)}; the best-scoring conversion is {best}.")


@section("Fig. 5", order=30, experiments=("table2",), files=("fig5_calibration.md", "fig5_calibration.png"))
def write(report: Report, inputs: ReportInputs) -> None:
    fig5_calibration(report, inputs.study("table2"))
