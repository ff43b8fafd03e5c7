"""Platform models in the MLflow model registry, as pyfunc models.

Each (combination, horizon) is registered as `prcrs-f<combination>-h<horizon>`: a pyfunc whose
input is a frame of that combination's factor keys (doubles, each optional, schema units) and
whose output holds `probability`, `calibrated_probability`, `paper_probability` and `risk_band`. It serves
with `mlflow models serve -m models:/prcrs-f1234-h1/latest --env-manager local`.

Loading a model unpickles it, which runs code: the MLflow store is the trust boundary. Point
`predict` and `serve` only at a store you trust. A version is loaded only when `train-final`
tagged it (`prcrs_model`) and its logged signature is its combination's factors; anything
else in the store is refused before it is unpickled.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from prcrs import schema, tracking
from prcrs.errors import DataError, PrcrsError
from prcrs.serving.inputs import field_errors, resolve_columns
from prcrs.serving.platform import HORIZONS, CombinationModel, Platform, registered_name

PREDICTIONS = ("probability", "calibrated_probability", "paper_probability")
TAG = "prcrs_model"  # model version tag set by `register`: "<combination>/h<horizon>"


class CRSPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps a `CombinationModel` (joblib artifact "model"); checks values like `prcrs predict`."""

    def load_context(self, context):
        import joblib

        self.model: CombinationModel = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)  # MLflow has dropped columns outside the signature (it warns)
        mapping = resolve_columns(frame.columns)[0]
        for i, cells in enumerate(frame[list(mapping)].to_dict("records")):
            errors = field_errors(cells, mapping)
            if errors:
                raise DataError(f"row {i}: " + "; ".join(f"{c}: {m}" for c, m in errors.items()))
        X = frame.rename(columns=mapping).reindex(columns=list(self.model.features)).apply(pd.to_numeric)
        if not self.model.history.any:
            return self.model.predict(X)
        return self.model.predict(X, frame["patient"].astype(str).to_numpy(),
                                  pd.to_numeric(frame["day"]).to_numpy(float))


def _history_ids(history: bool) -> list[tuple[str, str]]:
    """The columns a history model needs besides the factors: which patient, which day."""
    return [("string", "patient"), ("double", "day")] if history else []


def _signature(model: CombinationModel):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double", k, required=False) for k in model.features]
                    + [ColSpec(kind, name) for kind, name in _history_ids(model.history.any)])
    outputs = Schema([ColSpec("double", name) for name in PREDICTIONS] + [ColSpec("string", "risk_band")])
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
    mlflow.MlflowClient().set_model_version_tag(name, version, TAG, f"{model.combination}/h{model.horizon}")
    return version


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


def load_platform(tracking_uri: str | None = None, horizons=HORIZONS) -> Platform:
    """The latest registered version of every combination at `horizons`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking.use_store(tracking_uri)
    client = mlflow.MlflowClient()
    models, missing = {}, []
    for code in schema.COMBINATIONS:
        for h in horizons:
            name = registered_name(code, h)
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                missing.append(name)
                continue
            latest = max(versions, key=lambda v: int(v.version))
            check_trusted(latest, code, h)
            loaded = mlflow.pyfunc.load_model(f"models:/{name}/{latest.version}")
            model = loaded.unwrap_python_model().model
            model.info["registered_version"] = str(latest.version)
            models[(code, h)] = model
    if missing:
        raise PrcrsError(f"no registered model {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} in "
                         f"{tracking.tracking_uri(tracking_uri)}: run `prcrs train-final` first")
    return Platform(models)
