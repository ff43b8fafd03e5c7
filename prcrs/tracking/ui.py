"""The MLflow UI, opened on a study's runs: `make ui` (`python -m prcrs.tracking.ui`) gives
every study the runs view of `prcrs.tracking.runs_view` and prints each one's address."""

from __future__ import annotations

import os
import sys

from prcrs.tracking.runs_view import experiment_tags, runs_url


def tag_studies(uri: str) -> list[tuple[str, str]]:
    """Give every experiment of the store at `uri` (but MLflow's empty "Default") the runs view;
    (name, id) of each, in name order."""
    from mlflow.tracking import MlflowClient

    from prcrs.tracking.store import open_store

    client = MlflowClient(open_store(uri))
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
