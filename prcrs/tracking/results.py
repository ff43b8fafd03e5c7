"""Reading finished cross-validation results (parent runs, out-of-fold predictions) back from MLflow."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from prcrs.tracking import store


def cv_design(folds, repeats, seed) -> str:
    """The CV design a run's results depend on besides its config and data: runs of one design
    share their test folds, so they can be compared pairwise."""
    return f"{folds} folds x {repeats} repeat(s), seed {seed}"


def records(run) -> dict:
    """A parent run's records (`cv_logging.run_records`, JSON tags): `overrides` (a list),
    `design` (`cv_design`), `baseline_covariates` (whether its history reads them). Runs logged
    before the records were kept: from their params."""
    tags, params = run.data.tags, run.data.params
    if "prcrs.cv_design" in tags:
        design = json.loads(tags["prcrs.cv_design"])
        return {"overrides": json.loads(tags["prcrs.overrides"]),
                "design": cv_design(design["folds"], design["repeats"], design["seed"]),
                "baseline_covariates": bool(json.loads(tags["prcrs.history"]).get("baseline", False))}
    logged = params.get("overrides", "-")
    return {"overrides": [] if logged == "-" else logged.split(),
            "design": cv_design(*(params.get(k) for k in ("cv.folds", "cv.repeats", "seed"))),
            "baseline_covariates": params.get("history.baseline", "False") == "True"}


def parent_runs(study: str | None, tracking_uri: str | None = None) -> pd.DataFrame:
    """Finished parent runs of a study (None: of every study): one row each, tags and metrics as
    columns, and its `records` (overrides, design, baseline covariates); latest first."""
    import mlflow

    store.open_store(tracking_uri)
    where = "tags.role = 'cv_parent' and attributes.status = 'FINISHED'"
    if study is None:
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["start_time DESC"],
                                  filter_string=where)
    else:
        experiment = mlflow.get_experiment_by_name(study)
        if experiment is None:
            return pd.DataFrame()
        runs = mlflow.search_runs([experiment.experiment_id], output_format="list", order_by=["start_time DESC"],
                                  filter_string=where)
    rows = [{"run_id": r.info.run_id, "history": "none", **{k: v for k, v in r.data.tags.items() if
                                                            not k.startswith("prcrs.")},
             **r.data.metrics, **records(r)} for r in runs]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        if "config_hash" in frame:
            frame = frame.drop_duplicates("config_hash")  # the latest run of each config
        frame["horizon"] = frame["horizon"].astype(int)
    return frame


def platform_run(runs: pd.DataFrame, horizon: int | None = None) -> pd.Series | None:
    """The run whose config the platform serves at `horizon`: among `runs` (one cohort and CV
    design) that are honest, with all factors, no ablation, no transfer, no bedside score and
    no baseline covariates (the platform takes labs and days only), the best mean test AUROC at
    `horizon` when any run is there, else at the horizon where most models were compared (the
    lower on a tie), as AUROCs at different horizons are not comparable. None without any."""
    import numpy as np

    from prcrs.models import catalogue

    if runs.empty:
        return None
    ok = runs[(runs["protocol"] == "honest") & (runs["factors"].astype(str) == "1234") & (runs["ablation"] == "none")
              & (runs["transfer"] == "none") & ~runs["model"].isin(catalogue.names(family="bedside"))
              & ~runs["baseline_covariates"]
              & np.isfinite(runs.get("mean_test_auroc", pd.Series(np.nan, index=runs.index)).astype(float))]
    if ok.empty:
        return None
    if horizon not in set(ok["horizon"]):
        models = ok.groupby("horizon")["model"].nunique()
        horizon = min(models.index, key=lambda h: (-models[h], h))
    at = ok[ok["horizon"] == horizon]
    return at.loc[at["mean_test_auroc"].astype(float).idxmax()]


def select(frame: pd.DataFrame, **tags) -> pd.DataFrame:
    """Rows whose tags equal the given values."""
    mask = pd.Series(True, index=frame.index)
    for key, value in tags.items():
        mask &= frame[key].astype(str) == str(value)
    return frame[mask]


@functools.lru_cache(maxsize=64)
def oof(run_id: str) -> pd.DataFrame:
    """The out-of-fold predictions a parent run logged (downloaded once per run; do not mutate)."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file says nothing

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="oof_predictions.csv", dst_path=tmp)
        return pd.read_csv(Path(path)).dropna(subset=["probability"])  # diverged folds predict nothing
