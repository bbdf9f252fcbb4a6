"""Import a model version trained elsewhere into a model directory (``driftkeeper import``).

A user trains with ``driftkeeper train --output ./mymodel`` on a laptop and serves it on
Kubernetes: the chart's init container imports ``./mymodel`` (from a claim or the model
volume) into the store the service reads. The version is checked before anything is written
(checksums, profile, and the estimator unpickled by this image's scikit-learn), copied
through the store's atomic ``write_version``, and its base table, which retrains learn from,
is kept next to it when given.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelStoreError
from ..files import write_json
from .base_table import DATA_DIR, keep_table
from .store import METADATA_FILE, ModelStore


@dataclass(frozen=True)
class ImportResult:
    version: str  # the new version in the destination
    source_version: str
    promoted: bool
    base_table: str | None  # what retrains learn from (None: the shipped diamonds)


def import_model(source: str | Path, model_dir: str | Path, *, version: str | None = None,
                 data: str | Path | None = None, promote: bool = True) -> ImportResult:
    """Copy ``source``'s ``version`` (default: its current one) into ``model_dir`` as a new
    version, with its base table (see ``_base_table``)."""
    source_store = ModelStore(source)
    if not source_store.versions_dir.is_dir():
        raise ModelStoreError(f"{source} is not a model directory (no versions/ in it)")
    try:
        bundle = source_store.load(version)
    except ModelStoreError:
        raise
    except Exception as exc:  # an unpickling error names a module or class: say where
        raise ModelStoreError(f"cannot load the model of {source} with this installation "
                              f"({type(exc).__name__}: {exc}); train it again with the same "
                              f"driftkeeper and scikit-learn versions") from exc
    base = _base_table(source, model_dir, bundle.metadata, data)
    metadata = _imported_metadata(bundle.metadata, source, bundle.version, base)

    def write(tmp: Path) -> None:
        for path in sorted(bundle.path.iterdir()):  # a version's files, never links
            if path.is_file() and not path.is_symlink() and path.name != METADATA_FILE:
                shutil.copyfile(path, tmp / path.name)
        write_json(tmp / METADATA_FILE, metadata)

    store = ModelStore(model_dir)
    new_version = store.write_version(write, promote=promote)
    return ImportResult(new_version, bundle.version, promote, base)


def _base_table(source: str | Path, model_dir: str | Path, metadata: dict[str, Any],
                data: str | Path | None) -> str | None:
    """The base table, kept in ``model_dir/data/`` (the retraining Job mounts only the model
    volume): ``data``, else the recorded table if that path exists here, else the copy a
    ``train --keep-data`` left in the source's own ``data/`` (a kept table travels with
    its directory). None: the version was trained on the shipped diamonds table, or its
    table is not here."""
    if data is not None:
        return str(keep_table(model_dir, data))
    recorded = (metadata.get("training") or {}).get("data")
    if not recorded:
        return None
    for candidate in (Path(recorded), Path(source) / DATA_DIR / Path(recorded).name):
        if candidate.is_file():
            return str(keep_table(model_dir, candidate))
    return None


def _imported_metadata(metadata: dict[str, Any], source: str | Path, version: str,
                       base: str | None) -> dict[str, Any]:
    """The source's metadata, with the base table it has here and where it came from; its
    file checksums are recorded again by the store (over the copies)."""
    out = {k: v for k, v in metadata.items() if k != "files"}
    out["training"] = {**(metadata.get("training") or {}), "data": base}
    out["parent"] = None  # the source's versions are not in this store
    out["imported"] = {"from": str(Path(source).resolve()), "version": version,
                       "parent": metadata.get("parent"),
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return out
