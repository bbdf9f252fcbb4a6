"""Where the tests find tools that are not Python packages (scripts/install-test-tools)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOOLS = Path(os.environ.get("DRIFTKEEPER_TOOLS", Path.home() / ".cache" / "driftkeeper" /
                            "tools"))


def tool(name: str) -> str | None:
    """A binary from the tools cache, else from PATH, else None."""
    cached = TOOLS / "bin" / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(name)


def cached_crd(kind_plural: str) -> Path | None:
    """A prometheus-operator CRD (``servicemonitors``, ``prometheusrules``) from the cache."""
    path = TOOLS / "crds" / f"monitoring.coreos.com_{kind_plural}.yaml"
    return path if path.is_file() else None
