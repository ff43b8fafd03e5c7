"""`make bench`: time a 5-fold CV of prcrs and prcrs_paper against a plain PyTorch loop.

The CV runs through the project's engine (Lightning, MLflow into a temporary store). The plain
loop repeats, fold by fold, the same rows, preprocessing, network, optimizer, gradient clipping,
batch size and number of epochs (each epoch with its validation pass where the protocol has one),
with no framework and the same fold parallelism. Both run in fold workers started beforehand; the
start (process spawn + importing Lightning, paid once per process) is timed apart as
`worker_start_seconds`: a cold `python run.py` pays cv5_seconds + worker_start_seconds.
Writes bench.json at the root.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]


def plain_fold(cfg, data, k: int, fold, epochs: int) -> int:
    """Train fold `k` for `epochs` epochs with no framework; returns the training rows seen."""
    from prcrs.engine import build_estimator, fold_rows

    torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    fit, val = fold_rows(cfg, data, k, fold)
    est = build_estimator(cfg, tuple(data.X.columns))
    pre = est.preprocessor.fit(data.X.iloc[fit], data.grade_today[fit])
    x, m = (torch.from_numpy(a) for a in pre.transform_with_missing(data.X.iloc[fit]))
    y = torch.from_numpy(data.y[fit].astype(np.int64))
    net = instantiate(cfg.model.estimator.backbone)(n_features=x.shape[1], n_classes=2)
    opt = instantiate(cfg.optimizer)(params=net.parameters())
    clip = cfg.trainer.gradient_clip
    if val is not None:
        xv, mv = (torch.from_numpy(a) for a in pre.transform_with_missing(data.X.iloc[val]))  # once, as the engine
    rows = 0
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), cfg.trainer.batch_size):
            idx = order[i:i + cfg.trainer.batch_size]
            if len(idx) < 2:
                continue
            loss = torch.nn.functional.cross_entropy(net(x[idx], m[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
        rows += len(x)
        if val is not None:  # the epoch's validation pass, as early stopping needs
            net.eval()
            with torch.no_grad():
                net(xv, mv).softmax(-1)
    return rows


def plain_loop(cfg, data, folds_epochs) -> tuple[float, int]:
    """Seconds and training rows seen for the engine's folds, rows and epochs without Lightning or
    MLflow, with the same fold parallelism (cv.n_jobs workers of trainer.threads threads)."""
    from joblib import Parallel, delayed

    from prcrs.splits import make_folds

    folds = make_folds(cfg.protocol.split, data.y, data.grade_target, data.patient, cfg.cv.folds, cfg.cv.repeats,
                       cfg.seed)
    start = time.perf_counter()
    rows = Parallel(n_jobs=min(cfg.cv.n_jobs, len(folds)))(
        delayed(plain_fold)(cfg, data, k, fold, epochs)
        for k, (fold, epochs) in enumerate(zip(folds, folds_epochs, strict=True)))
    return time.perf_counter() - start, sum(rows)


def _import_models() -> None:
    import prcrs.models.estimators  # noqa: F401  (Lightning: about 9 s to import on this machine)


def start_workers(n_jobs: int) -> float:
    """Seconds to start the fold workers and import Lightning in them (paid once per process:
    later CVs, e.g. a sweep's, reuse them)."""
    from joblib import Parallel, delayed

    start = time.perf_counter()
    Parallel(n_jobs=n_jobs)(delayed(_import_models)() for _ in range(n_jobs))
    return time.perf_counter() - start


def bench_model(name: str) -> dict:
    from prcrs import engine
    from prcrs.data.cohort import load_cohort
    from prcrs.data.targets import make_horizon

    tmp = tempfile.TemporaryDirectory()
    cfg = engine.compose_config([f"model={name}", "study=bench", "logger.log_models=true",
                                 f"logger.tracking_uri=sqlite:///{tmp.name}/bench.db"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cohort = load_cohort(cfg.data.kind, cfg.data.path, seed=cfg.seed)
    data = make_horizon(cohort, cfg.horizon, engine.features_of(cfg))
    workers_seconds = start_workers(cfg.cv.n_jobs)
    with tmp:
        start = time.perf_counter()
        engine.run(cfg)
        cv_seconds = time.perf_counter() - start
        import mlflow

        runs = mlflow.search_runs([mlflow.get_experiment_by_name("bench").experiment_id], output_format="list",
                                  filter_string="tags.role = 'cv_fold'")
        epochs = [int(r.data.metrics["epochs"]) for r in sorted(runs, key=lambda r: int(r.data.tags["fold"]))]
    plain_seconds, rows = plain_loop(cfg, data, epochs)
    return {"cv5_seconds": round(cv_seconds, 2), "worker_start_seconds": round(workers_seconds, 2),
            "plain_loop_seconds": round(plain_seconds, 2),
            "overhead_ratio": round(cv_seconds / plain_seconds, 3), "rows_per_second": round(rows / cv_seconds, 1),
            "epochs_per_fold": epochs, "data_source": cohort.data_source, "rows": len(data)}


def main() -> None:
    result = {name: bench_model(name) for name in ("prcrs", "prcrs_paper")}
    result["data_source"] = result["prcrs"]["data_source"]
    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                         "torch": torch.__version__}
    result["targets"] = {"overhead_ratio_max": 1.3, "prcrs_cv5_seconds_max": 60}
    (ROOT / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
