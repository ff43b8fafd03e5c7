"""Shared fixtures. Tests that need the published sheets skip when PRCRS_DATA_DIR is unset."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s workers: one thread per library each,
    for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # not two workers'
        os.environ.setdefault(_threads, "1")  # OpenMP teams spinning on two cores (set before they load)

from prcrs.data.synthetic import synthetic_cart  # noqa: E402


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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_app(app, **options):
    """`app` under uvicorn with the config `prcrs serve` runs (`web.server_config`, `options`
    passed on), on a loopback port, in a thread: yields its URL, then stops it."""
    import threading
    import time

    import uvicorn

    from prcrs.serving.web import server_config

    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


PLATFORM_TRAIN = ["data=synthetic", "model=logreg", "cv.folds=3", "cv.explain_rows=0"]


@pytest.fixture(scope="session")
def platform_store(tmp_path_factory):
    """A store with one platform release: every combination at horizons 1 and 2, trained on the
    synthetic cohort (logistic regression), whatever the environment's data folder."""
    from prcrs import cli

    uri = f"sqlite:///{tmp_path_factory.mktemp('platform') / 'mlflow.db'}"
    real = os.environ.pop("PRCRS_DATA_DIR", None)
    try:
        assert cli.main(["train-final", *PLATFORM_TRAIN, "--horizon", "1", "2", "--tracking-uri", uri]) == 0
    finally:
        if real is not None:
            os.environ["PRCRS_DATA_DIR"] = real
    return uri


@pytest.fixture(autouse=True)
def _no_real_data_leak(monkeypatch, request):
    """Unit tests on synthetic data must not pick up real data from the environment by accident."""
    if "real_dir" not in request.fixturenames:
        monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)


def chromium():
    """(browser, driver) paths and "", or None and why a browser test must skip."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[dev]')"
    if not browser or not driver:
        return None, "Chromium or chromedriver is missing (apt-get install chromium chromium-driver; .ci/run does)"
    return (browser, driver), ""


def browser(found, width: int = 1100):
    """A headless Chromium driven by selenium (`found`: what `chromium()` found)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(found[1]), options=options)


SCREENSHOTS = Path(tempfile.gettempdir()) / "prcrs-screenshots"  # the pages as the tests saw them
