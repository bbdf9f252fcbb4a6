"""Shared fixtures: the diamonds data, its encoding, and one trained model per session."""

from __future__ import annotations

import os
import tempfile

# prometheus-client picks single- or multi-process mode when it is first imported: the
# in-process app tests need multiprocess mode, exactly as under gunicorn.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="dk-test-prom-"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.data import load_diamonds
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.schema import DIAMONDS_SCHEMA


@pytest.fixture(scope="session")
def diamonds() -> pd.DataFrame:
    return load_diamonds()


@pytest.fixture(scope="session")
def encoded(diamonds: pd.DataFrame) -> np.ndarray:
    return DIAMONDS_SCHEMA.encode(diamonds)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with one trained, current version (read-only for tests)."""
    root = tmp_path_factory.mktemp("model")
    train(root, TrainingConfig())
    return root


@pytest.fixture
def model_dir(trained_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model directory, for tests that change it."""
    target = tmp_path / "model"
    shutil.copytree(trained_model_dir, target, symlinks=True)
    return target
