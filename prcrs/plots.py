"""Figures drawn from out-of-fold predictions (`label`, `probability` columns)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402


def perfect_calibration(ax, low: float = 1e-4, label: str = "perfect calibration") -> None:
    """The line y = x on `ax`, right on any axis scales (a log x axis beside a linear y axis
    included): drawn through 400 points spaced evenly in log, not as one straight segment between
    its ends, which a log x axis would bend away from y = x."""
    x = np.geomspace(low, 1, 400)
    ax.plot(x, x, ls=":", c="grey", label=label)


def overlapping_text(fig, tolerance_px: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of `fig` (titles, axis labels, tick labels, legends,
    annotations) whose boxes overlap by more than `tolerance_px` pixels each way, as their
    strings: a figure that reads right has none. Draws `fig` first, at its own dpi, so that its
    layout and ticks are the ones shown (extents read after a save at another dpi are not)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    unshown = set()  # tick labels outside their axis's view: kept by matplotlib, never drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(1.0, abs(high - low))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    unshown |= {id(tick.label1), id(tick.label2)}
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()
             and t.get_figure() is not None and id(t) not in unshown]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    found = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > tolerance_px and height > tolerance_px:
                found.append((a, b))
    return found


def _scored(curves: dict[str, pd.DataFrame]):
    """(label, y, p) of each curve that can be drawn: rows of diverged folds (no probability)
    dropped, both classes present."""
    for label, frame in curves.items():
        frame = frame.dropna(subset=["probability"])
        y, p = frame["label"].to_numpy(), frame["probability"].to_numpy()
        if len(np.unique(y)) == 2:
            yield label, y, p


def roc_axes(ax, curves: dict[str, pd.DataFrame], title: str) -> None:
    """ROC curve of each frame on `ax`, labelled with its AUROC pooled over the out-of-fold rows
    (not the mean over folds the tables give: pooling mixes the folds' score scales)."""
    for label, y, p in _scored(curves):
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (pooled AUROC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    if ax.get_legend_handles_labels()[0]:  # a panel with no run drawn has no legend
        ax.legend(fontsize=7, loc="lower right")


def pr_axes(ax, curves: dict[str, pd.DataFrame], title: str) -> None:
    """Precision-recall curve of each frame on `ax`, labelled with its average precision, and the
    prevalence of the first (a classifier without skill)."""
    scored = list(_scored(curves))
    for label, y, p in scored:
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"{label} (pooled AUPRC {average_precision_score(y, p):.3f})")
    if scored:
        prevalence = scored[0][1].mean()
        ax.axhline(prevalence, ls=":", c="grey", label=f"no skill: prevalence {prevalence:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=title)
    if scored:
        ax.legend(fontsize=7, loc="upper right")


def curve_figures(oof: pd.DataFrame, title: str = "") -> dict[str, plt.Figure]:
    """ROC and PR figures of one run's pooled out-of-fold predictions (none if they cannot be drawn)."""
    if not list(_scored({"": oof})):
        return {}
    figures = {}
    for name, draw, kind in (("roc_curve", roc_axes, "ROC"), ("pr_curve", pr_axes, "PR")):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        draw(ax, {"out-of-fold": oof}, f"{kind} {title}")
        figures[name] = fig
    plt.close("all")
    return figures
