"""Decision curves (Vickers & Elkin 2006): the net benefit of acting on a risk threshold.

At threshold t (the risk at which a clinician would act, e.g. start tocilizumab early), acting on
every row with P(severe) >= t gains the true positives and pays for the false positives at the
odds t / (1 - t) a clinician accepts:  NB(t) = TP / n - FP / n * t / (1 - t). Treat-all acts on
every row; treat-none has NB 0. Net benefit is in true positives per row: 0.01 = one severe
day caught per 100 patient-days with no false alarm.

    >>> net_benefit([1, 0, 0, 0], [0.9, 0.6, 0.1, 0.1], [0.5]).round(3).tolist()
    [0.0]
    >>> treat_all([1, 0, 0, 0], [0.2]).round(3).tolist()
    [0.062]
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.round(np.arange(0.02, 0.401, 0.01), 2)  # the clinically sensible range, 2-40 %
REPORTED = (0.05, 0.10, 0.20)  # thresholds whose net benefit is logged on every run


def net_benefit(labels, probabilities, thresholds=THRESHOLDS, weights=None) -> np.ndarray:
    """Net benefit (true positives per row, minus false positives weighted by the threshold's
    odds) of acting when P(severe) >= t, for each t: (thresholds,); with row `weights` (k, n)
    (a patient bootstrap's multiplicities), (k, thresholds), each row weighted."""
    y, p = np.asarray(labels, int), np.asarray(probabilities, float)
    t = np.asarray(thresholds, float)
    w = np.ones((1, len(y))) if weights is None else np.atleast_2d(np.asarray(weights, float))
    acted = (p[:, None] >= t[None, :]).astype(float)  # (n, thresholds)
    tp, fp = (w * (y == 1)) @ acted, (w * (y == 0)) @ acted
    total = w.sum(1, keepdims=True)
    out = tp / total - fp / total * t / (1 - t)
    return out[0] if weights is None else out


def treat_all(labels, thresholds=THRESHOLDS) -> np.ndarray:
    """Net benefit of acting on every row: prevalence - (1 - prevalence) t / (1 - t)."""
    prevalence, t = float(np.mean(labels)), np.asarray(thresholds, float)
    return prevalence - (1 - prevalence) * t / (1 - t)
