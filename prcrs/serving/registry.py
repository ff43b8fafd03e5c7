"""Platform models in the MLflow model registry, as pyfunc models.

Each (combination, horizon) is registered as `prcrs-f<combination>-h<horizon>`: a pyfunc whose
input is a frame of that combination's factor keys (doubles, each optional, schema units) and
whose output has the columns of `prcrs predict` (`platform.OUTPUT_COLUMNS`: the risk, the day it
is for, the band, the factors, the release and where the model came from, with `synthetic`). It
serves with `mlflow models serve -m models:/prcrs-f1234-h1/latest --env-manager local`.

The models `train-final` trains together are one release: each version is tagged with the
release id, and a run tagged `role=release` holds the manifest (`release.json`: every name and
version), written last. `load_platform` serves the newest release with a manifest, or the one
asked for, and nothing else: a half-registered release is never served.

Loading a model unpickles it, which runs code: the MLflow store is the trust boundary. Point
`predict` and `serve` only at a store you trust. A version is loaded only when `train-final`
tagged it (`prcrs_model`) and its logged signature is its combination's factors; anything
else in the store is refused before it is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd

from prcrs import schema
from prcrs.data.reading import field_errors, read_columns
from prcrs.errors import DataError, PrcrsError
from prcrs.serving.platform import OUTPUT_COLUMNS, PROBABILITIES, CombinationModel, Platform, registered_name
from prcrs.tracking import store

PREDICTIONS = ("probability", "calibrated_probability", "paper_probability")
TAG = "prcrs_model"  # model version tag set by `register`: "<combination>/h<horizon>"
RELEASE_TAG = "prcrs_release"  # model version tag: the release id
MANIFEST = "release.json"  # the release run's artifact: {"release", "models": [{"name", "version"}], ...}


class CRSPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps a `CombinationModel` (joblib artifact "model"); reads values like `prcrs predict` and
    returns its columns (`platform.OUTPUT_COLUMNS`) and `synthetic` (trained on synthetic data)."""

    def load_context(self, context):
        import joblib

        self.model: CombinationModel = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)  # MLflow has dropped columns outside the signature (it warns)
        columns = read_columns(frame.columns)  # the signature's schema units: percentages as fractions, always
        for i, cells in enumerate(frame[list(columns.readings)].to_dict("records")):
            errors = field_errors(cells, columns)
            if errors:
                raise DataError(f"row {i}: " + "; ".join(f"{c}: {m}" for c, m in errors.items()))
        model = self.model
        table, _ = Platform({(model.combination, model.horizon): model}).predict_table(frame, [model.horizon],
                                                                                       columns=columns)
        return table.assign(synthetic=model.info.get("data_source") == "synthetic")


def _history_ids(history: bool) -> list[tuple[str, str]]:
    """The columns a history model needs besides the factors: which patient, which day."""
    return [("string", "patient"), ("double", "day")] if history else []


def _signature(model: CombinationModel):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double", k, required=False) for k in model.features]
                    + [ColSpec(kind, name) for kind, name in _history_ids(model.history.any)])
    numbers = {"row", "day", "horizon", "predicted_day", "past_days", "cv_auroc", *PROBABILITIES}
    outputs = Schema([ColSpec("double" if name in numbers else "string", name, required=False)
                      for name in OUTPUT_COLUMNS] + [ColSpec("boolean", "synthetic")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _requirements() -> list[str]:
    """Pinned versions of what the pyfunc imports (the prcrs package itself must be installed)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "torch", "pytorch-lightning", "scikit-learn", "pandas",
                                            "numpy", "joblib")]


def register(model: CombinationModel) -> str:
    """Log `model` as a pyfunc in the active run and register it; returns the model version."""
    import joblib

    name = registered_name(model.combination, model.horizon)
    example = pd.DataFrame([{k: model.medians.get(k) for k in model.features}])
    if model.history.any:  # two days of one patient: the example shows how days line up
        example = pd.concat([example, example], ignore_index=True).assign(patient="example", day=[1.0, 2.0])
    with tempfile.TemporaryDirectory() as tmp:
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # its notes on cloudpickle, once per model
        path = Path(tmp) / "combination_model.joblib"
        joblib.dump(model, path)
        info = mlflow.pyfunc.log_model(name="platform_model", python_model=CRSPyfunc(), artifacts={"model": str(path)},
                                       signature=_signature(model), input_example=example,
                                       pip_requirements=_requirements(), registered_model_name=name)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, TAG, f"{model.combination}/h{model.horizon}")
    client.set_model_version_tag(name, version, RELEASE_TAG, model.info["release"])
    return version


def new_release_id() -> str:
    """A release id: its UTC time and a random suffix, e.g. 'r20261201T1942-3fa9c1'."""
    return f"r{datetime.now(UTC):%Y%m%dT%H%M}-{uuid.uuid4().hex[:6]}"


def record_release(release: str, members: list[tuple[str, str]], study: str, data_source: str,
                   tracking_uri: str | None = None, about: dict | None = None) -> str:
    """The release run (`role=release`): its manifest of every (name, version), written after all
    were registered, with `about` (e.g. the site a recalibrated release is for, and its numbers);
    returns its run id."""
    experiment_id = store.setup(study, tracking_uri)
    manifest = {"release": release, "data_source": data_source, "created": datetime.now(UTC).isoformat(),
                **(about or {}), "models": [{"name": name, "version": version} for name, version in members]}
    tags = {"role": "release", "release": release, "data_source": data_source, "git_sha": store.git_sha()}
    if about and about.get("site"):
        tags["site"] = str(about["site"])
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"release {release}", tags=tags) as run:
        mlflow.log_dict(manifest, MANIFEST)
    return run.info.run_id


def publish(models: list[CombinationModel], release: str, study: str, data_source: str,
            tracking_uri: str | None = None, run_tags=None, about: dict | None = None) -> list[tuple[str, str]]:
    """Register every model of a release, each in its own run (`run_tags(model)`: that run's tags,
    `role=final_model` by default) with its numbers, then record the release (`record_release`);
    returns [(registered name, version)]. Nothing is served until the release is recorded."""
    experiment_id = store.setup(study, tracking_uri)
    members = []
    for model in models:
        model.info["release"] = release
        name = registered_name(model.combination, model.horizon)
        tags = {"role": "final_model", "factors": model.combination, "horizon": str(model.horizon),
                "data_source": data_source, "git_sha": store.git_sha(), "study": study, "release": release,
                "calibrator": model.calibrator_name, **(run_tags(model) if run_tags else {})}
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"final {name}", tags=tags):
            mlflow.log_metrics({k: float(v) for k, v in model.info.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
            members.append((name, register(model)))
    record_release(release, members, study, data_source, tracking_uri, about)
    return members


def releases(tracking_uri: str | None = None) -> pd.DataFrame:
    """The recorded releases, newest first: release, run_id, start_time (finished runs only)."""
    store.open_store(tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.role = 'release'",
                              order_by=["attributes.start_time DESC"])
    if runs.empty:
        return pd.DataFrame(columns=["release", "run_id", "start_time"])
    runs = runs[runs["status"] == "FINISHED"]
    return runs.rename(columns={"tags.release": "release"})[["release", "run_id", "start_time"]]


def check_trusted(version, code: str, horizon: int) -> None:
    """PrcrsError unless `version` (a registered ModelVersion) is a platform model of `code` at
    `horizon` as `register` made it: its tag, and its signature read from the MLmodel file (YAML,
    no unpickling)."""
    where = f"{version.name} version {version.version}"
    if version.tags.get(TAG) != f"{code}/h{horizon}":
        raise PrcrsError(f"refusing to load {where}: it was not registered by `prcrs train-final` (no {TAG} tag "
                         f"for {code}/h{horizon}); the store is the trust boundary, see README 'Data safety'")
    from mlflow.models import get_model_info

    signature = get_model_info(f"models:/{version.name}/{version.version}").signature
    wanted = list(schema.select_features("none", code))
    names = [] if signature is None else signature.inputs.input_names()
    if names[len(wanted):] == [name for _, name in _history_ids(True)]:  # a history model
        names = names[:len(wanted)]
    if signature is None or names != wanted:
        raise PrcrsError(f"refusing to load {where}: its signature is not the factors of combination {code}")


def load_platform(tracking_uri: str | None = None, horizons=None, release: str | None = None) -> Platform:
    """The models of one release at `horizons` (None: all of its horizons): the newest recorded
    release, or `release`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    found = releases(tracking_uri)
    uri = store.tracking_uri(tracking_uri)
    if release is not None:
        found = found[found["release"] == release]
        if found.empty:
            raise PrcrsError(f"no recorded release {release!r} in {uri}: `prcrs train-final` records one when every "
                             "model of it is registered")
    if found.empty:
        raise PrcrsError(f"no platform release in {uri}: run `prcrs train-final` first (a release is recorded once "
                         "every model of it is registered)")
    chosen = found.iloc[0]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=chosen["run_id"], artifact_path=MANIFEST,
                                                                      dst_path=tmp)).read_text())
    client = mlflow.MlflowClient()
    models = {}
    for member in manifest["models"]:
        version = client.get_model_version(member["name"], member["version"])
        code, h = re.fullmatch(r"prcrs-f(\d+)-h(\d+)", member["name"]).groups()
        check_trusted(version, code, int(h))  # before anything else: the store is the trust boundary
        if horizons is not None and int(h) not in horizons:
            continue
        if version.tags.get(RELEASE_TAG) != manifest["release"]:
            raise PrcrsError(f"refusing {member['name']} version {member['version']}: it is not of release "
                             f"{manifest['release']}")
        model = mlflow.pyfunc.load_model(f"models:/{member['name']}/{member['version']}").unwrap_python_model().model
        model.info["registered_version"] = str(member["version"])
        models[(code, int(h))] = model
    expected = len(schema.COMBINATIONS) * len({h for _, h in models})
    if len(models) < expected:
        logging.getLogger("prcrs").warning(
            f"release {manifest['release']} holds {len(models)} of the {expected} combination x horizon models: rows "
            "that need another combination get an error")
    missing = sorted(set(horizons or ()) - {h for _, h in models})
    if missing:
        raise PrcrsError(f"release {manifest['release']} has no model at horizon(s) {missing}: it was trained for "
                         f"{sorted({h for _, h in models}) or 'other horizons'}")
    return Platform(models)
