"""The external-validation report of `prcrs validate`: Markdown laid out along TRIPOD+AI's items
for an external validation, a reliability diagram and a decision curve per horizon, and the
paper's Fig. 7 (each external patient's daily risk beside their grades). Numbers only, no rows:
patients are numbered, never named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prcrs.plots import perfect_calibration, plt

RELIABILITY_BINS = 10
FILES = ("external_validation.md", "fig7_external_patients.png")


def _interval(metrics: dict, name: str, digits: int = 3) -> str:
    value, low, high = metrics[name], metrics.get(f"{name}_low"), metrics.get(f"{name}_high")
    if not np.isfinite(value):
        return "n/a (one class)"
    shown = f"{value:.{digits}f}"
    return shown if low is None or not np.isfinite(low) else f"{shown} ({low:.{digits}f} to {high:.{digits}f})"


def reliability_figure(rows: pd.DataFrame, horizon: int, path: Path) -> None:
    """Observed share of severe days (Wilson 95 % interval) against the mean risk of equal-count
    bins of the risk, with the line of perfect calibration (`plots.perfect_calibration`)."""
    from scipy.stats import binomtest

    p, y = rows["risk"].to_numpy(float), rows["label"].to_numpy(int)
    bins = np.array_split(np.argsort(p, kind="stable"), min(RELIABILITY_BINS, max(1, len(p) // 20)))
    mean = np.array([p[b].mean() for b in bins])
    observed = np.array([y[b].mean() for b in bins])
    wilson = [binomtest(int(y[b].sum()), len(b)).proportion_ci(method="wilson") for b in bins]
    low, high = np.array([c.low for c in wilson]), np.array([c.high for c in wilson])
    top = float(max(mean.max(), high.max(), 0.05)) * 1.05
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    perfect_calibration(ax, low=1e-4)
    ax.errorbar(mean, observed, yerr=[observed - low, high - observed], fmt="o", c="C0", capsize=3,
                label=f"{len(bins)} equal-count bins (95 % CI)")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted risk", ylabel="observed share severe",
           title=f"Reliability, {horizon} day(s) ahead ({len(p)} patient-days)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def decision_figure(net: pd.DataFrame, horizon: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for column in net.columns:
        style = {"treat all": dict(c="grey", ls="--"), "treat none": dict(c="black", lw=0.8)}.get(column, {})
        ax.plot(net.index, net[column], marker="o" if column not in ("treat all", "treat none") else None,
                label=column, **style)
    ax.set(xlabel="risk threshold", ylabel="net benefit (true positives per patient-day)",
           title=f"Decision curve, {horizon} day(s) ahead", ylim=(min(-0.01, float(net.min().min())),
                                                                  max(0.01, float(net.max().max()) * 1.1)))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fig7_figure(frame: pd.DataFrame, grades: pd.DataFrame, horizon: int, path: Path) -> list[int]:
    """The paper's Fig. 7 on the external patients: per patient, the risk of each day at `horizon`
    (plotted on the day predicted) and the CRS grade of each day. Up to 12 patients: every
    patient with severe CRS first (most days first), then the others. Returns the patients drawn."""
    rows = frame[frame["horizon"] == horizon]
    worst = grades.groupby("patient")["grade"].max()
    days = rows.groupby("patient").size()
    order = sorted(days.index, key=lambda p: (worst.get(p, 0) < 3, -days[p], p))[:12]
    n = len(order)
    cols = min(4, max(1, n))
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.2 * cols, 2.4 * -(-n // cols)),
                             squeeze=False, layout="constrained")
    for ax, patient in zip(axes.ravel(), order, strict=False):
        mine = rows[rows["patient"] == patient].sort_values("day")
        graded = grades[grades["patient"] == patient].sort_values("day")
        ax.bar(graded["day"], graded["grade"], color="C1", alpha=0.35, label="CRS grade")
        ax.set_ylim(0, 4.2)
        ax.set_ylabel("grade", fontsize=7)
        risk = ax.twinx()
        risk.plot(mine["day"] + horizon, mine["risk"], marker="o", c="C0", label=f"risk ({horizon} d ahead)")
        risk.set_ylim(0, 1)
        risk.tick_params(labelsize=7)
        ax.set_title(f"patient {patient}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("day since infusion", fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"External patients: daily risk of severe CRS {horizon} day(s) ahead (blue, on the day predicted) "
                 "and CRS grade (bars)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return order


def markdown(validation, out: Path) -> str:
    """The report's Markdown (`validation`: a `prcrs.serving.validation.Validation`)."""
    v = validation
    synthetic = " **synthetic (made-up) data: these numbers say nothing about real patients**" if v.synthetic else ""
    lines = [f"# External validation of release {v.release} at {v.site or 'an external site'}", "",
             f"TRIPOD+AI, external validation. Model developed on {v.developed_on} data; validated on the site's "
             f"export (content id {v.content_id}, {v.form} form).{synthetic}", "",
             "## Source of data and participants", "",
             f"- {v.patients} patients, {v.patient_days} patient-days with a CRS grade; every patient-day with a "
             "grade recorded on the day predicted is a case. Patients are numbered here, never named.",
             "- Outcome: CRS grade >= 3 on the day predicted (the day of the labs + the horizon), as the site "
             "graded it.",
             "", "## Predictors and how they were read", ""]
    lines += [f"- {n}" for n in v.notes] or ["- every value read as given"]
    lines += ["- Missing factors are imputed from the development cohort's medians, as `prcrs predict` does; a "
              "patient-day whose factor groups are too sparse for any combination is not predicted.", "",
              "## Patient-days not used", "", "| horizon | reason | patient-days |", "|---|---|---|"]
    for h, reasons in v.predictions.unusable.items():
        lines += [f"| {h} | {reason} | {n} |" for reason, n in sorted(reasons.items())] or [f"| {h} | none | 0 |"]
    lines += ["", "## Performance", "",
              f"Intervals: 95 % percentile intervals over {v.n_boot} resamples of patients.", "",
              "| horizon | patient-days | patients | severe days | AUROC | AUPRC | calibration-in-the-large | "
              "calibration slope | Brier | ECE | severe days not ruled out |", "|---" * 11 + "|"]
    for r in v.results:
        m = r.metrics
        lines.append(f"| {r.horizon} | {r.rows} | {r.patients} | {r.severe_rows} | {_interval(m, 'auroc')} | "
                     f"{_interval(m, 'auprc')} | {_interval(m, 'citl', 2)} | {_interval(m, 'slope', 2)} | "
                     f"{m['brier']:.4f} | {m['ece']:.4f} | {m['band_coverage']:.1%} |")
    lines += ["", "Calibration-in-the-large 0 and slope 1 are right; a positive intercept means the risks are too "
              "low at this site, a slope below 1 too extreme. `prcrs recalibrate` updates the release for the site "
              "(intercept, or intercept and slope). The rule-out band promises that at least 90 % of severe days are "
              "not ruled out; the last column checks it here.", ""]
    for r in v.results:
        lines += [f"![reliability, horizon {r.horizon}](reliability_h{r.horizon}.png)",
                  f"![decision curve, horizon {r.horizon}](decision_h{r.horizon}.png)", ""]
    lines += ["## Net benefit", "",
              "True positives per patient-day, acting when the risk is at or above the threshold. The bedside scores "
              "are fitted on this file itself (patient-grouped 5-fold cross-validation), which favours them; the "
              "release is not refitted.", ""]
    for r in v.results:
        net = r.net_benefit
        lines += [f"Horizon {r.horizon}:", "", "| threshold | " + " | ".join(net.columns) + " |",
                  "|---" * (len(net.columns) + 1) + "|"]
        lines += [f"| {t:.2f} | " + " | ".join(f"{x:+.4f}" for x in row) + " |" for t, row in net.iterrows()]
        lines += [f"- {n}" for n in r.bedside_notes] + [""]
    lines += ["## Warning time", ""]
    for r in v.results:
        w = r.warning
        if not w:
            lines.append(f"- Horizon {r.horizon}: not measured: the release keeps no alarm threshold (trained before "
                         "alarm thresholds were kept)")
            continue
        lines.append(f"- Horizon {r.horizon}: alarm when the risk reaches the release's threshold (90 % specificity on "
                     f"the development cohort): {w['warned_share']:.0%} of {w['warnable_patients']:.0f} warnable "
                     f"severe patients warned at least a day ahead (median {w['median_warning_days']:.1f} days); "
                     f"{w['false_alarms_per_patient_week']:.2f} false-alarm days per patient-week of patients never "
                     "severe.")
    lines += ["", "## Fig. 7: external patients", "",
              "![external patients](fig7_external_patients.png)", "",
              f"Patients drawn: {', '.join(map(str, v.fig7_patients))} (severe ones first).", "",
              "## Limitations", "",
              f"- {v.patients} patients and {sum(r.severe_rows for r in v.results[:1])} severe days at horizon "
              f"{v.results[0].horizon}: intervals are wide." if v.results else "",
              "- Grading scale, timing of draws within the day and treatments (tocilizumab, steroids) come from the "
              "site and are not checked; treatment may prevent the severe CRS a risk foretold.",
              "- The development cohort is one centre's; the model saw nothing of this site.", ""]
    return "\n".join(lines)
