"""Figures drawn from out-of-fold predictions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402


def curve_figures(oof: pd.DataFrame, title: str = "") -> dict[str, plt.Figure]:
    """ROC and PR curves of pooled out-of-fold predictions (`label`, `probability` columns)."""
    oof = oof.dropna(subset=["probability"])  # folds that diverged have no prediction
    y, p = oof["label"].to_numpy(), oof["probability"].to_numpy()
    figures = {}
    if len(np.unique(y)) < 2:
        return figures
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"AUROC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC {title}")
    ax.legend(loc="lower right")
    figures["roc_curve"] = fig
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    precision, recall, _ = precision_recall_curve(y, p)
    ax.plot(recall, precision, label=f"AUPRC {average_precision_score(y, p):.3f}")
    ax.axhline(y.mean(), ls=":", c="grey", label=f"prevalence {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=f"PR {title}")
    ax.legend(loc="upper right")
    figures["pr_curve"] = fig
    plt.close("all")
    return figures
