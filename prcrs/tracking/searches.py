"""What a hyperparameter search (the OFAT and TPE sweepers) records: the chosen job's test-fold
CV, read from its `summary.json`, and a `search` run in the study's MLflow experiment."""

from __future__ import annotations

import json
from pathlib import Path

# the keys of a job's summary.json a search reports: test-fold CV, reported apart, and validation
REPORTED = ("mean_test_", "std_test_", "pooled_test_", "mean_val_")


def _job_file(job_return, name: str) -> dict | None:
    """A JSON file the task wrote in a sweep job's folder (`hydra.core.utils.JobReturn`)."""
    try:
        path = Path(job_return.hydra_cfg.hydra.runtime.output_dir) / name
    except Exception:  # noqa: BLE001 - a task without Hydra runtime info
        return None
    return json.loads(path.read_text()) if path.is_file() else None


def chosen_summary(job_return) -> dict | None:
    """The CV metrics of a finished sweep job from the `summary.json` its task wrote (None when
    it wrote none): test folds, reported apart, and validation."""
    summary = _job_file(job_return, "summary.json")
    return None if summary is None else {k: v for k, v in summary.items() if k.startswith(REPORTED)}


def job_run_id(job_return) -> str | None:
    """The MLflow run of a finished sweep job, from the `run.json` its task wrote."""
    record = _job_file(job_return, "run.json")
    return None if record is None else record.get("run_id")


def log_search(config, run_name: str, chosen: dict, metric: str, score: float, final_cv: dict | None,
               files: list[Path], tags: dict | None = None) -> str | None:
    """A `search` run in the task's study: the chosen values (`chosen.<key>` params), the search
    score (`search_<metric>`), the chosen config's CV (`final_<key>`) and `files` as artifacts.
    Its id; None when the task logs nowhere (no `study` or `logger` in its config)."""
    if "study" not in config or "logger" not in config:
        return None
    import mlflow

    from prcrs import interrupts
    from prcrs.tracking import store

    experiment_id = store.setup(config.study, config.logger.get("tracking_uri"))
    with interrupts.held(), mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags={
            "role": "search", "study": config.study, **(tags or {})}) as run:
        mlflow.log_params({f"chosen.{k}": v for k, v in chosen.items()})
        mlflow.log_metric(f"search_{metric}", score)
        for k, v in (final_cv or {}).items():
            mlflow.log_metric(f"final_{k}", v)
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id
