"""Bedside trust on a platform trained on the real sheet (the platform's own recipe: a forest
reading one day of lags): a measured value is read as measured, the risk is never more extreme
than its out-of-fold evidence, and the band never contradicts the risk beside it."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from prcrs import cli, schema
from prcrs.data.reading import IGNORED

pytestmark = pytest.mark.slow

NUDGE_BOUND = 0.03  # a 1 % change of one value moves the risk by at most 3 percentage points


@pytest.fixture(scope="module")
def platform(real_dir, tmp_path_factory):
    from prcrs.serving.registry import load_platform

    uri = f"sqlite:///{tmp_path_factory.mktemp('real-platform') / 'mlflow.db'}"
    old = os.environ.get("PRCRS_DATA_DIR")
    os.environ["PRCRS_DATA_DIR"] = str(real_dir)
    try:
        assert cli.main(["train-final", "model=forest", "history=lags", "cv.explain_rows=0", "--horizon", "1",
                         "--combinations", "1234", "--tracking-uri", uri]) == 0
    finally:
        os.environ.pop("PRCRS_DATA_DIR") if old is None else os.environ.update(PRCRS_DATA_DIR=old)
    return load_platform(uri)


def _days(real_cart, platform) -> dict[str, dict[str, float]]:
    """The page's example day (training medians) and a day of the grade-3 medians: each of its
    values is a label-imputation fill value of the published sheet."""
    from prcrs.serving.platform import example_values

    frame = real_cart.frame
    severe = {k: float(frame.loc[frame["grade"] == 3, k].median()) for k in schema.FEATURE_KEYS if k not in IGNORED}
    assert all(v in real_cart.fill_values.get(k, ()) for k, v in severe.items() if np.isfinite(v))
    return {"example": example_values(platform.models[("1234", 1)]), "grade-3 medians": severe}


def _risks(platform, days: list[dict], day_numbers=None) -> pd.DataFrame:
    frame = pd.DataFrame(days).assign(patient="p", **{"Relative date": day_numbers or list(range(len(days)))})
    if day_numbers is None:  # one-day inputs: each its own patient, on day 0
        frame = frame.assign(patient=[f"p{i}" for i in range(len(days))], **{"Relative date": 0})
    return platform.predict_table(frame, platform.horizons)[0]


def test_nudging_one_measured_value_by_1_percent_barely_moves_the_risk(platform, real_cart):
    for name, day in _days(real_cart, platform).items():
        base = _risks(platform, [day])
        nudged = _risks(platform, [{**day, k: v * 1.01} for k, v in day.items()])
        for h in platform.horizons:
            risk = base.loc[base["horizon"] == h, "calibrated_probability"].item()
            moved = (nudged.loc[nudged["horizon"] == h, "calibrated_probability"] - risk).abs()
            assert moved.max() <= NUDGE_BOUND, (name, h, list(day)[int(moved.to_numpy().argmax())], moved.max())
            assert not base["warnings"].fillna("").str.contains("not measured").any()
    # the same for the values of a history model's earlier day
    sick = _days(real_cart, platform)["grade-3 medians"]
    base = _risks(platform, [sick, sick], [0, 1])
    for k, v in sick.items():
        nudged = _risks(platform, [{**sick, k: v * 1.01}, sick], [0, 1])
        moved = (nudged.loc[nudged["day"] == 1, "calibrated_probability"].to_numpy()
                 - base.loc[base["day"] == 1, "calibrated_probability"].to_numpy())
        assert np.abs(moved).max() <= NUDGE_BOUND, (k, moved)


def test_no_risk_is_more_extreme_than_its_out_of_fold_evidence(platform, real_cart):
    from prcrs.tracking.results import oof

    example = _days(real_cart, platform)["example"]
    grid = [{**example, k: bound} for k in example for bound in (schema.BY_KEY[k].low, schema.BY_KEY[k].high)]
    grid += [{k: schema.BY_KEY[k].high for k in example}, {k: schema.BY_KEY[k].low for k in example},
             {**example, **{k: schema.BY_KEY[k].high for k in schema.group_features(4)}}]
    table = _risks(platform, grid)
    for (code, h), model in platform.models.items():
        evidence = oof(model.info["cv_run_id"]).sort_values("probability", kind="stable")["label"].to_numpy()
        n = max(30, int(np.ceil(0.05 * len(evidence))))  # the 5 % lowest- and highest-scoring held-out days
        floor, ceiling = evidence[:n].mean(), evidence[-n:].mean()
        risks = table.loc[(table["combination"] == code) & (table["horizon"] == h), "calibrated_probability"]
        assert len(risks) == len(grid) and risks.between(floor - 1e-4, ceiling + 1e-4).all(), (h, floor, ceiling,
                                                                                               risks.min(), risks.max())
        assert risks.max() > floor  # the grid does reach high risks
    assert not table["calibrated_risk"].eq("> 99 %").any()


def test_the_band_never_contradicts_the_risk(platform, real_cart):
    frame = real_cart.frame
    sheet = frame[[k for k in schema.FEATURE_KEYS]].assign(patient=frame["patient"].astype(str),
                                                           **{"Relative date": frame["day"]})
    table = platform.predict_table(sheet, platform.horizons, explain_rows=False)[0]  # risks and bands only
    table = table.dropna(subset=["calibrated_probability"])
    assert len(table) > 1000  # every day of the sheet (1,496) at each horizon served
    for (code, h), model in platform.models.items():
        rows = table[(table["combination"] == code) & (table["horizon"] == h)]
        out, kept = rows[rows["risk_band"] == "ruled out"], rows[rows["risk_band"] == "not ruled out"]
        assert len(out) > 100 and len(kept) > 100  # both are said
        base_rate = model.band.base_rate_
        assert (out["calibrated_probability"] < base_rate).all()  # never "ruled out" beside a risk at the base rate
        assert out["calibrated_probability"].max() <= kept["calibrated_probability"].min() + 1e-4 or \
            out["probability"].max() <= kept["probability"].min() + 1e-4  # one cut: a higher risk is never ruled out
