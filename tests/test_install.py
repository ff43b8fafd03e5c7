"""A non-editable install (a wheel in site-packages) runs from any folder: its configs are package
data, its store and caches go into the current folder or $PRCRS_HOME, never into site-packages."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import prcrs, prcrs.paths as paths
from prcrs.tracking import store
from prcrs.run_config import compose_config
assert not paths.in_checkout(), prcrs.__file__
print(compose_config(["model=hgb", "protocol=paper"]).protocol.unimpute, store.tracking_uri())
"""


@pytest.mark.slow
def test_a_wheel_install_finds_its_configs_and_keeps_its_store_in_the_current_folder(tmp_path):
    target, elsewhere = tmp_path / "site", tmp_path / "work"
    elsewhere.mkdir()
    built = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["none", f"sqlite:///{elsewhere / 'mlruns' / 'mlflow.db'}"]
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=elsewhere, env={**env, "PRCRS_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[1] == f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    audit = subprocess.run([sys.executable, "-m", "prcrs.cli", "audit", "--data", "synthetic", "--no-probe"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0 and "patients 202" in audit.stdout, audit.stderr[-2000:]
