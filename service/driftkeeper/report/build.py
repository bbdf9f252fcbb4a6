"""Where a report's inputs come from: a CSV scored here, or a running service's ``/drift``.

Both paths end in the same three dicts (report, histograms, model) and the same
:func:`~driftkeeper.report.html.render_report`, so a page looks the same whichever produced it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ..data import read_current
from ..drift.batch import judge_frame
from ..drift.histograms import histograms
from ..errors import DriftkeeperError, ModelStoreError
from ..model.store import ModelBundle, ModelStore
from ..policy import policy_or_default
from ..serving.runtime import ServingModel
from .html import render_report


class ServiceError(DriftkeeperError):
    """A Driftkeeper service that cannot be reached or did not answer with a report."""


# -- the model section --------------------------------------------------------------------


def model_summary(bundle: ModelBundle, note: str | None = None) -> dict[str, Any]:
    """The ``model`` dict of :func:`render_report`: what a reader needs to judge the model,
    without the bundle's estimator or profile."""
    metrics = {k: bundle.metrics[k] for k in ("task", "rmse", "mae", "r2", "log_loss",
                                              "accuracy", "auc", "holdout_rows")
               if k in bundle.metrics}
    summary: dict[str, Any] = {"version": bundle.version,
                               "created_at": bundle.metadata.get("created_at"),
                               "kind": (bundle.metadata.get("model") or {}).get("kind"),
                               "metrics": metrics}
    if note:
        summary["note"] = note
    return summary


# -- from a CSV ---------------------------------------------------------------------------


def report_from_csv(model_dir: str | Path, current_csv: str | Path, output: str | Path,
                    policy_path: str | Path | None = None) -> Path:
    """Score a CSV of current rows (schema columns, optionally the target) against the current
    model's reference and render the page. Without a target column there is no concept
    section, only a note that there are no labels. Returns the HTML path."""
    bundle = ModelStore(model_dir).load()
    source = Path(current_csv)
    schema = bundle.schema
    frame = read_current(source, schema)
    policy = policy_or_default(policy_path, schema)
    verdicts, windows = judge_frame(ServingModel.from_bundle(bundle), frame, policy.monitor,
                                    time.time())
    report = verdicts.to_dict()
    report["source"] = str(source)
    report["policy"] = policy.name
    return render_report(report, histograms(bundle.profile, windows.data, windows.residuals),
                         model_summary(bundle), output)


# -- from a running service ---------------------------------------------------------------


def _fetch(url: str, timeout: float) -> dict[str, Any]:
    """``GET {url}/drift?histograms=1``; every failure names the URL."""
    endpoint = f"{url.rstrip('/')}/drift"
    try:
        response = requests.get(endpoint, params={"histograms": "1"}, timeout=timeout)
    except requests.Timeout:
        raise ServiceError(f"the Driftkeeper service at {url} did not answer within "
                           f"{timeout} s") from None
    except requests.RequestException as exc:
        raise ServiceError(f"cannot reach the Driftkeeper service at {url}: {exc}") from None
    if response.status_code != 200:
        raise ServiceError(f"{endpoint} answered HTTP {response.status_code}: "
                           f"{response.text[:200]}")
    try:
        doc = response.json()
    except ValueError:
        raise ServiceError(f"{endpoint} did not answer with JSON") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise ServiceError(f"{endpoint} did not answer with a drift report")
    if not isinstance(doc.get("histograms"), dict):
        raise ServiceError(f"{endpoint} sent no histograms (a service older than the "
                           f"report command?)")
    return doc


def _bundle_for(model_dir: str | Path, version: str | None) -> tuple[ModelBundle, str | None]:
    """The version the report names, or the current one with a note saying so: a model
    section describing another model than the one monitored must not pass unnoticed."""
    store = ModelStore(model_dir)
    if version:
        try:
            return store.load(version), None
        except ModelStoreError:
            pass
    bundle = store.load()
    if version and bundle.version != version:
        return bundle, (f"The service monitors model {version}, which is not in {model_dir}; "
                        f"the figures below are the service's, this section describes the "
                        f"local current model {bundle.version}.")
    return bundle, None


def _without_credentials(url: str) -> str:
    """The URL as shown on the page: a page gets forwarded, a password in it must not."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def report_from_service(model_dir: str | Path, url: str, output: str | Path,
                        timeout: float = 10) -> Path:
    """Render the report a running service publishes, histograms included. The model
    section comes from ``model_dir``. Returns the HTML path."""
    doc = _fetch(url, timeout)
    hists = doc.pop("histograms")
    bundle, note = _bundle_for(model_dir, doc.get("model_version"))
    doc["source"] = _without_credentials(url)
    return render_report(doc, hists, model_summary(bundle, note), output)
