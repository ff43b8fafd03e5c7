"""A cross-validation logged to MLflow: one parent run (params, summary metrics, out-of-fold
predictions, curves) with one nested run per fold (metrics, fitted model).

    with CVRunLogger(cfg, overrides, cohort, config_hash, experiment_id) as logger:
        result = cross_validate(run_spec(cfg, data.fill_values), data, covid, on_fold=logger.log_fold)
        run_id = logger.log_result(result)
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from prcrs import interrupts, schema
from prcrs.clinical.evaluation import clinical_metrics
from prcrs.clinical.subgroups import patient_covariates
from prcrs.code_fingerprint import code_fingerprint
from prcrs.data.cohort import Cohort
from prcrs.engine import CVResult, FoldOutput
from prcrs.metrics import METRICS
from prcrs.progress import Steps
from prcrs.run_config import RESULT_KEYS
from prcrs.tracking import leases, store

log = logging.getLogger("prcrs")
NOT_LOGGED = "<not logged: logger.log_data_file=false>"
FOLD_EXTRAS = ("threshold", "alarm_threshold", "seconds", "best_epoch", "epochs", "skipped_steps", "val_auroc",
               "diverged")


def data_file_name(cfg: DictConfig, source: str) -> str:
    """What the store may hold of the input file's name: the name (not the folder) when the user
    opts in with `logger.log_data_file=true`, else a placeholder (a file may be named after a
    patient). The synthetic cohort is always named."""
    if source == "synthetic":
        return source
    return Path(source).name if cfg.logger.get("log_data_file", False) else NOT_LOGGED


def redacted(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """The config and overrides as logged: `data.path` reduced to `data_file_name`."""
    cfg = copy.deepcopy(cfg)
    if cfg.data.get("path"):
        cfg.data.path = data_file_name(cfg, str(cfg.data.path))
    if cfg.data.get("mapping"):  # a site's mapping file: its name, not where it lives
        cfg.data.mapping = Path(str(cfg.data.mapping)).name
    shown = [f"data.path={data_file_name(cfg, o.split('=', 1)[1])}" if o.lstrip("+~").startswith("data.path=") else
             f"data.mapping={Path(o.split('=', 1)[1]).name}" if o.lstrip("+~").startswith("data.mapping=") else o
             for o in overrides]
    return cfg, shown


def run_label(cfg: DictConfig, data_source: str | None = None) -> str:
    """The parent run's name, read as a list of runs is: model, inputs (factor combination, a
    deleted group, history, COVID-19 pretraining), horizon, protocol, and `synthetic` when the
    data are. 'prcrs f1234 h1 honest', 'forest f1234+lags h2 honest synthetic',
    'cnn f1234-del_cytokines+covid h0 paper'."""
    inputs = f"f{cfg.factors}" + ("" if cfg.ablation.name == "none" else f"-{cfg.ablation.name}") + \
        ("" if cfg.history.name == "none" else f"+{cfg.history.name}") + \
        ("" if cfg.transfer.name == "none" else f"+{cfg.transfer.name}")
    synthetic = " synthetic" if data_source == "synthetic" else ""
    return f"{cfg.model.name} {inputs} h{cfg.horizon} {cfg.protocol.name}{synthetic}"


def run_tags(cfg: DictConfig, cohort: Cohort, config_hash: str) -> dict[str, str]:
    """Tags of a CV's runs: what was run, on which data (content id, never the folder), by whom."""
    return {"model": cfg.model.name, "ablation": cfg.ablation.name, "factors": str(cfg.factors),
            "horizon": str(cfg.horizon), "history": cfg.history.name, "protocol": cfg.protocol.name,
            "transfer": cfg.transfer.name,
            "data_source": cohort.data_source, "data_file": data_file_name(cfg, cohort.source),
            "data_content": cohort.content_id, "data_patients": str(cohort.n_patients), "git_sha": store.git_sha(),
            "study": cfg.study, "config_hash": config_hash, "code_fingerprint": code_fingerprint(),
            **leases.owner_tags()}


def run_records(cfg: DictConfig, overrides: list[str]) -> dict[str, str]:
    """A run's records as JSON tags: its (redacted) overrides as a list, its CV design and its
    history spec. `results.parent_runs` reads them back; nothing parses the params' strings."""
    import json
    from dataclasses import asdict

    from prcrs.run_config import history_spec

    design = {"folds": int(cfg.cv.folds), "repeats": int(cfg.cv.get("repeats", 1)), "seed": int(cfg.seed)}
    return {"prcrs.overrides": json.dumps(list(overrides)), "prcrs.cv_design": json.dumps(design),
            "prcrs.history": json.dumps(asdict(history_spec(cfg)))}


def _flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as params: Hydra's `_target_` becomes `<node>.class` (the class or
    function's name) and `_partial_` is left out: the meaningful values only."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = pd.json_normalize({k: resolved[k] for k in RESULT_KEYS if k in resolved}, sep=".").iloc[0].to_dict()
    flat["study"] = cfg.study
    out = {}
    for key, value in flat.items():
        if key.endswith("._partial_"):
            continue
        if key.endswith("._target_"):
            key, value = key.removesuffix("._target_") + ".class", str(value).rsplit(".", 1)[-1]
        out[key] = str(value)[:500]
    return out


class CVRunLogger:
    """Logs one cross-validation of `cfg` on `cohort` into the store (`logger.tracking_uri`).

    Entering claims the config: under the store's lock, `already_stored()` is asked first; when
    it returns something (another process finished or runs this config) that is kept as `found`,
    `run_id` stays None and nothing is logged. Otherwise the parent run starts. Leaving ends it:
    FINISHED, or FAILED/KILLED on an error.
    """

    def __init__(self, cfg: DictConfig, overrides: list[str], cohort: Cohort, config_hash: str,
                 experiment_id: str, already_stored: Callable[[], object | None] = lambda: None):
        self.cfg, self.label = cfg, run_label(cfg, cohort.data_source)
        self.tags = run_tags(cfg, cohort, config_hash)
        self.covariates = patient_covariates(cohort.frame)
        self.logged_cfg, self.logged_overrides = redacted(cfg, overrides)
        self.experiment_id, self.already_stored = experiment_id, already_stored
        self.run_id: str | None = None
        self.metrics: dict[str, float] = {}
        self.steps: Steps | None = None
        self.cohort = cohort
        self.found = None
        self._run = None
        self._lease: leases.Lease | None = None

    def __enter__(self) -> CVRunLogger:
        import mlflow

        try:  # a `with` does not call __exit__ when __enter__ raises: an error here must still end the run
            with interrupts.held():  # a Ctrl-C here is raised once the run is started and described
                with store.store_lock(self.cfg.logger.tracking_uri):  # one process claims a config
                    self.found = self.already_stored()
                    if self.found is not None:
                        return self
                    self._run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.label,
                                                 tags={**self.tags, "role": "cv_parent"})
                    self._lease = leases.Lease(self._run.info.run_id, self.cfg.logger.tracking_uri)
                self.run_id = self._run.info.run_id
                self._log_dataset()
                mlflow.log_params(_flat_params(self.logged_cfg))
                mlflow.log_param("overrides", " ".join(self.logged_overrides)[:500] or "-")  # for the UI's eye only
                mlflow.set_tags(run_records(self.cfg, self.logged_overrides))  # what code reads back
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _log_dataset(self) -> None:
        """The cohort as the run's input (the UI's Dataset column): its name, content id (digest)
        and source; MLflow keeps its schema and row count, not its rows."""
        import mlflow

        cohort = self.cohort
        frame = cohort.frame[[c for c in schema.FEATURE_KEYS if c in cohort.frame]]
        with warnings.catch_warnings():  # a file name (or its placeholder) read as a local artifact source
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(frame, source=data_file_name(self.cfg, cohort.source),
                                              name=f"CAR-T {cohort.data_source} ({cohort.n_patients} patients)",
                                              digest=cohort.content_id[:36])
        mlflow.log_input(dataset, context="cross-validation")

    def __exit__(self, *exc_info) -> None:
        if self._run is not None:
            if exc_info[0] is None and interrupts.asked():  # a Ctrl-C a library swallowed: never FINISHED
                exc_info = (KeyboardInterrupt, KeyboardInterrupt(), None)
            try:
                with interrupts.held():  # a run's end is written whole
                    self._run.__exit__(*exc_info)
            finally:
                if self._lease is not None:
                    self._lease.release()

    def log_fold(self, k: int, n: int, out: FoldOutput) -> None:
        """A nested run for fold `k` (0-based) of `n`, named and tagged as the console counts it
        ("fold 1/5", tag fold=1; tag split=0, as its `split0_test_*` metrics on the parent): its
        test metrics, extras, a network's per-epoch losses (`train_loss`, `val_loss`, step =
        epoch) and the fitted model."""
        import mlflow
        from mlflow.entities import Metric

        metrics = out.metrics
        with interrupts.held(), mlflow.start_run(
                experiment_id=self.experiment_id, run_name=f"{self.label} fold {k + 1}/{n}", nested=True,
                tags={**self.tags, "role": "cv_fold", "fold": str(k + 1), "split": str(k)}) as run:
            mlflow.log_metrics({f"test_{m}": v for m, v in metrics.items() if m in METRICS})
            mlflow.log_metrics({m: float(metrics[m]) for m in FOLD_EXTRAS if m in metrics})
            mlflow.log_metrics({m: v for m, v in metrics.items() if m.startswith("importance_")})
            if out.curves:
                now = int(time.time() * 1000)
                curves = [Metric(name, value, now, epoch) for epoch, train, val in out.curves
                          for name, value in (("train_loss", train), ("val_loss", val)) if value == value]
                mlflow.MlflowClient().log_batch(run.info.run_id, metrics=curves)
            if out.model is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "model.joblib"
                    path.write_bytes(out.model)
                    mlflow.log_artifact(str(path), artifact_path="model")
        if self.steps is None:
            self.steps = Steps(n, f"[{self.label}] folds")
        self.steps.done(f"[{self.label}] fold {k + 1}/{n} (split{k}): AUROC {metrics['auroc']:.3f}, AUPRC "
                        f"{metrics['auprc']:.3f}, threshold {metrics['threshold']:.3f} ({metrics['seconds']:.1f} s "
                        "of training and scoring)")

    def log_result(self, result: CVResult) -> str:
        """The parent run's summary metrics (`CVResult.summary`), clinical metrics
        (`prcrs.clinical.evaluation.clinical_metrics`: calibration, net benefit, warning time, subgroups),
        config, overrides, out-of-fold predictions (unless `logger.log_predictions=false`) and
        curves; returns its run id. The metrics logged are kept as `metrics`."""
        import mlflow

        from prcrs.plots import curve_figures

        self.metrics = {**result.summary(), **clinical_metrics(result.oof, self.covariates, self.cfg.seed)}
        cfg = self.logged_cfg
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (tmp / "overrides.txt").write_text("\n".join(self.logged_overrides) + "\n")
            if cfg.logger.get("log_predictions", True):  # patient numbers (0-based, in file order) and days
                result.oof.to_csv(tmp / "oof_predictions.csv", index=False)
            for name, fig in curve_figures(result.oof, title=f"{cfg.model.name} h{cfg.horizon} "
                                                                f"{cfg.protocol.name}").items():
                fig.savefig(tmp / f"{name}.png", dpi=110, bbox_inches="tight")
            with interrupts.held():  # computed above: only the writes are held
                mlflow.log_metrics(self.metrics)
                if self.metrics.get("diverged_folds", 0) > 0:  # marked: its means rest on n_finite_folds folds only
                    mlflow.set_tag("diverged", f"{int(self.metrics['diverged_folds'])} of {len(result.folds)} folds")
                if self.metrics.get("skipped_steps", 0) > 0:  # trained, but some steps were left out: said
                    mlflow.set_tag("skipped_steps", f"{int(self.metrics['skipped_steps'])} optimizer steps left "
                                                    "out (a NaN or infinite gradient), over all folds")
                if result.n_parameters is not None:
                    mlflow.log_param("n_parameters", result.n_parameters)
                mlflow.log_artifacts(str(tmp))
        return self.run_id
