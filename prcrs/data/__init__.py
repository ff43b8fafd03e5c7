"""Data layer: loaders, synthetic cohort, horizons, the label-imputation fill values, COVID alignment."""

from prcrs.data.cohort import Cohort, load_cart, load_covid
from prcrs.data.sources import load_cohort, resolve_data_dir

__all__ = ["Cohort", "load_cart", "load_covid", "load_cohort", "resolve_data_dir"]
