"""The operator's world for a test: an API server, model replicas, a kubelet, the operator.

Replicas are real ``driftkeeper serve`` processes on 127.0.0.1 sharing one model directory
(the ReadWriteMany volume of a Deployment), each with its own state directory; an
EndpointSlice per replica makes them the target Service's endpoints. Their policy file is
kept equal to the policy ConfigMap (the kubelet's ConfigMap sync), retraining Jobs run as
local processes against the same model directory, and the operator runs as
``driftkeeper operator --namespace NS`` with the test's kubeconfig.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from service_process import RunningService, running_service, stop_process
from traffic import to_rows

from .cluster import Cluster
from .kubelet import ConfigMapSync, Kubelet
from .loopback_proxy import LoopbackProxy

BIN = Path(sys.executable).parent
SERVICE = "diamonds"
CLAIM = "diamonds-models"
IMAGE = "driftkeeper:test"
MODEL_DIR = "/models"  # where the Deployment mounts the claim (the Job too)


def policy_spec(**overrides: Any) -> dict[str, Any]:
    """A policy that acts within seconds on a few hundred rows."""
    spec: dict[str, Any] = {
        "target": {"service": SERVICE, "modelClaim": CLAIM},
        "evaluation": {"interval": "1s", "consecutiveBreaches": 2},
        "window": {"size": 400, "minSamples": 300, "maxAge": "10m"},
        "concept": {"window": {"size": 400, "minSamples": 300, "maxAge": "10m"}},
        "retraining": {"triggers": ["concept"], "cooldown": "10m", "maxFailures": 2,
                       "timeout": "5m", "trainingData": {"minFeedbackRows": 600}},
        "promotion": {"evaluationRows": 200},
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


@dataclass
class Rig:
    cluster: Cluster
    namespace: str
    model_dir: Path
    tmp: Path
    replicas: list[RunningService]
    policy_file: Path
    kubelet: Kubelet
    operator_kubeconfig: Path
    proxy: LoopbackProxy | None = None
    operator: subprocess.Popen | None = None
    operator_logs: list[Path] = field(default_factory=list)

    # -- the operator process ----------------------------------------------------------------

    def start_operator(self) -> None:
        log = self.tmp / f"operator-{len(self.operator_logs)}.log"
        self.operator_logs.append(log)
        env = {**os.environ, "KUBECONFIG": str(self.operator_kubeconfig),
               "DRIFTKEEPER_IMAGE": IMAGE, "DRIFTKEEPER_WATCH_TIMEOUT": "60"}
        if self.proxy is not None:  # replicas by name, as the cluster's DNS would resolve
            env.update(HTTP_PROXY=self.proxy.url, http_proxy=self.proxy.url,
                       NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        with open(log, "wb") as out:
            self.operator = subprocess.Popen(
                [str(BIN / "driftkeeper"), "operator", "--namespace", self.namespace],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop_operator(self, kill: bool = False) -> None:
        if self.operator is None:
            return
        if kill:
            self.operator.kill()
            self.operator.wait(timeout=10)
        else:
            stop_process(self.operator)
        self.operator = None

    def operator_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.operator_logs)

    # -- what the tests look at ---------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        assert self.operator is None or self.operator.poll() is None, self.operator_log()[-4000:]
        return (self.cluster.policy(self.namespace, name) or {}).get("status") or {}

    # -- traffic ------------------------------------------------------------------------------

    def predict(self, replica: int, frame: pd.DataFrame) -> None:
        _post(self.replicas[replica].url + "/predict", to_rows(frame))

    def label(self, replica: int, frame: pd.DataFrame) -> None:
        _post(self.replicas[replica].url + "/feedback", to_rows(frame, with_price=True))


def _post(url: str, rows: list[dict[str, Any]], size: int = 100) -> None:
    with requests.Session() as session:
        for i in range(0, len(rows), size):
            resp = session.post(url, json={"instances": rows[i:i + size]}, timeout=30)
            resp.raise_for_status()


def dearer(frame: pd.DataFrame, factor: float = 1.5) -> pd.DataFrame:
    """The concept shift: colours D, E, F cost ``factor`` times more."""
    dear = frame["color"].isin(["D", "E", "F"])
    return frame.assign(price=np.where(dear, frame["price"] * factor, frame["price"]))


@contextlib.contextmanager
def operator_rig(cluster: Cluster, model_dir: Path, tmp: Path, replicas: int = 2,
                 claims: dict[str, Path] | None = None, policy: str = "diamonds",
                 ) -> Iterator[Rig]:
    namespace = cluster.namespace(f"dk-{uuid.uuid4().hex[:8]}")
    # The Deployment mounts the model claim (and any other claim, at /<claim>): a Job may
    # mount only what it mounts.
    cluster.model_deployment(namespace, SERVICE, {CLAIM: MODEL_DIR, **{
        c: f"/{c}" for c in claims or {}}}, access_modes=["ReadWriteOnce"])
    policy_file = tmp / "policy.yaml"
    with contextlib.ExitStack() as stack:
        services = [stack.enter_context(running_service(model_dir, tmp, workers=2,
                                                        policy=policy_file))
                    for _ in range(replicas)]
        for i, svc in enumerate(services):
            cluster.endpoint_slice(namespace, SERVICE, f"{SERVICE}-{i}",
                                   int(svc.url.rsplit(":", 1)[1]))
        sync = ConfigMapSync(cluster, namespace, f"driftpolicy-{policy}", "policy.yaml",
                             policy_file).start()
        stack.callback(sync.stop)
        kubelet = Kubelet(cluster, namespace, {CLAIM: model_dir, **(claims or {})},
                          tmp / "kubelet").start()
        stack.callback(kubelet.stop)
        proxy = None
        if cluster.backend != "kmock":
            proxy = LoopbackProxy()
            stack.callback(proxy.stop)
        rig = Rig(cluster, namespace, model_dir, tmp, services, policy_file, kubelet,
                  cluster.operator_kubeconfig(namespace, tmp), proxy)
        rig.start_operator()
        stack.callback(rig.stop_operator)
        yield rig
        assert not kubelet.errors and not sync.errors, kubelet.errors + sync.errors
