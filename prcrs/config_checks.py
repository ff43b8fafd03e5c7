"""Checks of the config values a run reads, before any data loads: each bad value is a one-line
ConfigError naming the option and what it takes."""

from __future__ import annotations

from omegaconf import DictConfig

from prcrs.errors import ConfigError


def _whole(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name}={value} must be a whole number >= {least}")
    return value


def check_run_config(cfg: DictConfig) -> None:
    """The seed, the CV design, the validation shares and the synthetic cohort's size.

    >>> from omegaconf import OmegaConf
    >>> check_run_config(OmegaConf.create({"seed": "abc", "cv": {}, "data": {}}))
    Traceback (most recent call last):
    prcrs.errors.ConfigError: seed=abc must be a whole number >= 0
    """
    _whole("seed", cfg.seed, 0)
    _whole("cv.folds", cfg.cv.get("folds", 5), 2)
    _whole("cv.repeats", cfg.cv.get("repeats", 1), 1)
    _whole("cv.n_jobs", cfg.cv.get("n_jobs", 1), 1)
    _whole("cv.explain_rows", cfg.cv.get("explain_rows", 0), 0)
    _whole("data.n_patients", cfg.data.get("n_patients", 202), 1)
    _share("cv.inner_val_fraction", cfg.cv.get("inner_val_fraction", 0.2))
    specificity = (cfg.get("protocol") or {}).get("alarm_specificity", 0.9)
    if isinstance(specificity, bool) or not isinstance(specificity, (int, float)) or not 0 < specificity < 1:
        raise ConfigError(f"protocol.alarm_specificity={specificity} must be a share in (0, 1), e.g. 0.9")
    if cfg.get("transfer") is not None and "val_fraction" in cfg.transfer:
        _share("transfer.val_fraction", cfg.transfer.val_fraction)


def _share(name: str, fraction) -> None:
    """A validation share: in (0, 0.5], as the split is one of round(1 / fraction) parts."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.5:
        raise ConfigError(f"{name}={fraction} must be a share of the patients in (0, 0.5] "
                          "(the validation split is one of round(1 / fraction) patient-grouped parts)")
