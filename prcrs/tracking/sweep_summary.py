"""The table at the end of every sweep (`python run.py -m ...`): each config's overrides with its
mean ± sd AUROC and AUPRC over folds and its MLflow run, grouped by task (horizon, protocol,
factors: AUROCs of different tasks are not comparable) and ranked within each, best first;
printed, written beside the sweep's job folders (`sweep_summary.md`, `.csv`) and logged as
artifacts of a sweep-level MLflow run (`role=sweep_summary`). A Hydra callback
(conf/hydra/default.yaml), so every launcher gets it; configs a resumed sweep skipped are in it
too (their summary is the stored one)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("prcrs")
SHOWN = ("auroc", "auprc")


TASK = ("horizon", "protocol", "factors")


def sweep_table(sweep_dir: Path):
    """One row per job of the sweep in `sweep_dir` that wrote its summary: the job number, its
    task (`evaluate.task_of`, from the job's `run.json`), its overrides, run id, mean ± sd of each
    SHOWN metric and the folds they rest on; sorted by task, then mean AUROC (best first), with
    `rank` within the task."""
    import pandas as pd  # here, not at start-up: Hydra builds this callback before every run

    rows = []
    for summary in sorted(sweep_dir.glob("*/summary.json")):
        job = summary.parent
        metrics = json.loads(summary.read_text())
        record = json.loads((job / "run.json").read_text()) if (job / "run.json").is_file() else {}
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
        row = {"job": job.name, **{k: record.get("task", {}).get(k) for k in TASK},
               "config": " ".join(str(o) for o in overrides), "run_id": record.get("run_id")}
        for m in SHOWN:
            row[f"mean_test_{m}"] = metrics.get(f"mean_test_{m}", float("nan"))
            row[f"std_test_{m}"] = metrics.get(f"std_test_{m}", float("nan"))
        row["n_finite_folds"] = metrics.get("n_finite_folds")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values([*TASK, "mean_test_auroc"], ascending=[True, True, True, False], na_position="last",
                              key=lambda c: c.astype(str) if c.name in TASK else c)
    frame.insert(0, "rank", frame.groupby(list(TASK), dropna=False).cumcount() + 1)
    return frame


def markdown(table) -> str:
    """One table per task, its configs ranked."""
    parts = []
    for task, rows in table.groupby(list(TASK), dropna=False, sort=False):
        title = ", ".join(f"{k} {v}" for k, v in zip(TASK, task, strict=True))
        lines = [f"### {title}", "", "| rank | config | AUROC (mean ± sd over folds) | AUPRC (mean ± sd over folds) "
                 "| folds | job | run |", "|---|---|---|---|---|---|---|"]
        for row in rows.itertuples():
            cells = [f"{getattr(row, f'mean_test_{m}'):.3f} ± {getattr(row, f'std_test_{m}'):.3f}" for m in SHOWN]
            folds = "" if row.n_finite_folds is None or row.n_finite_folds != row.n_finite_folds else \
                f"{int(row.n_finite_folds)}"
            lines.append(f"| {row.rank} | {row.config or '(defaults)'} | {cells[0]} | {cells[1]} | {folds} | {row.job} "
                         f"| {row.run_id or ''} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, the sweep's table (`sweep_table`)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = sweep_table(sweep_dir)
        if table.empty:
            log.warning(f"sweep summary: no job of {sweep_dir} wrote a summary (all failed?)")
            return
        text = markdown(table)
        (sweep_dir / "sweep_summary.md").write_text(f"# Sweep summary\n\n{text}\n")
        table.to_csv(sweep_dir / "sweep_summary.csv", index=False)
        print(f"\nSweep summary ({len(table)} configs, best first within each task; also in "
              f"{sweep_dir / 'sweep_summary.md'}):\n"
              f"{text}\n", flush=True)
        try:
            _log_to_mlflow(config, sweep_dir)
        except Exception as exc:  # the table is on screen and on disk: a store problem is one line
            log.warning(f"sweep summary not logged to MLflow: {type(exc).__name__}: {exc}")


def _log_to_mlflow(config: DictConfig, sweep_dir: Path) -> None:
    import mlflow

    from prcrs import interrupts
    from prcrs.tracking import store

    experiment_id = store.setup(config.study, config.logger.tracking_uri)
    with interrupts.held(), mlflow.start_run(
            experiment_id=experiment_id, run_name=f"sweep summary {sweep_dir.name}",
            tags={"role": "sweep_summary", "study": config.study, "git_sha": store.git_sha()}):
        mlflow.log_artifact(str(sweep_dir / "sweep_summary.md"))
        mlflow.log_artifact(str(sweep_dir / "sweep_summary.csv"))
