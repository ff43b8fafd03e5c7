"""Checks of the config values a run reads, before any data loads: each bad value is a one-line
ConfigError naming the option and what it takes."""

from __future__ import annotations

from omegaconf import DictConfig

from prcrs.errors import ConfigError

MAX_HORIZON = 3  # days ahead a run may predict: the paper's 0-3


def _whole(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name}={value} must be a whole number >= {least}")
    return value


def check_run_config(cfg: DictConfig) -> None:
    """The seed, the CV design, the validation shares and the synthetic cohort's size, as the
    composed config holds them (its defaults are the configs'; a key it lacks is omegaconf's
    one-line error).

    >>> from omegaconf import OmegaConf
    >>> check_run_config(OmegaConf.create({"seed": "abc", "cv": {}, "data": {}}))
    Traceback (most recent call last):
    prcrs.errors.ConfigError: seed=abc must be a whole number >= 0
    """
    _whole("seed", cfg.seed, 0)
    if cfg.seed >= 2**32:
        raise ConfigError(f"seed={cfg.seed} must be below 2**32 = 4294967296 (numpy and torch seeds are 32-bit)")
    horizon = cfg.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 0 <= horizon <= MAX_HORIZON:
        raise ConfigError(f"horizon={horizon} must be a whole number of days from 0 to {MAX_HORIZON} (the paper's "
                          "horizons; a patient's stay is about a week)")
    if cfg.resume not in ("auto", "never"):
        raise ConfigError(f"resume={cfg.resume} must be auto (skip finished runs of the same code) or never")
    _whole("cv.folds", cfg.cv.folds, 2)
    _whole("cv.repeats", cfg.cv.repeats, 1)
    _whole("cv.n_jobs", cfg.cv.n_jobs, 1)
    _whole("cv.explain_rows", cfg.cv.explain_rows, 0)
    _whole("data.n_patients", cfg.data.n_patients, 1)
    _share("cv.inner_val_fraction", cfg.cv.inner_val_fraction)
    specificity = cfg.protocol.alarm_specificity
    if isinstance(specificity, bool) or not isinstance(specificity, (int, float)) or not 0 < specificity < 1:
        raise ConfigError(f"protocol.alarm_specificity={specificity} must be a share in (0, 1), e.g. 0.9")
    if cfg.transfer.name != "none":
        _share("transfer.val_fraction", cfg.transfer.val_fraction)


def _share(name: str, fraction) -> None:
    """A validation share: in (0, 0.5], as the split is one of round(1 / fraction) parts."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.5:
        raise ConfigError(f"{name}={fraction} must be a share of the patients in (0, 0.5] "
                          "(the validation split is one of round(1 / fraction) patient-grouped parts)")


def check_command_line(argv: list[str]) -> None:
    """Before Hydra runs: every `key=value` of `run.py`'s command line names a key some config
    has. ConfigError in one line naming the key and the nearest valid one, for an unknown key
    (`modle=prcrs`) and for a key added with '+' that no config reads (`+modle=logreg`, which
    Hydra would accept and ignore). Sweeps (`model=cnn,prcrs`) are checked at their first value;
    Hydra's own options (`hydra.*`, `hydra/...`) are Hydra's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from prcrs.run_config import compose_config

    tokens = [t for t in argv if "=" in t and not t.startswith("-")]
    try:
        parsed = [o for o in OverridesParser.create().parse_overrides(tokens) if not o.key_or_group.startswith("hydra")]
        single = [_first_value(o) for o in parsed]
    except Exception:  # a malformed one, or a sweep this check cannot expand (glob, interval): Hydra's to judge
        return
    adds = {o.key_or_group for o in parsed if o.is_add()}
    try:
        cfg = compose_config([s for s, o in zip(single, parsed, strict=True) if not o.is_add()])
    except ConfigError as exc:
        key = next((o.key_or_group for o in parsed if f"'{o.key_or_group}'" in str(exc)
                    or f"'{o.key_or_group.split('.')[0]}'" in str(exc)), None)
        if key is None:
            raise
        raise ConfigError(f"unknown config key {key!r}{_nearest(key, compose_config([]))}; `python run.py --help` "
                          "lists the groups and keys") from None
    for key in adds:
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT and key.split("/")[0] not in cfg:
            raise ConfigError(f"+{key}: no config reads {key!r}, so it would change nothing{_nearest(key, cfg)}")


_ABSENT = object()


def _first_value(override) -> str:
    """An override as a single-valued string: a sweep's first value."""
    prefix = "+" if override.is_add() else "~" if override.is_delete() else ""
    if override.is_sweep_override():
        first = next(iter(override.sweep_string_iterator()))
        return f"{prefix}{override.key_or_group}={first}"
    return f"{prefix}{override.key_or_group}={override.get_value_element_as_str()}"


def _nearest(key: str, cfg: DictConfig) -> str:
    """'; did you mean 'model'?' for the closest key of `cfg` where `key` first leaves it
    ('model.estimator.backbon.d' -> 'model.estimator.backbone'), or ''."""
    import difflib

    parts, node = key.split("."), cfg
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return ""
        if part not in node:
            found = difflib.get_close_matches(part, [str(n) for n in node.keys()], n=1)
            return f"; did you mean {'.'.join([*parts[:depth], found[0]])!r}?" if found else ""
        node = node[part]
    return ""
