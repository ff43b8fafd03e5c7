"""The MLflow UI, opened on a study's runs: `make ui` (`python -m prcrs.tracking.ui`).

MLflow 3 starts in its GenAI mode, where an experiment opens on "Traces", and shows no metric
column until one is chosen. Every study's experiment is therefore tagged as model training
(`mlflow.experimentKind`) and given a shared view (the tag `mlflow.sharedViewState.<VIEW>`,
which the UI loads from `?viewStateShareKey=<VIEW>`): the CV runs only, best mean test AUROC
first, with the key metrics and tags as columns. Its address also switches the UI to its
model-training mode (`workflowType=machine_learning`), where experiments open on their runs.
"""

from __future__ import annotations

import json
import os
import sys

KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
VIEW = "prcrs-runs"
# the runs table's columns: each CV's mean test AUROC and AUPRC over folds, pooled out-of-fold
# AUROC, inner-validation AUROC (what searches choose by), diverged folds; what was run and on what
COLUMNS = tuple(f"metrics.`{m}`" for m in ("mean_test_auroc", "mean_test_auprc", "pooled_test_auroc",
                                           "mean_val_auroc", "diverged_folds")) + tuple(
    f"tags.`{t}`" for t in ("model", "horizon", "history", "protocol", "data_source"))


def view_state() -> dict:
    """The shared view: parent CV runs, sorted by mean test AUROC (best first), `COLUMNS` shown."""
    return {"searchFilter": "tags.role = 'cv_parent'", "orderByKey": "metrics.`mean_test_auroc`",
            "orderByAsc": False, "startTime": "ALL", "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
            "datasetsFilter": [], "selectedColumns": list(COLUMNS), "columnOrder": list(COLUMNS),
            "runListHidden": False, "viewMaximized": False}


def experiment_tags() -> dict[str, str]:
    """The tags that open a study's experiment on its runs, with the key columns."""
    return {KIND_TAG: KIND, f"mlflow.sharedViewState.{VIEW}": json.dumps(view_state())}


def runs_url(base: str, experiment_id: str) -> str:
    """The address of a study's runs view in the UI at `base` (http://host:port), in the UI's
    model-training mode (which then stays on for the experiments the user opens)."""
    query = f"viewStateShareKey={VIEW}&workflowType=machine_learning"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def tag_studies(uri: str) -> list[tuple[str, str]]:
    """Give every experiment of the store at `uri` (but MLflow's empty "Default") the runs view;
    (name, id) of each, in name order."""
    from mlflow.tracking import MlflowClient

    from prcrs.tracking.store import use_store

    client = MlflowClient(use_store(uri))
    studies = []
    for experiment in client.search_experiments():
        if experiment.name == "Default" and experiment.experiment_id == "0":
            continue
        for key, value in experiment_tags().items():
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        studies.append((experiment.name, experiment.experiment_id))
    return sorted(studies)


def main(argv: list[str] | None = None) -> int:
    """Tag the studies, print each one's runs address, then run `mlflow ui` on loopback."""
    from prcrs.tracking.store import tracking_uri

    host, port = "127.0.0.1", os.environ.get("PRCRS_UI_PORT", "5000")
    uri = tracking_uri()
    base = f"http://{host}:{port}"
    print(f"MLflow UI on {uri}; each study's runs, best mean test AUROC first:")
    for name, experiment_id in tag_studies(uri):
        print(f"  {name:16s} {runs_url(base, experiment_id)}")
    sys.stdout.flush()
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    os.execv(mlflow_bin, [mlflow_bin, "ui", "--backend-store-uri", uri, "--host", host, "--port", port,
                          *(argv or [])])
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
