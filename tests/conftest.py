from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cnnlab.data.module import SYSTEM_DIR, missing_files
from synthetic import synthetic_fashion_mnist


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny learnable Fashion-MNIST look-alike: 600 training and 100 test images."""
    return synthetic_fashion_mnist(tmp_path_factory.mktemp("synth"))


def _real_dir() -> Path | None:
    for folder in (os.environ.get("CNNLAB_DATA_DIR"), SYSTEM_DIR, "data"):
        if folder and not missing_files(Path(folder)):
            return Path(folder)
    return None


@pytest.fixture(scope="session")
def real_dir() -> Path:
    folder = _real_dir()
    if folder is None:
        pytest.skip("real Fashion-MNIST absent: `apt-get install dataset-fashion-mnist` or set CNNLAB_DATA_DIR")
    return folder


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, so default output folders (tb_logs/, exported/) land in tmp_path."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def trained(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One short real training run shared by the test modules (read it, never change it): 3 epochs with dropout
    and the dropout-off training measurement, on the synthetic data."""
    from cnnlab.training.config import FitConfig
    from cnnlab.training.fit import fit

    cfg = FitConfig(data_dir=str(synth_dir), logdir=str(tmp_path_factory.mktemp("shared_tb")), frac=0.5, epochs=3,
                    dropout=0.5, lr=1e-3, eval_train=True, progress=False)  # fmt: skip
    return fit(cfg)


def _wait_for(predicate, timeout=900.0):  # generous: a loaded CI machine can be many times slower
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def wait_for():
    """wait_for(predicate, timeout=900): poll an observable state, never a fixed sleep."""
    return _wait_for
