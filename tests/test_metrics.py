"""Fold metrics and the inner-split threshold."""

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from prcrs.metrics import best_f1_threshold


def _brute_force(y, proba):
    candidates = np.unique(np.concatenate([proba, [0.5]]))
    scores = [precision_recall_fscore_support(y, (proba >= t).astype(int), average="macro", labels=[0, 1],
                                              zero_division=0)[2] for t in candidates]
    return float(candidates[int(np.argmax(scores))])


@pytest.mark.parametrize("seed", range(40))
def test_best_f1_threshold_is_the_brute_force_argmax_of_macro_f1(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 150))
    y = (rng.random(n) < rng.uniform(0.03, 0.5)).astype(int)
    y[0], y[1] = 0, 1
    proba = np.round(np.clip(0.4 * y + 0.7 * rng.random(n), 0, 1), int(rng.integers(1, 4)))  # with ties
    assert best_f1_threshold(y, proba) == _brute_force(y, proba)


def test_best_f1_threshold_with_one_class_is_one_half():
    assert best_f1_threshold(np.zeros(5, int), np.linspace(0, 1, 5)) == 0.5
