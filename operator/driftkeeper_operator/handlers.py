"""The Kopf handlers: thin, each a few lines over the operator's plain functions.

* start-up: every Kopf setting, with its reason; the Kubernetes client; the configuration.
* create / update / resume: validate the spec, write the policy ConfigMap the model pods
  mount, record the generation; an invalid spec is phase ``Invalid`` plus a Warning event
  naming the field, and a permanent error (no retry storm).
* an index of every policy, and one scheduler (started at start-up) that ticks each at its
  own interval (``scheduler.py``, ``executor.py``); it posts only the events the ticks
  hand it (already throttled) and logs errors to the operator's logger, never to Kopf's
  per-object logger, which would post each as an Event.
* a policy gone (its watch event): remove its Jobs and ConfigMap at once; owner references
  make the garbage collector do it anyway.

No handler needs a finalizer (a Kopf daemon would force one), so deleting a policy never
waits for the operator: ``helm uninstall``, which may remove the operator and its RBAC
first, leaves nothing stuck. A finalizer left by an older operator is removed by Kopf.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from driftkeeper.errors import PolicyError
from driftkeeper.policy.engine import INVALID
from driftkeeper.policy.metrics import PolicyMetrics

from .builders import config_map_name, policy_config_map
from .config import OperatorConfig
from .crd import GROUP, PLURAL, VERSION
from .executor import PolicyWorker, TickResult, invalid_status, parse_for_cluster, verify_volume
from .job_guard import ignored_fields
from .kube import Kube
from .references import SharedReferences
from .scheduler import PolicyScheduler

PREFIX = "driftkeeper.io"
log = logging.getLogger("driftkeeper.operator")  # not Kopf's object logger: it posts events


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_config = OperatorConfig.from_env()
    # Kopf's own marks live in our API group, not under kopf.zalando.org.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"  # only to remove an old one
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
    memo.references = SharedReferences(operator_config.scrape_timeout)
    if operator_config.metrics_port:
        memo.metrics.serve(operator_config.metrics_port)


@kopf.index(GROUP, VERSION, PLURAL)
def policies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """Every DriftPolicy as last seen (a plain copy: the ticks read it from threads)."""
    return {(namespace, name): copy.deepcopy(dict(body))}


@kopf.on.startup()
async def start_scheduler(memo: kopf.Memo, policies: kopf.Index, **_: Any) -> None:
    """One scheduler for every policy in the index, until the operator stops."""
    kube: Kube = memo.kube

    def make_worker(namespace: str, name: str) -> PolicyWorker:
        return PolicyWorker(name, namespace, kube, memo.config, metrics=memo.metrics,
                            references=memo.references)

    def post(body: Mapping[str, Any], result: TickResult) -> None:
        meta = body.get("metadata") or {}
        for event in result.events:
            log.info("%s/%s %s: %s", meta.get("namespace"), meta.get("name"), event.reason,
                     event.message)
            try:
                kube.post_event(dict(body), event.type, event.reason, event.message,
                                event.time)
            except ApiException as exc:  # an event lost is not worth a failed tick
                log.warning("cannot post event %s: %s", event.reason, exc.reason)

    scheduler = PolicyScheduler(make_worker, post, forget=memo.metrics.forget)
    memo.policy_scheduler = scheduler
    memo.stopped = asyncio.Event()
    memo.scheduler = asyncio.create_task(scheduler.run(policies, memo.stopped))


@kopf.on.probe(id="scheduler")
def scheduler_alive(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    """Liveness (``--liveness``): fails if the scheduler that ticks every policy stopped,
    so that the kubelet restarts the operator instead of it idling unseen."""
    task = memo.get("scheduler")
    if task is None or task.done():
        raise RuntimeError("the policy scheduler is not running")
    scheduler: PolicyScheduler = memo.policy_scheduler
    return {"policies": len(scheduler.scheduled),
            "ticking": sum(1 for s in scheduler.scheduled.values() if s.running)}


@kopf.on.cleanup()
async def stop_scheduler(memo: kopf.Memo, **_: Any) -> None:
    memo.stopped.set()
    await asyncio.wait([memo.scheduler], timeout=40)


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
    spec = body.get("spec") or {}
    try:
        policy, target = parse_for_cluster(name, spec, memo.config)
        check_volume(kube, namespace, policy, target)
    except PolicyError as exc:
        kube.patch_status(namespace, name, invalid_status(body, str(exc), time.time()))
        memo.metrics.record(namespace, name, INVALID, 0, None, None)
        kopf.event(body, type="Warning", reason="InvalidPolicy", message=str(exc))
        raise kopf.PermanentError(str(exc)) from None
    for field in ignored_fields(spec):
        kopf.event(body, type="Warning", reason="IgnoredField",
                   message=f"{field} is ignored: the retraining Job's resources come from "
                   f"the operator's settings (retrainJob.resources in the Helm values)")
    manifest = policy_config_map(policy, namespace)
    kopf.adopt(manifest, owner=dict(body))
    if kube.apply_config_map(manifest):
        kopf.event(body, type="Normal", reason="PolicyApplied",
                   message=f"thresholds and windows written to ConfigMap "
                   f"{manifest['metadata']['name']}")
    kube.patch_status(namespace, name, {"observedGeneration": meta.get("generation")})


def check_volume(kube: Kube, namespace: str, policy: Any, target: Any) -> None:
    """A policy naming a volume its Deployment does not mount is invalid now; a Deployment
    not there yet (or unreadable) is checked again before each retraining Job. A policy
    that never retrains mounts nothing, and is not checked."""
    if not policy.retraining.enabled:
        return
    try:
        verify_volume(kube, namespace, policy, target)
    except (LookupError, ApiException) as exc:
        log.info("%s/%s: volume not checked yet: %s", namespace, policy.name, exc)


@kopf.on.event(GROUP, VERSION, PLURAL)
def clean_up(event: kopf.RawEvent, name: str, namespace: str, memo: kopf.Memo,
             **_: Any) -> None:
    """A policy gone: remove its Jobs and ConfigMap now (a watch event, not a delete
    handler, which would need a finalizer; the garbage collector does it anyway)."""
    if event.get("type") != "DELETED":
        return
    kube: Kube = memo.kube
    try:
        jobs = kube.delete_policy_jobs(namespace, name)
        kube.delete_config_map(namespace, config_map_name(name))
    except ApiException as exc:  # e.g. our RBAC went first (helm uninstall): the GC will
        log.info("%s/%s deleted; clean-up left to the garbage collector: %s", namespace,
                 name, exc.reason)
        return
    log.info("%s/%s deleted, and with it jobs %s and configmap %s", namespace, name, jobs,
             config_map_name(name))
