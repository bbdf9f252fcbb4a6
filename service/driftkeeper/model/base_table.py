"""The base table kept inside the model directory, where every later retrain finds it.

A version records the path of the table it was trained on, and ``driftkeeper retrain``
reads that path again. On Kubernetes the first model is trained in an init container from a
ConfigMap or another claim that the retraining Job does not mount: the recorded path would
not exist there. ``keep_table`` copies the table into ``DIR/data/`` (on the model volume,
which the Job mounts at the same path), named by its content, so a retrain long after the
install still learns from the same base rows.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..files import copy_atomic, sha256_file

DATA_DIR = "data"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def kept_path(model_dir: str | Path, table: str | Path) -> Path:
    """Where ``table`` is kept in ``model_dir``: ``data/<stem>-<sha256[:16]>.csv``. The
    content in the name means two tables never overwrite each other, and keeping the same
    table twice is a no-op."""
    table = Path(table)
    digest = sha256_file(table)[:16]
    stem = table.stem.removesuffix(f"-{digest}")  # a kept table, kept again elsewhere
    stem = _UNSAFE.sub("_", stem)[:64] or "table"
    return Path(model_dir) / DATA_DIR / f"{stem}-{digest}.csv"


def keep_table(model_dir: str | Path, table: str | Path) -> Path:
    """Copy ``table`` into ``model_dir/data/`` atomically (a reader sees the whole copy or
    none) and return the copy's absolute path. A table already inside ``model_dir`` is
    used where it is."""
    source = Path(table).resolve()
    root = Path(model_dir).resolve()
    if not source.is_file():
        raise DataError(f"--data {table}: no such file")
    if source.is_relative_to(root):
        return source
    target = kept_path(root, source)
    if not target.is_file():
        copy_atomic(source, target)
    return target
