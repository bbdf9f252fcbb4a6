"""The model store under faults: a corrupt version is refused and never served, and a
process killed at any step of writing or promoting a version leaves `current` and the
serving reference exactly as they were."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from driftkeeper.errors import ModelStoreError
from driftkeeper.model.store import METADATA_FILE, PREDICTOR_FILE, PROFILE_FILE, ModelStore


def _fingerprint(model_dir: Path) -> tuple[str | None, bytes, list[str]]:
    store = ModelStore(model_dir)
    current = store.current_version()
    return current, (store.path(current) / PROFILE_FILE).read_bytes(), store.versions()


def test_a_version_records_its_checksums(model_dir: Path) -> None:
    metadata = json.loads((model_dir / "versions" / "v1" / METADATA_FILE).read_text())
    assert set(metadata["files"]) >= {PROFILE_FILE, PREDICTOR_FILE, "model.joblib",
                                      "metrics.json"}
    assert all(len(f["sha256"]) == 64 for f in metadata["files"].values())


@pytest.mark.parametrize("victim", [PROFILE_FILE, PREDICTOR_FILE, "model.joblib"])
def test_a_corrupt_version_is_refused(model_dir: Path, victim: str) -> None:
    path = model_dir / "versions" / "v1" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit, as a bad disk would
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=f"corrupt: {victim}"):
        ModelStore(model_dir).load(with_estimator=False)


def test_the_service_keeps_serving_when_a_new_version_is_corrupt(model_dir: Path) -> None:
    from driftkeeper.serving.runtime import ModelHolder

    store = ModelStore(model_dir)
    holder = ModelHolder(store)
    assert holder.refresh() and holder.model.version == "v1"
    shutil.copytree(store.path("v1"), store.path("v2"))
    (store.path("v2") / PROFILE_FILE).write_text("{}")  # not what v2 recorded
    store.promote("v2")
    assert holder.refresh() is False
    assert holder.model.version == "v1"


KILLER = """
import os, signal, sys
from pathlib import Path
from driftkeeper.model.store import ModelStore
point, model_dir = sys.argv[1], Path(sys.argv[2])
store = ModelStore(model_dir)
source = store.path("v1")
real = {"rename": os.rename, "replace": os.replace}

def die(name):
    def call(*args, **kwargs):
        target = str(args[1])
        if name == point or (point == "metadata" and target.endswith(".json")) or (
                point == "promote" and name == "replace" and target.endswith("current")):
            os.kill(os.getpid(), signal.SIGKILL)
        return real[name](*args, **kwargs)
    return call

os.rename, os.replace = die("rename"), die("replace")

def write(tmp):
    for f in source.iterdir():
        if f.name != "metadata.json":
            (tmp / f.name).write_bytes(f.read_bytes())
    (tmp / "metadata.json").write_text((source / "metadata.json").read_text())
    if point == "write":
        os.kill(os.getpid(), signal.SIGKILL)

store.write_version(write, promote=True)
"""


@pytest.mark.parametrize("point", ["write", "metadata", "rename", "promote"])
def test_a_kill_at_any_step_leaves_current_and_its_reference_intact(model_dir: Path,
                                                                   point: str) -> None:
    """Killed while writing the files, while recording their checksums, while renaming
    the version into place, or while swapping `current`: the serving version, its
    reference and its checksums hold."""
    before = _fingerprint(model_dir)
    done = subprocess.run([sys.executable, "-c", KILLER, point, str(model_dir)],
                          capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    current, profile, versions = _fingerprint(model_dir)
    assert (current, profile) == before[:2]
    ModelStore(model_dir).load(with_estimator=False)  # still verifies
    # A version either is complete and loads, or is not listed at all.
    for version in versions:
        ModelStore(model_dir).load(version, with_estimator=False)
    assert versions in (["v1"], ["v1", "v2"])
