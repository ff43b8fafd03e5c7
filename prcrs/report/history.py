"""reports/history.md: one day against a patient's past (the `history` study), per model and
horizon, with a patient bootstrap and DeLong's test of each history input against one day."""

from __future__ import annotations

import pandas as pd

from prcrs.plots import plt
from prcrs.report import stats
from prcrs.report.tables import Report, ci_cell, md_table, p_cell
from prcrs.tracking.results import oof

ONE_DAY = "none"


def _against_one_day(run: pd.Series, base: pd.Series, n_boot: int) -> stats.Comparison | None:
    """ΔAUROC (history − one day) on the test rows both predicted (`stats.compare_oof`)."""
    return stats.compare_oof(oof(run.run_id), oof(base.run_id), n_boot)


def history_section(report: Report, hs: pd.DataFrame) -> None:
    """The history table, its figure (AUROC and AUPRC against horizon, a line per model and
    input) and a claim saying where history helps and where it does not."""
    if hs.empty:
        return
    hs = hs.assign(history=hs["history"].fillna(ONE_DAY)) if "history" in hs else hs.assign(history=ONE_DAY)
    hs = hs[hs["protocol"] == "honest"]
    rows, helps, not_helps = [], [], []
    lines: dict[tuple[str, str], dict[int, pd.Series]] = {}
    for (model, history), group in hs.groupby(["model", "history"], sort=True):  # the latest run of each
        lines[(model, history)] = {int(r["horizon"]): r for _, r in group.drop_duplicates("horizon").iterrows()}
    for (model, history), by_horizon in lines.items():
        for h, run in sorted(by_horizon.items()):
            base = lines.get((model, ONE_DAY), {}).get(h)
            row = [h, model, history, ci_cell(run, "auroc"), ci_cell(run, "auprc")]
            if history == ONE_DAY or base is None:
                rows.append(row + ["(one day)" if history == ONE_DAY else "no one-day run", "–", "–"])
                continue
            test = _against_one_day(run, base, report.n_boot)
            if test is None:
                rows.append(row + ["no test row predicted by both", "–", "–"])
                continue
            rows.append(row + [f"{test.difference:+.3f} ({test.low:+.3f}–{test.high:+.3f})",
                               p_cell(test.p_bootstrap, report.n_boot), f"{test.p_delong:.3g}"])
            (helps if test.low > 0 else not_helps).append(f"{model} {history} h{h} ({test.difference:+.3f})")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for (model, history), by_horizon in lines.items():
        order = sorted(by_horizon)
        for ax, metric in zip(axes, ("auroc", "auprc"), strict=True):
            ax.plot(order, [by_horizon[h][f"mean_test_{metric}"] for h in order],
                    "-o" if history == ONE_DAY else "--s", label=f"{model}, {history}")
    for ax, name in zip(axes, ("AUROC", "AUPRC"), strict=True):
        ax.set(xlabel="days ahead (horizon)", ylabel=f"mean test {name} (honest)", xticks=range(4))
    axes[1].legend(fontsize=8, loc="upper right")
    report.save(fig, "history.png")
    text = ("## History: one day against a patient's past (honest protocol)\n\n"
            + md_table(["horizon", "model", "input", "AUROC", "AUPRC",
                        "ΔAUROC vs one day (patient bootstrap 95 % CI)", "p (bootstrap)", "p (DeLong)"], rows)
            + "\n\nAUROC and AUPRC: mean over folds with 95 % t interval. ΔAUROC: pooled out-of-fold "
              "predictions of the same test rows, the same model on one day's labs (`history=none`) as "
              "reference; positive = the history input is better. Inputs (`conf/history/`): `lags` = day t−1 "
              "and the change to day t; `trends` = `lags` + running max and min since infusion, the day since "
              "infusion and the baseline covariates; `days` = the last 4 days as a sequence (for the sequence "
              "networks). Every history feature uses the patient's days up to t only, with the label-imputation "
              "fill values masked first.\n\n"
            + f"History helps (bootstrap CI above 0) for: {', '.join(helps) or 'none'}.\n\n"
            + f"History does not help (CI includes 0 or lies below it) for: {', '.join(not_helps) or 'none'}.\n\n"
              "![History](history.png)")
    report.write("history.md", text + "\n")
    report.sections.append(text)
    report.claims.append("**Beyond the paper: a patient's history (reports/history.md).** The paper predicts from "
                         f"one day's labs. Under the honest protocol, history improves AUROC with a bootstrap CI "
                         f"above 0 for {', '.join(helps) or 'no model and horizon'}; it does not for "
                         f"{', '.join(not_helps) or 'none'}.")

