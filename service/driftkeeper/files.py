"""Writing files so that a reader sees the old content or the new, never a half.

One writer for everything Driftkeeper persists (model versions' JSON, the published drift
report, the window counters, the local driver's state, the policy it pushes): write a
temporary file in the same directory, flush and fsync it, rename it over the target (atomic
on POSIX), and fsync the directory so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, content: str | bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``content`` atomically; with ``durable``, also on disk when this
    returns (fsync of the file and of its directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    data = content.encode() if isinstance(content, str) else content
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def copy_atomic(source: str | Path, path: str | Path) -> None:
    """``write_atomic`` of a file's content, streamed (a training table need not fit in
    memory), always durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(source, tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_json(path: str | Path, payload: Any, durable: bool = True, **dumps: Any) -> None:
    """``write_atomic`` of a JSON document (keys sorted, indented, unless told otherwise)."""
    options = {"indent": 2, "sort_keys": True, **dumps}
    write_atomic(path, json.dumps(payload, **options), durable=durable)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
