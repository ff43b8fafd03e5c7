"""`make bench`: time a 5-fold CV of prcrs and prcrs_paper against a plain PyTorch loop.

The CV runs through the project's engine (Lightning, MLflow into a temporary store). The plain
loop repeats, fold by fold, the same rows, preprocessing, network, optimizer, gradient clipping,
batch size and number of epochs (each epoch with its validation pass where the protocol has one),
with no framework, in the same fold workers. Both are timed warm, as every CV of a sweep or of
the reproduction runs: the store exists and the workers have started (their start and the
store's creation are timed apart), alternately `--repeats` times (timings on this machine vary
by about 10 %); `overhead_ratio` divides the medians. `cold_run_seconds` is the wall time of a
whole `python run.py model=prcrs` in a fresh process against an existing store. Writes its
sections of bench.json at the root; `benchmarks/targets.py` holds the targets and says which are met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_file import record
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]


def plain_fold(cfg, data, k: int, fold, epochs: int) -> int:
    """Train fold `k` for `epochs` epochs with no framework; returns the training rows seen."""
    from prcrs.fitting import InnerSplit
    from prcrs.run_config import build_estimator

    torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    protocol = cfg.protocol  # the engine's inner split, as fit_rows makes it
    fit, val = fold.train, None
    if protocol.early_stopping or protocol.threshold == "inner":
        positions = InnerSplit(cfg.cv.inner_val_fraction, cfg.seed + k)(data.grade_target[fold.train],
                                                                       data.patient[fold.train])
        fit, val = (fold.train[p] for p in positions)
    est = build_estimator(cfg, data.fill_values)
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
    MLflow, in the engine's fold workers (cv.n_jobs of trainer.threads threads)."""
    from prcrs import engine, workers
    from prcrs.splits import make_folds

    folds = make_folds(cfg.protocol.split, data.y, data.grade_target, data.patient, cfg.cv.folds, cfg.cv.repeats,
                       cfg.seed)
    jobs = [(cfg, data, k, fold, epochs) for k, (fold, epochs) in enumerate(zip(folds, folds_epochs, strict=True))]
    start = time.perf_counter()
    rows = list(workers.map_ordered(plain_fold, jobs, engine.fold_jobs(cfg.cv.n_jobs, len(folds))))
    return time.perf_counter() - start, sum(rows)


def start_workers(cfg) -> float:
    """Seconds to start the fold workers (the fork server importing Lightning, then the forks);
    paid once per process, and in `python run.py` alongside loading the data and the store."""
    from prcrs import engine, workers

    n_jobs = engine.fold_jobs(cfg.cv.n_jobs, cfg.cv.folds)
    start = time.perf_counter()
    workers.prestart(cfg.model.kind)
    list(workers.map_ordered(os.getpid, [()] * n_jobs, n_jobs))
    return time.perf_counter() - start


def cold_run(name: str, uri: str) -> float:
    """Wall seconds of `python run.py model=<name>` in a fresh process, the store existing."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "run.py", f"model={name}", "study=bench_cold", f"logger.tracking_uri={uri}",
                    f"hydra.run.dir={Path(uri.removeprefix('sqlite:///')).parent / 'hydra'}"],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_model(name: str, repeats: int, cold: bool) -> dict:
    import mlflow

    from prcrs import run_config
    from prcrs.evaluate import evaluate
    from prcrs.tracking import store

    tmp = tempfile.TemporaryDirectory()
    uri = f"sqlite:///{tmp.name}/bench.db"
    cfg = run_config.compose_config([f"model={name}", "logger.log_models=true", f"logger.tracking_uri={uri}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cohort = run_config.load_cart_for(cfg)
    data = run_config.horizon_data(cfg, cohort)
    start = time.perf_counter()
    store.setup("bench_0", uri)
    store_seconds = time.perf_counter() - start
    workers_seconds = start_workers(cfg)
    cv_seconds, plain_seconds = [], []
    with tmp:
        for r in range(repeats):
            cfg.study = f"bench_{r}"  # another study each time: not skipped as finished
            start = time.perf_counter()
            evaluate(cfg)
            cv_seconds.append(time.perf_counter() - start)
            runs = mlflow.search_runs([mlflow.get_experiment_by_name(cfg.study).experiment_id],
                                      output_format="list", filter_string="tags.role = 'cv_fold'")
            epochs = [int(r.data.metrics["epochs"]) for r in sorted(runs, key=lambda r: int(r.data.tags["fold"]))]
            seconds, rows = plain_loop(cfg, data, epochs)
            plain_seconds.append(seconds)
        cold_seconds = cold_run(name, uri) if cold else None
    cv, plain = float(np.median(cv_seconds)), float(np.median(plain_seconds))
    result = {"cv5_seconds": round(cv, 2), "plain_loop_seconds": round(plain, 2),
              "overhead_ratio": round(cv / plain, 3), "rows_per_second": round(rows / cv, 1),
              "cv5_seconds_each": [round(x, 2) for x in cv_seconds],
              "plain_loop_seconds_each": [round(x, 2) for x in plain_seconds],
              "worker_start_seconds": round(workers_seconds, 2), "store_setup_seconds": round(store_seconds, 2),
              "epochs_per_fold": epochs, "data_source": cohort.data_source, "rows": len(data)}
    if cold:
        result["cold_run_seconds"] = round(cold_seconds, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="engine / plain loop timings per model (median)")
    args = parser.parse_args()
    result = {name: bench_model(name, args.repeats, cold=name == "prcrs") for name in ("prcrs", "prcrs_paper")}
    result["data_source"] = result["prcrs"]["data_source"]
    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                         "torch": torch.__version__}
    for section, value in result.items():  # beside the sections other benchmarks wrote
        record(section, value, echo=False)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
