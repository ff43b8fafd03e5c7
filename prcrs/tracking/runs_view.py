"""The runs view each study's MLflow experiment holds, so that the UI opens on its CV runs.

MLflow 3 starts in its GenAI mode, where an experiment opens on "Traces", and shows no metric
column until one is chosen. Every study's experiment is therefore tagged as model training
(`mlflow.experimentKind`) and given a shared view (the tag `mlflow.sharedViewState.<VIEW>`,
which the UI loads from `?viewStateShareKey=<VIEW>`): the CV runs only, best mean test AUROC
first, with the key metrics and tags as columns. Its address also switches the UI to its
model-training mode (`workflowType=machine_learning`), where experiments open on their runs.
`prcrs.tracking.ui` (`make ui`) gives older studies the view and prints each address.
"""

from __future__ import annotations

import json

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
