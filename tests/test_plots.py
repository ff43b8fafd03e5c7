"""Curves from out-of-fold predictions: what is drawn, what is left out."""

import numpy as np
import pandas as pd
import pytest
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


def _on_identity(ax, line, x: float) -> bool:
    """Whether `line`, as drawn on `ax`'s scales, passes through (x, x): its display path
    interpolated at x's display position sits at x's display height."""
    display = ax.transData.transform(line.get_xydata())
    target = ax.transData.transform([(x, x)])[0]
    return abs(np.interp(target[0], display[:, 0], display[:, 1]) - target[1]) < 1.0  # under a pixel


@pytest.mark.slow  # over 2 s: the inner loop stays under 3 minutes
def test_the_perfect_calibration_line_is_y_equals_x_on_the_figures_scales(tmp_path, monkeypatch):
    from prcrs.clinical.evaluation import calibrated_oof
    from prcrs.plots import perfect_calibration
    from prcrs.report import clinical
    from prcrs.report.tables import Report

    for yscale in ("linear", "symlog"):  # fig5_calibration.png; clinical_calibration.png
        fig, ax = plt.subplots()
        perfect_calibration(ax)
        ax.set(xscale="log", yscale=yscale, xlim=(1e-3, 1), ylim=(0, 1))
        line = ax.get_lines()[0]
        assert all(_on_identity(ax, line, x) for x in (0.003, 0.01, 0.1, 0.5, 0.9)), yscale
        naive = ax.plot([1e-4, 1], [1e-4, 1])[0]  # the two-point line this replaced: off y = x at 0.1
        assert not _on_identity(ax, naive, 0.1)
        plt.close(fig)
    rng = np.random.default_rng(0)  # the clinical section's figure as the report draws it
    frame = _oof(400).assign(patient=rng.integers(0, 40, 400))
    served, converted = calibrated_oof(frame)
    frame = frame.assign(**converted, calibrated=converted[served])
    figures = []
    monkeypatch.setattr(Report, "save", lambda self, fig, name: figures.append(fig) or name)
    run = pd.Series({"model": "logreg", "history": "none", "run_id": "x"})
    clinical.calibration_part({1: (run, frame, served)}, Report(tmp_path, n_boot=20))  # intervals: not tested here
    ax = figures[0].axes[0]
    perfect = next(line for line in ax.get_lines() if line.get_label() == "perfect")
    assert all(_on_identity(ax, perfect, x) for x in (0.003, 0.01, 0.1, 0.5, 0.9))


def test_overlapping_texts_are_found_and_apart_ones_are_not():
    from prcrs.plots import overlapping_text, plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(4, 2))
    left.set_ylabel("a label long enough to reach the next panel " * 3)
    right.set_yticks([0, 1], ["a tick label that runs left into the other panel", "y"])
    assert overlapping_text(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.set(title="title", xlabel="x", ylabel="y")
    assert overlapping_text(fig) == []
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.plot(range(20))
    ax.set_xticks(range(-5, 30, 5))  # ticks beyond the view stay in matplotlib's list, undrawn
    ax.set_xlim(0, 19)
    ax.set(xlabel="day")
    assert overlapping_text(fig) == []
    plt.close(fig)
