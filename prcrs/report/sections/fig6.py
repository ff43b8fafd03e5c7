"""Fig. 6: the daily probability of held-out patients."""

from __future__ import annotations

import pandas as pd
from matplotlib.ticker import MaxNLocator

from prcrs.plots import plt
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report, honest_prcrs_oof


def fig6_trajectories(report: Report, t2: pd.DataFrame) -> None:
    frame = honest_prcrs_oof(t2)
    if frame is None:
        return
    severe = frame.groupby("patient")["label"].max()
    chosen = list(severe[severe == 1].index[:4]) + list(severe[severe == 0].index[:2])
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharey=True, constrained_layout=True)
    for ax, pid in zip(axes.ravel(), chosen, strict=False):
        days = frame[frame["patient"] == pid].sort_values("day")
        ax.plot(days["day"], days["probability"], marker="o")
        marked = days[days["label"] == 1]
        ax.scatter(marked["day"], marked["probability"], c="red", zorder=3, label="severe CRS")
        ax.axhline(days["threshold"].iloc[0], ls=":", c="grey")
        ax.set(title=f"held-out patient #{pid}", xlabel="day after infusion")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # days are whole
    for ax in axes[:, 0]:
        ax.set_ylabel("P(severe), same day")
    axes.ravel()[0].legend(fontsize=8)
    report.save(fig, "fig6_trajectories.png")
    report.sections.append("## Fig. 6: daily probability of held-out patients\n\nPrCRS, honest protocol, same "
                           "day; each patient was in a test fold (patient-grouped). Red: severe CRS days; "
                           "dotted: the fold's threshold. Patient numbers are row-order indices, not ids.\n\n"
                           "![Fig. 6](fig6_trajectories.png)")


@section("Fig. 6", order=40, experiments=("table2",), files=("fig6_trajectories.png",))
def write(report: Report, inputs: ReportInputs) -> None:
    fig6_trajectories(report, inputs.study("table2"))
