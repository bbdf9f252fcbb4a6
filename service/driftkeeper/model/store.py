"""The versioned model store: ``DIR/versions/<id>/`` plus an atomic ``DIR/current`` pointer.

A version is written into a temporary directory and renamed into place only when complete,
and ``current`` (a symlink) is swapped with an atomic rename, so a reader sees either the old
complete version or the new complete version, never a half-written one. A crashed or killed
training leaves at most a ``.tmp-*`` directory, which is ignored and cleaned up later.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..drift.profile import ReferenceProfile
from ..errors import ModelStoreError, PromotionConflictError
from ..files import fsync_dir, fsync_file, sha256_file, write_atomic, write_json
from ..schema import FeatureSchema

MODEL_FILE = "model.joblib"
PREDICTOR_FILE = "predictor.npz"  # optional: the model as arrays, for a service without sklearn
PROFILE_FILE = "profile.json"
LOSS_FILE = "loss.npz"  # optional: the loss model as arrays (estimated performance)
METRICS_FILE = "metrics.json"
METADATA_FILE = "metadata.json"
REQUIRED_FILES = (MODEL_FILE, PROFILE_FILE, METRICS_FILE, METADATA_FILE)

ANY = object()
"""``promote(expected=ANY)``: move ``current`` whatever it points at now."""

_VERSION_RE = re.compile(r"^v(\d+)$")
STALE_TMP_SECONDS = 3600


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model version: everything the service needs to predict and monitor."""

    version: str
    path: Path
    model: Any  # the scikit-learn estimator; None when loaded without it
    profile: ReferenceProfile
    metrics: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def schema(self) -> FeatureSchema:
        return self.profile.schema

    @property
    def predictor_path(self) -> Path | None:
        path = self.path / PREDICTOR_FILE
        return path if path.is_file() else None

    @property
    def loss_path(self) -> Path | None:
        path = self.path / LOSS_FILE
        return path if path.is_file() else None


def _load_estimator(path: Path) -> Any:
    import joblib  # imports scikit-learn when unpickling: only where an estimator is needed

    from .estimators import for_serving

    return for_serving(joblib.load(path))


def version_number(version: str) -> int:
    m = _VERSION_RE.match(version)
    if not m:
        raise ModelStoreError(f"not a version id: {version!r} (expected v<N>)")
    return int(m.group(1))


def _checksums(directory: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file of a version but its metadata (which records them)."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(directory.iterdir()) if p.is_file() and p.name != METADATA_FILE}


def verify(path: Path, metadata: dict[str, Any]) -> None:
    """Raise :class:`ModelStoreError` if a file differs from what the version recorded.
    (Versions written before checksums were recorded have none to check.)"""
    for name, expected in (metadata.get("files") or {}).items():
        try:
            found = sha256_file(path / name)
        except OSError as exc:
            raise ModelStoreError(f"model version {path.name} is corrupt: {name} cannot be "
                                  f"read ({exc.strerror})") from exc
        if found != expected["sha256"]:
            raise ModelStoreError(f"model version {path.name} is corrupt: {name} does not "
                                  f"match its recorded checksum")


class ModelStore:
    """Versions of one model under a root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.current_link = self.root / "current"
        self.previous_file = self.root / "previous"  # the version ``current`` replaced

    # -- reading -----------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        found = [p.name for p in self.versions_dir.iterdir()
                 if _VERSION_RE.match(p.name) and self.is_complete(p.name)]
        return sorted(found, key=version_number)

    def is_complete(self, version: str) -> bool:
        path = self.versions_dir / version
        return all((path / f).is_file() for f in REQUIRED_FILES)

    def current_version(self) -> str | None:
        """The version ``current`` points to, or None when nothing is promoted yet."""
        try:
            target = os.readlink(self.current_link)
        except (FileNotFoundError, OSError):
            return None
        return Path(target).name

    def previous_version(self) -> str | None:
        """The version that served before the current one (a rollback target)."""
        try:
            text = self.previous_file.read_text().strip()
        except OSError:
            return None
        return text if _VERSION_RE.match(text) else None

    def path(self, version: str) -> Path:
        return self.versions_dir / version

    def load(self, version: str | None = None, with_estimator: bool = True) -> ModelBundle:
        """Load a version (default: the current one) with its profile, metrics and metadata.

        ``with_estimator=False`` skips unpickling the scikit-learn model (and importing
        scikit-learn): the service predicts from ``predictor.npz`` when there is one.
        """
        version = version or self.current_version()
        if version is None:
            raise ModelStoreError(f"no current model in {self.root}; run `driftkeeper train "
                                  f"--output {self.root}` first")
        path = self.path(version)
        if not self.is_complete(version):
            raise ModelStoreError(f"model version {version} in {self.root} is missing or "
                                  f"incomplete")
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
            verify(path, metadata)  # a corrupt version is refused, never served
            model = _load_estimator(path / MODEL_FILE) if with_estimator else None
            profile = ReferenceProfile.load(path / PROFILE_FILE)
            metrics = json.loads((path / METRICS_FILE).read_text())
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ModelStoreError(f"cannot load model version {version}: {exc}") from exc
        return ModelBundle(version, path, model, profile, metrics, metadata)

    # -- writing -----------------------------------------------------------------------

    def write_version(self, write: Callable[[Path], None], promote: bool = True) -> str:
        """Create a new version: ``write(tmpdir)`` fills a temporary directory, which is then
        checked, renamed to ``versions/v<N>`` and (if ``promote``) made current.

        If ``write`` raises, the temporary directory is removed and nothing else changes.
        """
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_tmp()
        tmp = self.versions_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            write(tmp)
            missing = [f for f in REQUIRED_FILES if not (tmp / f).is_file()]
            if missing:
                raise ModelStoreError(f"incomplete model version, missing {missing}")
            metadata = json.loads((tmp / METADATA_FILE).read_text())
            metadata["files"] = _checksums(tmp)
            write_json(tmp / METADATA_FILE, metadata)
            for path in tmp.iterdir():  # every byte on disk before the version exists
                fsync_file(path)
            fsync_dir(tmp)
            version = self._rename_into_place(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if promote:
            self.promote(version)
        return version

    def _rename_into_place(self, tmp: Path) -> str:
        existing = [version_number(p.name) for p in self.versions_dir.iterdir()
                    if _VERSION_RE.match(p.name)]
        number = max(existing, default=0) + 1
        for _ in range(100):  # another trainer may take the same number: try the next one
            target = self.versions_dir / f"v{number}"
            try:
                os.rename(tmp, target)  # fails if target exists and is not empty
            except OSError:
                if not target.exists():
                    raise
                number += 1
                continue
            fsync_dir(self.versions_dir)
            return target.name
        raise ModelStoreError("could not allocate a version number")

    @contextlib.contextmanager
    def _promotion_lock(self) -> Iterator[None]:
        """Serialises promotions between processes (readers never need it: the swap itself
        is one atomic rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".promote.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.contextmanager
    def first_model_lock(self) -> Iterator[None]:
        """Held while a first model is trained if there is none (``train --if-empty``):
        the model pods' init containers start together on one volume, and without it
        each found the store empty and trained its own (v1 and v2, on a real node)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".first-model.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def promote(self, version: str, expected: str | object | None = ANY) -> None:
        """Point ``current`` at a complete version, atomically.

        With ``expected`` (a version, or None for "nothing promoted yet") this is a
        compare-and-swap: ``current`` moves only if it still points at ``expected``, so a
        candidate judged against one serving model never replaces a newer one.
        Raises :class:`PromotionConflictError` otherwise.
        """
        if not self.is_complete(version):
            raise ModelStoreError(f"cannot promote {version}: missing or incomplete")
        with self._promotion_lock():
            actual = self.current_version()
            if expected is not ANY and actual != expected:
                raise PromotionConflictError(
                    f"not promoting {version}: current is {actual}, not {expected} as when "
                    f"the candidate was judged", expected=expected, actual=actual)
            if actual is not None and actual != version:
                write_atomic(self.previous_file, actual + "\n")  # kept by prune()
            self._swap_current(version)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions, never the serving one nor the one
        it replaced; returns the deleted versions. Under the promotion lock (no version
        is promoted meanwhile). Each version is first renamed out of the ``v<N>`` names
        (to ``.trash-*``), so none is ever seen half-deleted; a prune cut short leaves
        only trash, which the next one removes."""
        if keep < 2:
            raise ValueError(f"keep at least 2 versions (the serving one and the one it "
                             f"replaced), got {keep}")
        deleted = []
        with self._promotion_lock():
            for trash in self.versions_dir.glob(".trash-*"):
                shutil.rmtree(trash, ignore_errors=True)
            versions = self.versions()
            protected = {self.current_version(), self.previous_version(), *versions[-keep:]}
            for version in versions:
                if version in protected:
                    continue
                trash = self.versions_dir / f".trash-{version}-{uuid.uuid4().hex[:8]}"
                os.rename(self.path(version), trash)
                deleted.append(version)
            if deleted:
                fsync_dir(self.versions_dir)
            for trash in self.versions_dir.glob(".trash-*"):
                shutil.rmtree(trash, ignore_errors=True)
        return deleted

    def _swap_current(self, version: str) -> None:
        tmp_link = self.root / f".current-{uuid.uuid4().hex}"
        os.symlink(Path("versions") / version, tmp_link)
        try:
            os.replace(tmp_link, self.current_link)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_link.unlink()
            raise
        fsync_dir(self.root)

    def _clean_stale_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_SECONDS
        for p in self.versions_dir.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    shutil.rmtree(p)
