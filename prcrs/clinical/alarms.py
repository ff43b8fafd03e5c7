"""Warning time, the operational metric: how early a model alarms before a patient's first severe
day, and how often it alarms for patients who never get there.

An alarm is a day whose P(severe) reaches the fold's alarm threshold, fixed on the fold's inner
validation rows for a stated specificity (`specificity_threshold`; never on the test fold).

    >>> import pandas as pd
    >>> oof = pd.DataFrame({"patient": [0, 0, 0, 1, 1], "day": [0, 1, 2, 0, 1], "horizon": 0,
    ...                     "label": [0, 0, 1, 0, 0], "severe_today": [0, 0, 1, 0, 0],
    ...                     "probability": [0.1, 0.7, 0.9, 0.6, 0.1], "alarm_threshold": 0.5})
    >>> out = patient_outcomes(oof)[["first_severe_day", "warning_days", "alarms", "days"]]
    >>> print(out.reset_index().to_string(index=False))
     patient  first_severe_day  warning_days  alarms  days
           0               2.0           1.0       2     3
           1               NaN           NaN       1     2
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAYS_PER_WEEK = 7.0


def specificity_threshold(labels, probabilities, specificity: float = 0.9) -> float:
    """The lowest threshold at which at least `specificity` of the negative rows stay below it
    (alarm: P >= threshold); NaN when the rows hold no negative."""
    negatives = np.sort(np.asarray(probabilities, float)[np.asarray(labels, int) == 0])
    if len(negatives) == 0:
        return float("nan")
    k = int(np.ceil(specificity * len(negatives)))  # negatives that must fall below the threshold
    if k == 0:
        return float(negatives[0])
    return float(np.nextafter(negatives[k - 1], np.inf))


def patient_outcomes(oof: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (of the first CV repeat): `first_severe_day` (NaN if never severe),
    `first_alarm_day` on or before it (or ever, for the never-severe), `warning_days` =
    first severe day - first alarm day (0: alarmed on the severe day itself; NaN: no alarm by
    then), `alarms` and `days` (the patient-days predicted).

    The first severe day is the earliest of a day graded severe (`severe_today`) and a day a
    target labels severe (`day + horizon` with `label` 1); a row with no alarm threshold (a
    diverged fold) never alarms."""
    if "repeat" in oof:
        oof = oof[oof["repeat"] == oof["repeat"].min()]
    horizon = oof["horizon"].to_numpy(int)
    severe_today = oof["severe_today"].to_numpy(float) if "severe_today" in oof else \
        np.where(horizon == 0, oof["label"], 0)
    onset = np.where(severe_today == 1, oof["day"], np.inf)
    onset = np.minimum(onset, np.where(oof["label"] == 1, oof["day"] + horizon, np.inf))
    frame = pd.DataFrame({"patient": oof["patient"].to_numpy(), "day": oof["day"].to_numpy(float), "onset": onset,
                          "alarm": (oof["probability"] >= oof["alarm_threshold"]).to_numpy()})
    first_severe = frame.groupby("patient")["onset"].min()
    frame["first_severe"] = frame["patient"].map(first_severe)
    before = frame[frame["alarm"] & (frame["day"] <= frame["first_severe"])]
    out = pd.DataFrame({"first_severe_day": first_severe.replace(np.inf, np.nan),
                        "first_alarm_day": before.groupby("patient")["day"].min(),
                        "alarms": frame.groupby("patient")["alarm"].sum().astype(int),
                        "days": frame.groupby("patient").size()})
    out["warning_days"] = out["first_severe_day"] - out["first_alarm_day"]
    return out[["first_severe_day", "first_alarm_day", "warning_days", "alarms", "days"]]


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(k,) median of `values` (m,) repeated by each row of whole-number `weights` (k, m), as the
    median of the repeated values (the mean of the middle two for an even count); NaN when empty."""
    if not values.size:
        return np.full(len(weights), np.nan)
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weights[:, order], axis=1)
    total = cumulative[:, -1]

    def at(q):  # the q-th (0-based) of each row's repeated values
        return values[(cumulative > q[:, None]).argmax(axis=1)]

    return np.where(total > 0, (at((total - 1) // 2) + at(total // 2)) / 2, np.nan)


def warning_summary(outcomes: pd.DataFrame, weights=None) -> dict:
    """From `patient_outcomes`: `severe_patients`; `warnable_patients` (first severe after day
    0, so a warning a day ahead was possible); `median_warning_days` over the warned severe
    patients; `warned_share` (of warnable patients, warned at least one day ahead);
    `detected_share` (of severe patients, alarmed by the first severe day);
    `false_alarms_per_patient_week` (alarm days per 7 predicted days of never-severe patients).
    Floats; with patient `weights` (k, patients) (a patient bootstrap's multiplicities), each an
    array (k,), every patient counted as many times as its weight."""
    w = np.ones((1, len(outcomes))) if weights is None else np.atleast_2d(np.asarray(weights, float))
    first, warning = outcomes["first_severe_day"].to_numpy(float), outcomes["warning_days"].to_numpy(float)
    severe = np.isfinite(first)
    warnable, never, warned = severe & (first >= 1), ~severe, severe & np.isfinite(warning)
    n_severe, n_warnable = w @ severe, w @ warnable
    never_days = w @ (never * outcomes["days"].to_numpy(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"severe_patients": n_severe, "warnable_patients": n_warnable,
               "median_warning_days": _weighted_median(warning[warned], w[:, warned]),
               "warned_share": np.where(n_warnable > 0, w @ (warnable & (warning >= 1)) / n_warnable, np.nan),
               "detected_share": np.where(n_severe > 0, w @ warned / n_severe, np.nan),
               "false_alarms_per_patient_week": np.where(
                   never_days > 0, w @ (never * outcomes["alarms"].to_numpy(float)) / never_days * DAYS_PER_WEEK,
                   np.nan)}
    return {k: float(v[0]) for k, v in out.items()} if weights is None else out
