"""The Kopf handlers: thin, each a few lines over the operator's plain functions.

* start-up: every Kopf setting, with its reason; the Kubernetes client; the configuration.
* create / update / resume: validate the spec, write the policy ConfigMap the model pods
  mount, record the generation; an invalid spec is phase ``Invalid`` plus a Warning event
  naming the field, and a permanent error (no retry storm).
* a daemon per policy: the evaluation loop (``worker.py``), on the policy's own interval.
* delete: remove the policy's Jobs and ConfigMap (owner references would, eventually; the
  finalizer makes it happen before the policy is gone).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes import client, config

from driftkeeper.errors import PolicyError
from driftkeeper.policy.engine import INVALID, Condition
from driftkeeper.policy.metrics import PolicyMetrics

from .builders import conditions as status_conditions
from .builders import config_map_name, policy_config_map
from .config import OperatorConfig
from .crd import GROUP, PLURAL, VERSION
from .kube import Kube
from .worker import PolicyWorker, parse_for_cluster

PREFIX = "driftkeeper.io"
log = logging.getLogger("driftkeeper.operator")  # not Kopf's object logger: it posts events


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_config = OperatorConfig.from_env()
    # Kopf's own marks live in our API group, not under kopf.zalando.org.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    # Watches end on the server's side within this time and are restarted: a watch that
    # silently stalls (a dead connection no error reaches) costs at most this long.
    settings.watching.server_timeout = operator_config.watch_timeout
    settings.watching.client_timeout = operator_config.watch_timeout + 30
    settings.watching.connect_timeout = 30
    # One CRD, installed before the operator: no runtime scanning of CRDs and namespaces,
    # which saves two cluster-wide watches and their RBAC.
    settings.scanning.disabled = True
    # Our events say what the engine decided; Kopf's per-handler events only add noise.
    settings.posting.level = logging.WARNING
    # One replica (Deployment strategy Recreate): no peering. See operator/README.md.
    settings.peering.standalone = True
    memo.config = operator_config
    memo.kube = Kube(_api_client())
    memo.metrics = PolicyMetrics()
    if operator_config.metrics_port:
        memo.metrics.serve(operator_config.metrics_port)


def _api_client() -> client.ApiClient:
    """In a pod: its ServiceAccount; elsewhere: the standard kubeconfig (KUBECONFIG)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def apply_spec(body: kopf.Body, name: str, namespace: str, meta: kopf.Meta, memo: kopf.Memo,
               **_: Any) -> None:
    kube: Kube = memo.kube
    try:
        policy, _target = parse_for_cluster(name, body.get("spec") or {})
    except PolicyError as exc:
        kube.patch_status(namespace, name, invalid_status(body, str(exc)))
        memo.metrics.record(namespace, name, INVALID, 0, None, None)
        kopf.event(body, type="Warning", reason="InvalidPolicy", message=str(exc))
        raise kopf.PermanentError(str(exc)) from None
    manifest = policy_config_map(policy, namespace)
    kopf.adopt(manifest, owner=dict(body))
    if kube.apply_config_map(manifest):
        kopf.event(body, type="Normal", reason="PolicyApplied",
                   message=f"thresholds and windows written to ConfigMap "
                   f"{manifest['metadata']['name']}")
    kube.patch_status(namespace, name, {"observedGeneration": meta.get("generation")})


def invalid_status(body: kopf.Body, message: str) -> dict[str, Any]:
    import time

    generation = body.get("metadata", {}).get("generation")
    previous = list((body.get("status") or {}).get("conditions") or [])
    ready = Condition("Ready", "False", "InvalidSpec", message)
    return {"phase": INVALID, "observedGeneration": generation,
            "conditions": status_conditions([], ready, previous, generation, time.time())}


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=30.0)
async def evaluate_fleet(stopped: kopf.DaemonStopped, name: str, namespace: str,
                         body: kopf.Body, memo: kopf.Memo, logger: logging.Logger,
                         **_: Any) -> None:
    worker = PolicyWorker(name, namespace, memo.kube, memo.config, metrics=memo.metrics)
    while not stopped:
        try:
            # The tick blocks (HTTP, numpy): off the event loop. The body is a live view.
            result = await asyncio.to_thread(worker.tick, body)
            delay = result.delay
            for event in result.events:
                kopf.event(body, type=event.type, reason=event.reason, message=event.message)
                log.info("%s/%s %s: %s", namespace, name, event.reason, event.message)
        except Exception:  # one bad tick must not end the policy's monitoring
            logger.exception("evaluation failed; retrying")
            delay = 5.0
        await stopped.wait(delay)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def clean_up(name: str, namespace: str, memo: kopf.Memo, logger: logging.Logger,
             **_: Any) -> None:
    kube: Kube = memo.kube
    jobs = kube.delete_policy_jobs(namespace, name)
    kube.delete_config_map(namespace, config_map_name(name))
    memo.metrics.forget(namespace, name)
    logger.info("deleted jobs %s and configmap %s", jobs, config_map_name(name))
