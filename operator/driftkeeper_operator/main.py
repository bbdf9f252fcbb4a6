"""Run the operator: ``driftkeeper operator --namespace NS`` or ``--all-namespaces``."""

from __future__ import annotations

import asyncio
import logging
import os
import socket


def identity() -> str:
    """Who this operator is, for Kopf: the pod's name when the chart passes it (POD_ID or
    POD_NAME), else ``uid<uid>@<host>/<pid>``.

    Kopf's own default calls ``getpass.getuser()``, which raises for a uid with no passwd
    entry, which is exactly how the image runs (uid 10001, no USER): the operator crashed
    at start in a real pod. Nothing here looks the uid up."""
    for name in ("POD_ID", "POD_NAME"):
        if os.environ.get(name):
            return os.environ[name]
    return f"uid{os.getuid()}@{socket.gethostname()}/{os.getpid()}"


def run(namespaces: list[str], all_namespaces: bool, liveness: str | None = None) -> None:
    """Run Kopf with the handlers registered (blocks until SIGTERM or SIGINT)."""
    import kopf

    from . import handlers  # noqa: F401 - registers the handlers

    logging.getLogger("kopf").setLevel(logging.INFO)
    asyncio.run(kopf.operator(
        namespaces=None if all_namespaces else namespaces,
        clusterwide=all_namespaces,
        standalone=True,
        identity=identity(),  # type: ignore[arg-type]  # Kopf's Identity: a NewType of str
        liveness_endpoint=liveness,
    ))
