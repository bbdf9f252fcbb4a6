"""Shared fixtures: the diamonds data, its encoding, and one trained model per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# prometheus-client picks single- or multi-process mode when it is first imported: the
# in-process app tests need multiprocess mode, exactly as under gunicorn. The directory is
# ours only when we made it; then it goes when the session ends (no temp dir per run left).
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _prometheus_dir = tempfile.mkdtemp(prefix="dk-test-prom-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _prometheus_dir
    atexit.register(shutil.rmtree, _prometheus_dir, ignore_errors=True)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.data import load_diamonds
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.schema import DIAMONDS_SCHEMA


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# A CI timeout or `kill` sends SIGTERM: end like Ctrl-C, so that pytest still runs every
# fixture's teardown and what the tests started (services, API servers, the local node) is
# stopped by its pid, not left behind.
signal.signal(signal.SIGTERM, _interrupt)


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


# -- Kubernetes API servers -----------------------------------------------------------------


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    """A real etcd and kube-apiserver for the session, with the DriftPolicy and the
    prometheus-operator CRDs installed."""
    from harness.apiserver import BIN, binaries_missing, running_control_plane
    from harness.cluster import CRD, Cluster, install_crds

    reason = binaries_missing()
    if reason:
        pytest.skip(reason)
    with running_control_plane(tmp_path_factory.mktemp("controlplane")) as plane:
        install_crds(Cluster(plane.kubeconfig, "apiserver", plane), CRD,
                     BIN / "prometheus-operator-crds.yaml")
        yield plane


def _backends() -> list[str]:
    return ["kmock", "apiserver"] + (
        ["external"] if os.environ.get("DRIFTKEEPER_TEST_KUBECONFIG") else [])


@pytest.fixture(params=_backends())
def cluster(request: pytest.FixtureRequest, tmp_path: Path):
    """Each Kubernetes test runs against KMock's emulator and a real kube-apiserver (and
    the API server DRIFTKEEPER_TEST_KUBECONFIG names, if set)."""
    from harness.cluster import Cluster, external_cluster, kmock_cluster

    if request.param == "kmock":
        with kmock_cluster(tmp_path) as emulated:
            yield emulated
    elif request.param == "apiserver":
        plane = request.getfixturevalue("control_plane")
        yield Cluster(plane.kubeconfig, "apiserver", plane)
    else:
        yield external_cluster()


@pytest.fixture
def quick_calibration(monkeypatch):
    """Fewer null draws for the auto thresholds (ten features x 20,000 draws take 20 s);
    these tests are about the schema, not the thresholds."""
    from driftkeeper.model import train as training

    real = training.build_profile
    monkeypatch.setattr(training, "build_profile",
                        lambda *a, **kw: real(*a, **{**kw, "trials": 500}))
