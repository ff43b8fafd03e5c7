"""The table at the end of every sweep (`python run.py -m ...`): each config's overrides with its
mean ± sd AUROC and AUPRC over folds, best first; printed, written beside the sweep's job folders
(`sweep_summary.md`, `.csv`) and logged as artifacts of a sweep-level MLflow run
(`role=sweep_summary`). A Hydra callback (conf/hydra/default.yaml), so every launcher gets it;
configs a resumed sweep skipped are in it too (their summary is the stored one)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("prcrs")
SHOWN = ("auroc", "auprc")


def sweep_table(sweep_dir: Path):
    """One row per job of the sweep in `sweep_dir` that wrote its summary: the job number, its
    overrides and mean ± sd of each SHOWN metric, sorted by mean AUROC (best first)."""
    import pandas as pd  # here, not at start-up: Hydra builds this callback before every run

    rows = []
    for summary in sorted(sweep_dir.glob("*/summary.json")):
        job = summary.parent
        metrics = json.loads(summary.read_text())
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
        row = {"job": job.name, "config": " ".join(str(o) for o in overrides)}
        for m in SHOWN:
            row[f"mean_test_{m}"] = metrics.get(f"mean_test_{m}", float("nan"))
            row[f"std_test_{m}"] = metrics.get(f"std_test_{m}", float("nan"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values("mean_test_auroc", ascending=False, na_position="last") if rows else frame


def markdown(table) -> str:
    lines = ["| rank | config | AUROC (mean ± sd over folds) | AUPRC (mean ± sd over folds) | job |",
             "|---|---|---|---|---|"]
    for rank, row in enumerate(table.itertuples(), 1):
        cells = [f"{getattr(row, f'mean_test_{m}'):.3f} ± {getattr(row, f'std_test_{m}'):.3f}" for m in SHOWN]
        lines.append(f"| {rank} | {row.config or '(defaults)'} | {cells[0]} | {cells[1]} | {row.job} |")
    return "\n".join(lines)


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
        print(f"\nSweep summary ({len(table)} configs, best first; also in {sweep_dir / 'sweep_summary.md'}):\n"
              f"{text}\n", flush=True)
        try:
            _log_to_mlflow(config, sweep_dir)
        except Exception as exc:  # the table is on screen and on disk: a store problem is one line
            log.warning(f"sweep summary not logged to MLflow: {type(exc).__name__}: {exc}")


def _log_to_mlflow(config: DictConfig, sweep_dir: Path) -> None:
    import mlflow

    from prcrs import tracking

    experiment_id = tracking.setup(config.study, config.logger.tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"sweep summary {sweep_dir.name}",
                          tags={"role": "sweep_summary", "study": config.study, "git_sha": tracking.git_sha()}):
        mlflow.log_artifact(str(sweep_dir / "sweep_summary.md"))
        mlflow.log_artifact(str(sweep_dir / "sweep_summary.csv"))
