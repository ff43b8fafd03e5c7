"""Curves from out-of-fold predictions: what is drawn, what is left out."""

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from prcrs.plots import curve_figures, plt, roc_axes


def _oof(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame({"label": y, "probability": np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)})


def test_run_curves_carry_the_pooled_scores_and_skip_diverged_rows():
    oof = _oof()
    diverged = pd.concat([oof, pd.DataFrame({"label": [1, 0], "probability": [np.nan, np.nan]})])
    figures = curve_figures(diverged, title="prcrs h1 honest")
    roc, pr = (figures[k].axes[0] for k in ("roc_curve", "pr_curve"))
    assert roc.get_title() == "ROC prcrs h1 honest" and pr.get_title() == "PR prcrs h1 honest"
    labels = [t.get_text() for t in roc.get_legend().get_texts()]
    assert labels == [f"out-of-fold (pooled AUROC {roc_auc_score(oof['label'], oof['probability']):.3f})"]
    labels = [t.get_text() for t in pr.get_legend().get_texts()]
    assert labels == [f"out-of-fold (pooled AUPRC {average_precision_score(oof['label'], oof['probability']):.3f})",
                      f"no skill: prevalence {oof['label'].mean():.3f}"]


def test_nothing_is_drawn_for_a_single_class():
    oof = _oof().assign(label=0)
    assert curve_figures(oof) == {}
    fig, ax = plt.subplots()
    roc_axes(ax, {"one class": oof, "both": _oof(seed=1)}, "t")
    assert [t.get_text().split()[0] for t in ax.get_legend().get_texts()] == ["both"]
    plt.close(fig)
