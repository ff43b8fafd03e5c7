"""A run's config read once: composed (`compose_config`), given its identity (`config_hash`), and
turned into what the rest of the package reads instead of the config: the factors, the history,
the rows of the task, the cohorts, and the `prcrs.engine.RunSpec` that fold workers receive.
No other module of the engine reads a `DictConfig`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from omegaconf import DictConfig, OmegaConf

from prcrs import paths, schema
from prcrs.data.cohort import Cohort
from prcrs.data.fingerprint import UNIMPUTE
from prcrs.data.history import HistorySpec
from prcrs.data.sources import load_cohort
from prcrs.data.targets import HorizonData, check_horizon, make_horizon
from prcrs.engine import CVDesign, FitSpec, RunSpec, TransferSpec
from prcrs.errors import ConfigError

RESULT_KEYS = ("data", "model", "ablation", "factors", "horizon", "history", "protocol", "transfer", "trainer",
               "optimizer", "cv", "seed")
# Options added after runs were stored, at the value those runs used: left out of the hash while
# they keep it, so the stored runs are still found (resumed, reported) and not run again.
HASH_NEUTRAL = {"trainer.accelerator": "cpu", "trainer.devices": 1, "model.estimator.accelerator": "cpu",
                "model.estimator.devices": 1, "transfer.val_fraction": 0.15, "protocol.alarm_specificity": 0.9,
                "history": {"name": "none", **asdict(HistorySpec())},  # conf/history/none.yaml
                "cv.group": "patient", "data.mapping": None}


def compose_config(overrides: list[str]) -> DictConfig:
    """The run config of conf/ with Hydra `overrides`, outside `run.py`; a bad override is a
    one-line ConfigError."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import prcrs.models.catalogue  # noqa: F401  ${models:<study>} in the experiment configs

    try:
        with initialize_config_dir(config_dir=str(paths.CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def config_hash(cfg: DictConfig, cohort: Cohort) -> str:
    """Hash of everything that determines a run's results: the config (not where or under which
    study it is logged, nor the fold parallelism) and the data actually loaded."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    spec = {k: resolved[k] for k in RESULT_KEYS if k in resolved}  # a group added later is absent before
    # fold parallelism and the explained rows change no prediction (checked: 97 stored configs identical)
    spec["cv"] = {k: v for k, v in (spec["cv"] or {}).items() if k not in ("n_jobs", "explain_rows")}
    spec["model"] = {k: v for k, v in spec["model"].items() if k != "catalogue"}  # where it is listed, not what it is
    for dotted, value in HASH_NEUTRAL.items():
        *parents, key = dotted.split(".")
        node = spec
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(key, value) == value:
            node.pop(key, None)
    spec["factors"] = str(spec["factors"])  # `factors=1234` on the command line is read as a number
    spec["data_content"] = cohort.content_id
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def features_of(cfg: DictConfig) -> tuple[str, ...]:
    """Factor keys of the config's ablation and factor combination (validated)."""
    if str(cfg.factors) not in schema.COMBINATIONS:
        raise ConfigError(f"factors={cfg.factors} is not a platform combination; use one of "
                          f"{', '.join(schema.COMBINATIONS)}, or auto (the largest the data has)")
    try:
        return schema.select_features(cfg.ablation.name, str(cfg.factors))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def history_spec(cfg: DictConfig) -> HistorySpec:
    """The config's `history` (conf/history/), checked: a ConfigError names a bad value."""
    spec = _structured(HistorySpec, {k: v for k, v in cfg.history.items() if k != "name"}, "history",
                       "a history option")
    if not 0 <= spec.window <= 7:
        raise ConfigError(f"history.window={spec.window} must be a whole number of days in 0..7")
    reads_days = "window" in (cfg.model.get("estimator", {}).get("backbone") or {})  # a sequence network
    if reads_days and (spec != HistorySpec(window=spec.window) or cfg.model.get("missing_indicators")):
        raise ConfigError(f"model={cfg.model.name} reads whole days: use history=days or none (lags only, no "
                          "changes, extremes or covariates) and model.missing_indicators=false")
    if spec.any and cfg.transfer.name != "none" and not reads_days:
        raise ConfigError(f"transfer={cfg.transfer.name} pretrains on single COVID-19 samples: with a history, only "
                          "a sequence network (model=gru, day_transformer, rcmnet) can use it, its per-day part "
                          "pretrained")
    if spec.any and cfg.protocol.unimpute == "fold":
        raise ConfigError("history needs protocol.unimpute=sheet or none: fill values learnt per training fold cannot "
                          "be masked before a patient's past is computed")
    return spec


def _structured(schema: type, values: dict, prefix: str, what: str):
    """`values` read into the dataclass `schema` (OmegaConf's structured config: each field's
    type and default), or a one-line ConfigError naming the key: an unknown one, or a value of the
    wrong type."""
    from omegaconf.errors import ConfigKeyError, ValidationError

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except ConfigKeyError as exc:
        fields = ", ".join(schema.__dataclass_fields__)
        raise ConfigError(f"{prefix}.{exc.full_key} is not {what}; use {fields}") from None
    except ValidationError as exc:
        kind = schema.__dataclass_fields__[exc.full_key].type
        kind = getattr(kind, "__name__", kind)  # a type, or its name under `from __future__ import annotations`
        raise ConfigError(f"{prefix}.{exc.full_key}={values[exc.full_key]} must be "
                          f"{_KINDS.get(kind, f'of type {kind}')}") from None


_KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number"}


def horizon_data(cfg: DictConfig, cohort: Cohort) -> HorizonData:
    """The rows a run fits and scores: day t's factors of the config's ablation and combination,
    its history, and the grade of day t + horizon."""
    return make_horizon(cohort, check_horizon(cfg.horizon), features_of(cfg), history_spec(cfg),
                        mask_history=cfg.protocol.unimpute == "sheet")


def load_cart_for(cfg: DictConfig) -> Cohort:
    """The run's CAR-T cohort: `data.path`, $PRCRS_DATA_DIR or `paths.data_dir` (real), or the
    synthetic one (`data=synthetic`, or with a warning when no real sheet is found); a site's
    export (long, wide or MEDS) when `data.mapping` names its mapping file."""
    return load_cohort(cfg.data.kind, cfg.data.path, seed=cfg.seed, n_patients=cfg.data.n_patients,
                       raw_dir=cfg.paths.data_dir, mapping=cfg.data.get("mapping"))


def resolve_factors(cfg: DictConfig, cohort: Cohort) -> str:
    """`factors=auto`: set the config's factor combination to the first (1234 > 123 > 4 > 23 >
    3 > 2) that at least half of the cohort's patient-days can use (`reading.cohort_combinations`),
    and return it; any other value is returned as it is."""
    from omegaconf import open_dict

    from prcrs.data.reading import cohort_combinations

    if str(cfg.factors) != "auto":
        return str(cfg.factors)
    usable = cohort_combinations(cohort.frame[list(schema.FEATURE_KEYS)])
    if not usable:
        raise ConfigError("factors=auto: no factor combination is available on half of the patient-days (a group "
                          "needs half of its factors on a day)")
    with open_dict(cfg):
        cfg.factors = usable[0]
    return usable[0]


def _group(cfg: DictConfig) -> str:
    """`cv.group`, checked."""
    from prcrs.splits import GROUPS

    group = str(cfg.cv.get("group", "patient"))
    if group not in GROUPS:
        raise ConfigError(f"cv.group={group} is unknown; use one of {', '.join(GROUPS)}")
    return group


def load_covid_for(cfg: DictConfig) -> Cohort | None:
    """The COVID-19 cohort for pretraining: real beside real CAR-T data, synthetic otherwise."""
    if cfg.transfer.name == "none":
        return None
    if cfg.data.kind == "synthetic":
        from prcrs.data.synthetic import synthetic_covid

        return synthetic_covid(seed=cfg.seed)
    return load_cohort("covid", cfg.data.path, seed=cfg.seed, raw_dir=cfg.paths.data_dir)


def run_spec(cfg: DictConfig, fill_values: dict) -> RunSpec:
    """The `RunSpec` of a config; `fill_values`: the CAR-T sheet's label-imputation fill values
    (`Cohort.fill_values`), masked under `protocol.unimpute=sheet`."""
    protocol = cfg.protocol
    if protocol.unimpute not in UNIMPUTE:
        raise ConfigError(f"protocol.unimpute={protocol.unimpute} is unknown; use one of {', '.join(UNIMPUTE)}")
    transfer = None
    if cfg.transfer.name == "covid":
        if cfg.model.kind != "deep":
            raise ConfigError(f"transfer=covid needs a deep model, not {cfg.model.name}")
        transfer = TransferSpec(features_of(cfg), cfg.transfer.val_fraction, cfg.transfer.freeze, cfg.paths.cache_dir)
    elif cfg.transfer.name != "none":
        raise ConfigError(f"unknown transfer {cfg.transfer.name!r}; use none or covid")
    return RunSpec(model=str(cfg.model.name), estimator=OmegaConf.to_container(cfg.model.estimator, resolve=True),
                   preprocessing={"raw": protocol.raw, "unimpute": protocol.unimpute, "fill_values": fill_values,
                                  "missing_indicators": cfg.model.missing_indicators},
                   transfer=transfer,
                   fit=FitSpec(cfg.cv.inner_val_fraction, protocol.early_stopping, protocol.threshold,
                               protocol.alarm_specificity),
                   design=CVDesign(protocol.split, _group(cfg), cfg.cv.folds, cfg.cv.repeats, cfg.seed,
                                   cfg.cv.n_jobs, cfg.cv.explain_rows),
                   log_models=cfg.logger.log_models)


def build_estimator(cfg: DictConfig, fill_values: dict, covid: Cohort | None = None):
    """The configured model, unfitted (`run_spec(cfg, fill_values).build`); the COVID-19 cohort
    is loaded when `transfer=covid` needs it and none is given."""
    if covid is None and cfg.transfer.name == "covid":
        covid = load_covid_for(cfg)
    return run_spec(cfg, fill_values).build(covid)
