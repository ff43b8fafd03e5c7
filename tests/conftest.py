"""Shared fixtures. Tests that need the published sheets skip when PRCRS_DATA_DIR is unset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prcrs.data.synthetic import synthetic_cart


def _real_dir() -> Path | None:
    folder = os.environ.get("PRCRS_DATA_DIR")
    if folder and (Path(folder) / "CAR-T.xlsx").is_file():
        return Path(folder)
    return None


@pytest.fixture(scope="session")
def real_dir() -> Path:
    folder = _real_dir()
    if folder is None:
        pytest.skip("real data absent: set PRCRS_DATA_DIR to the folder holding CAR-T.xlsx and COVID-19.xlsx")
    return folder


@pytest.fixture(scope="session")
def real_cart(real_dir):
    from prcrs.data import load_cart

    return load_cart(real_dir / "CAR-T.xlsx")


@pytest.fixture(scope="session")
def real_covid(real_dir):
    from prcrs.data import load_covid

    return load_covid(real_dir / "COVID-19.xlsx")


@pytest.fixture(scope="session")
def synthetic():
    return synthetic_cart(seed=0)


@pytest.fixture(autouse=True)
def _no_real_data_leak(monkeypatch, request):
    """Unit tests on synthetic data must not pick up real data from the environment by accident."""
    if "real_dir" not in request.fixturenames:
        monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
