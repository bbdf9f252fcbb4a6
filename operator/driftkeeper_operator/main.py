"""Run the operator: ``driftkeeper operator --namespace NS`` or ``--all-namespaces``."""

from __future__ import annotations

import asyncio
import logging


def run(namespaces: list[str], all_namespaces: bool, liveness: str | None = None) -> None:
    """Run Kopf with the handlers registered (blocks until SIGTERM or SIGINT)."""
    import kopf

    from . import handlers  # noqa: F401 - registers the handlers

    logging.getLogger("kopf").setLevel(logging.INFO)
    asyncio.run(kopf.operator(
        namespaces=None if all_namespaces else namespaces,
        clusterwide=all_namespaces,
        standalone=True,
        liveness_endpoint=liveness,
    ))
