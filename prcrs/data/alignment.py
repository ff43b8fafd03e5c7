"""Checks that COVID-19 columns, after unit conversion, hold the same quantity as CAR-T's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prcrs import schema, units
from prcrs.data.cohort import Cohort


def _in_range(values: np.ndarray, f: schema.Feature) -> float:
    return float(np.mean((values >= f.low) & (values <= f.high)))


def alignment_report(cart: Cohort, covid_raw: Cohort) -> pd.DataFrame:
    """One row per shared factor: medians and in-range shares, before and after conversion.

    `covid_raw` is loaded with `convert_units=False`. A column is consistent when, after
    conversion, nearly all COVID values fall in the CAR-T plausible range and the two 90th
    percentiles (the sick tail of both cohorts) are within a factor of 10: the cohorts differ
    clinically (COVID in-patients have higher CRP), not by a unit's orders of magnitude.
    """
    rows = []
    for key in schema.COVID_SHARED:
        f = schema.BY_KEY[key]
        factor = units.covid_factor(key)
        raw = covid_raw.frame[key].dropna().to_numpy(float)
        converted = raw * factor
        cart_values = cart.frame[key].dropna().to_numpy(float)
        rows.append({
            "factor": key, "cart_unit": f.unit, "covid_unit": units.COVID_UNITS.get(key, f.unit),
            "conversion": factor, "cart_median": float(np.median(cart_values)),
            "covid_median_raw": float(np.median(raw)), "covid_median": float(np.median(converted)),
            "in_range_raw": _in_range(raw, f), "in_range": _in_range(converted, f),
            "log10_q90_ratio": float(np.log10(np.quantile(converted, 0.9) / np.quantile(cart_values, 0.9))),
        })
    report = pd.DataFrame(rows).set_index("factor")
    report["consistent"] = (report["in_range"] >= 0.95) & (report["log10_q90_ratio"].abs() <= 1)
    return report
