"""Fig. 8: factor combinations 1-3 days ahead, and the paper's sensitivity/specificity claims."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.plots import plt, roc_axes
from prcrs.report import published
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report, ci_cell, english_list, md_table, one
from prcrs.tracking.results import oof, select


def fig8_combinations(report: Report, f8: pd.DataFrame) -> None:
    if f8.empty:
        return
    horizons = sorted(select(f8, protocol="honest")["horizon"].unique())
    if not horizons:
        return
    fig, axes = plt.subplots(2, len(horizons), figsize=(5 * len(horizons), 9), squeeze=False, layout="constrained")
    claim_rows, held = [], []  # held: the horizons where the claim holds, decided on the numbers
    for col, h in enumerate(horizons):
        runs = {c: one(f8, factors=c, horizon=h, protocol="honest") for c in schema.COMBINATIONS}
        runs = {c: r for c, r in runs.items() if r is not None}
        roc_axes(axes[0, col], {c: oof(r.run_id) for c, r in runs.items()}, f"{h} day(s) ahead, honest")
        order = list(runs)
        claims = published.FIG8_CLAIMS.get(int(h))
        position = np.arange(len(order))
        for shift, metric, color in ((-0.2, "sensitivity", "tab:blue"), (0.2, "specificity", "tab:orange")):
            axes[1, col].bar(position + shift, [runs[c][f"mean_test_{metric}"] for c in order], width=0.4,
                             color=color, label=f"{metric} (mean over folds)")
        if claims is not None:
            for value, metric, color in zip(claims, ("sensitivity", "specificity"), ("tab:blue", "tab:orange"),
                                            strict=True):
                axes[1, col].axhline(value, ls="--", c=color, lw=1, label=f"paper's claim: {metric} > {value:.0%}")
        axes[1, col].set(xticks=position, xticklabels=order, xlabel="factor combination", ylim=(0, 1.02),
                         ylabel="sensitivity / specificity (honest)", title=f"{h} day(s) ahead")
        axes[1, col].legend(fontsize=7, loc="lower left")
        best = max(runs, key=lambda c: runs[c]["mean_test_auroc"])
        sens_claim, spec_claim = published.FIG8_CLAIMS.get(int(h), (float("nan"), float("nan")))
        paper_run = one(f8, factors="1234", horizon=h, protocol="paper")
        sens, spec = runs[best]["mean_test_sensitivity"], runs[best]["mean_test_specificity"]
        holds = bool(sens > sens_claim and spec > spec_claim)
        if holds:
            held.append(h)
        claim_rows.append([h, f"> {sens_claim:.0%} / > {spec_claim:.0%}",
                           f"{ci_cell(paper_run, 'sensitivity')} / {ci_cell(paper_run, 'specificity')}",
                           best, f"{ci_cell(runs[best], 'auroc')}",
                           f"{ci_cell(runs[best], 'sensitivity')} / {ci_cell(runs[best], 'specificity')}",
                           "yes" if holds else "no"])
    report.save(fig, "fig8_combinations.png")
    text = ("## Fig. 8: factor combinations 1–3 days ahead\n\n"
            + md_table(["horizon", "paper's claim (sens / spec)", "ours, paper protocol, 1234 (sens / spec)",
                        "best combination (honest)", "its AUROC", "its sens / spec (honest)",
                        "claim holds (honest means)"], claim_rows)
            + "\n\nSensitivity and specificity at the threshold chosen on the inner validation split (honest) or "
              "0.3 (paper). \n\n![Fig. 8](fig8_combinations.png)")
    report.write("fig8_combinations.md", text + "\n")
    report.sections.append(text)
    tried = english_list(r[0] for r in claim_rows)
    where = (f"at every horizon tried ({tried} days ahead)" if len(held) == len(claim_rows) else
             f"at none of the horizons tried ({tried} days ahead)" if not held else
             f"{english_list(held)} day(s) ahead, of the {tried} tried")
    report.claims.append(f"**Sensitivity/specificity 1–3 days ahead (Fig. 8).** Under the honest protocol the "
                         f"paper's claims hold {where}: " + "; ".join(
                             f"{r[0]} day(s) ahead, best combination {r[3]}: sensitivity / specificity {r[5]}"
                             for r in claim_rows) + ".")


@section("Fig. 8", order=50, experiments=("fig8", "fig8_paper"),
         files=("fig8_combinations.md", "fig8_combinations.png"))
def write(report: Report, inputs: ReportInputs) -> None:
    fig8_combinations(report, inputs.study("fig8"))
