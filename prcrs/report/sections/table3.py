"""Table 3 and Fig. 4: PrCRS with one factor group deleted, and the tests of each deletion."""

from __future__ import annotations

import pandas as pd

from prcrs import schema
from prcrs.plots import plt, roc_axes
from prcrs.report import published, stats
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import PROTOCOLS, Report, fold_values, md_table, one, p_cell, side_by_side
from prcrs.tracking.results import oof, select


def table3_and_fig4(report: Report, t2: pd.DataFrame, t3: pd.DataFrame) -> None:
    both = pd.concat([select(t2, model="prcrs", ablation="none") if not t2.empty else t2, t3], ignore_index=True)
    text, _ = side_by_side([(a, {"ablation": a}) for a in ("none", *schema.DELETIONS)], both, published.TABLE3,
                           "Table 3: ablations of PrCRS (same day)", "ablation")
    tests_rows, boot_ps = [], {}  # boot_ps: (protocol, ablation) -> bootstrap p, as a number
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), layout="constrained")
    for col, protocol in enumerate(PROTOCOLS):
        full = one(both, ablation="none", protocol=protocol)
        if full is None:
            continue
        full_oof = oof(full.run_id)
        curves = {"full": full_oof}
        for ablation in schema.DELETIONS:
            run = one(both, ablation=ablation, protocol=protocol)
            if run is None:
                continue
            abl = oof(run.run_id)
            curves[ablation] = abl
            t_p = stats.paired_t_test(fold_values(full, "auroc"), fold_values(run, "auroc"))
            test = stats.compare_oof(full_oof, abl, report.n_boot)
            if test is None:
                continue
            tests_rows.append([protocol, ablation, f"{test.difference:+.3f}", p_cell(t_p), p_cell(test.p_delong),
                               f"{test.difference:+.3f} ({test.low:+.3f}–{test.high:+.3f})",
                               p_cell(test.p_bootstrap, report.n_boot)])
            boot_ps[protocol, ablation] = test.p_bootstrap
        roc_axes(axes[col], curves, f"Ablations, {protocol} protocol")
    report.save(fig, "fig4_ablation_roc.png")
    text += "\n\n### Fig. 4: AUROC of the full model minus the ablated one\n\n" + md_table(
        ["protocol", "ablation", "ΔAUROC (pooled)", "t-test p (paper's, folds)", "DeLong p",
         "patient bootstrap ΔAUROC (95 % CI)", "bootstrap p"], tests_rows)
    text += "\n\n![Fig. 4](fig4_ablation_roc.png)"
    report.write("table3.md", text + "\n")
    report.sections.append(text)
    honest = [r for r in tests_rows if r[0] == "honest"]
    if honest:
        significant = [r[1] for r in honest if boot_ps["honest", r[1]] < 0.05]
        report.claims.append(
            f"**Every factor group contributes (Table 3).** Under the honest protocol, deleting a group changes "
            f"AUROC by {', '.join(f'{r[1]} {r[5]}' for r in honest)} (full minus deleted, of the pooled "
            f"out-of-fold AUROC, with a patient bootstrap; positive: the deletion costs AUROC). "
            f"{len(significant)} of {len(honest)} deletions make a difference whose bootstrap p < 0.05 "
            f"({', '.join(significant) or 'none'}).")


@section("Table 3 and Fig. 4", order=20, experiments=("table2", "table3"),
         files=("table3.md", "fig4_ablation_roc.png"))
def write(report: Report, inputs: ReportInputs) -> None:
    table3_and_fig4(report, inputs.study("table2"), inputs.study("table3"))
