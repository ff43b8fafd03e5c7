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


def warning_summary(outcomes: pd.DataFrame) -> dict[str, float]:
    """From `patient_outcomes`: `severe_patients`; `warnable_patients` (first severe after day
    0, so a warning a day ahead was possible); `median_warning_days` over the warned severe
    patients; `warned_share` (of warnable patients, warned at least one day ahead);
    `detected_share` (of severe patients, alarmed by the first severe day);
    `false_alarms_per_patient_week` (alarm days per 7 predicted days of never-severe patients)."""
    severe = outcomes[outcomes["first_severe_day"].notna()]
    warnable = severe[severe["first_severe_day"] >= 1]
    never = outcomes[outcomes["first_severe_day"].isna()]
    warned = severe["warning_days"].dropna()
    days = never["days"].sum()
    return {"severe_patients": float(len(severe)), "warnable_patients": float(len(warnable)),
            "median_warning_days": float(warned.median()) if len(warned) else float("nan"),
            "warned_share": float((warnable["warning_days"] >= 1).mean()) if len(warnable) else float("nan"),
            "detected_share": float(severe["warning_days"].notna().mean()) if len(severe) else float("nan"),
            "false_alarms_per_patient_week": float(never["alarms"].sum() / days * DAYS_PER_WEEK) if days else
            float("nan")}
