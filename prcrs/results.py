"""Reading finished cross-validation results (parent runs, out-of-fold predictions) back from MLflow."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pandas as pd

from prcrs import tracking


def cv_design(folds, repeats, seed) -> str:
    """The CV design a run's results depend on besides its config and data: runs of one design
    share their test folds, so they can be compared pairwise."""
    return f"{folds} folds x {repeats} repeat(s), seed {seed}"


def parent_runs(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Finished parent runs of a study: one row each, tags and metrics as columns, and `design`
    (`cv_design` of its params) (latest first)."""
    import mlflow

    tracking.use_store(tracking_uri)
    experiment = mlflow.get_experiment_by_name(study)
    if experiment is None:
        return pd.DataFrame()
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list", order_by=["start_time DESC"],
                              filter_string="tags.role = 'cv_parent' and attributes.status = 'FINISHED'")
    rows = [{"run_id": r.info.run_id, **r.data.tags, **r.data.metrics,
             "design": cv_design(*(r.data.params.get(k) for k in ("cv.folds", "cv.repeats", "seed")))} for r in runs]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.drop_duplicates("config_hash")  # the latest run of each config
        frame["horizon"] = frame["horizon"].astype(int)
    return frame


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
