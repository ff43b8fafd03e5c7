"""Shared fixtures. Tests that need the published sheets skip when PRCRS_DATA_DIR is unset."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s workers: one thread per library each,
    for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # not two workers'
        os.environ.setdefault(_threads, "1")  # OpenMP teams spinning on two cores (set before they load)


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
    from prcrs.data.synthetic import synthetic_cart

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


# (no fold workers: a logistic regression is quicker fitted in the process than forked for)
PLATFORM_TRAIN = ["data=synthetic", "model=logreg", "cv.folds=3", "cv.explain_rows=0", "cv.n_jobs=1"]


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `make(folder)` once per test run: `make test`'s workers share
    the folder above their own temporary folders, and the first to come makes it under a lock
    (the others wait for it). A failed `make` leaves it to be made again by the next."""
    import fcntl

    base = tmp_path_factory.getbasetemp()  # a worker's is <this run's folder>/popen-gw<n>
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").is_file():
            make(folder)
            (folder / "done").touch()
    return folder


def _train_platform(folder: Path) -> None:
    """The platform release of `platform_store`, trained in a process of its own with the
    environment's data folder left out."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PRCRS_DATA_DIR"}
    done = subprocess.run([sys.executable, "-m", "prcrs.cli", "train-final", *PLATFORM_TRAIN, "--horizon", "1",
                           "2", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _reproduce_quick(folder: Path) -> None:
    """The quick reproduction of `quick_store` (synthetic data), into `folder`'s own store."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    env.pop("PRCRS_DATA_DIR", None)
    done = subprocess.run([sys.executable, str(root / "experiments" / "reproduce.py"), "--quick"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


# The session fixtures made once per test run in a folder of that name, and how. Collection starts
# making those the selected tests need in the background, and runs the tests that need them last,
# so that the workers run the other tests instead of waiting for them.
MADE_ONCE = {"platform_store": ("platform", _train_platform), "quick_store": ("quick-reproduction", _reproduce_quick)}


_MAKING: list = []  # the threads making them


def _needs(item) -> set[str]:
    return MADE_ONCE.keys() & set(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(session, config, items):
    """Modules with a test that needs a `MADE_ONCE` fixture run last (whole modules, in their order,
    so that module fixtures are made once); the same order on every worker."""
    late = {item.module.__name__ for item in items if _needs(item) and getattr(item, "module", None)}
    items.sort(key=lambda item: getattr(item, "module", None) is not None and item.module.__name__ in late)


def pytest_collection_finish(session):
    """Start making, each in a thread, the `MADE_ONCE` folders the selected tests need."""
    import threading

    if session.config.option.collectonly:
        return
    factory = session.config._tmp_path_factory
    for name in sorted(set().union(*map(_needs, session.items))):
        folder, make = MADE_ONCE[name]
        thread = threading.Thread(target=_make_quietly, args=(factory, folder, make), daemon=True)
        thread.start()
        _MAKING.append(thread)


def pytest_sessionfinish(session, exitstatus):
    """A worker done before another finishes a build its thread holds the lock of waits for it:
    leaving would free the lock while the build's process still writes (not on Ctrl-C)."""
    if exitstatus != pytest.ExitCode.INTERRUPTED:
        for thread in _MAKING:
            thread.join()


def _make_quietly(factory, name: str, make: Callable[[Path], None]) -> None:
    """`made_once` in a background thread: a failure is left for the fixture to make again and report."""
    try:
        made_once(factory, name, make)
    except BaseException:  # noqa: BLE001 - the fixture that needs it tries again and fails loudly
        pass


@pytest.fixture(scope="session")
def platform_store(tmp_path_factory):
    """A store with one platform release: every combination at horizons 1 and 2, trained on the
    synthetic cohort (logistic regression), whatever the environment's data folder; made once per
    test run (`made_once`, started at collection). Tests that register more releases do it in a copy."""
    return f"sqlite:///{made_once(tmp_path_factory, *MADE_ONCE['platform_store']) / 'mlflow.db'}"


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


@pytest.fixture(scope="session")
def quick_store(tmp_path_factory):
    """The quick reproduction's store (`experiments/reproduce.py --quick`: every artefact's quick
    sweep, the tuned comparison's search included) and its URI, made once per test run
    (`made_once`, started at collection)."""
    tmp = made_once(tmp_path_factory, *MADE_ONCE["quick_store"])
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    assert any((tmp / "quick-cache").iterdir())  # the pretraining weights went beside the temp store
    return tmp, uri
