"""Keeping an input file's path out of the output folders: Hydra writes the composed config and
the overrides to `<run dir>/.hydra/*.yaml` (and a sweep's to `multirun.yaml`) before a job starts;
`RedactDataPath`, a Hydra callback (conf/hydra/default.yaml), rewrites them there with the path of
`data.path` reduced as MLflow logs it (`cv_logging.data_file_name`: a placeholder unless
`logger.log_data_file=true`, then the file's name only): a file may be named after a patient."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def redact_files(files: list[Path], path: str, shown: str) -> None:
    """Replace every occurrence of `path` (as given, and resolved) in `files` by `shown`."""
    spellings = sorted({path, str(Path(path).expanduser().resolve())}, key=len, reverse=True)
    for file in files:
        if not file.is_file():
            continue
        text = file.read_text()
        for spelling in spellings:
            text = text.replace(spelling, shown)
        file.write_text(text)


class RedactDataPath(Callback):
    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        from prcrs.tracking.cv_logging import data_file_name

        path = config.get("data", {}).get("path")
        if not path:
            return
        hydra = HydraConfig.get()
        run = Path(hydra.runtime.output_dir)
        files = [run / (hydra.output_subdir or ".hydra") / name for name in ("config.yaml", "hydra.yaml",
                                                                              "overrides.yaml")]
        files.append(Path(hydra.sweep.dir) / "multirun.yaml")
        redact_files(files, str(path), data_file_name(config, str(path)).replace(": ", ", "))  # plain YAML
