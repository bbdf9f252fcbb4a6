"""A test "kubelet": what the Job controller and the kubelet would do for our Jobs.

No controller or kubelet runs here, so this plays them, through the API like they do: for
each new Job in a namespace it creates a Pod (labelled ``job-name``), runs the container's
command as a local process with its volumes mapped to directories (a PersistentVolumeClaim
to a directory the test names, a ConfigMap to a directory holding its keys, an emptyDir to a
temporary one, the termination log to a file), then writes the Pod's terminated state with
its termination message and the Job's status. ``activeDeadlineSeconds`` and
``backoffLimit`` are honoured; a deleted Job's process is stopped. It also syncs ConfigMap
keys to files, as the kubelet updates a mounted ConfigMap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from .cluster import Cluster

BIN = Path(sys.executable).parent


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Poller:
    """Calls :meth:`sync` every ``period`` seconds on a daemon thread until stopped; an
    exception is kept in ``errors`` (a test asserts there are none) and the loop goes on."""

    period = 0.2

    def start(self) -> Poller:
        self._stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:
                self.errors.append(repr(exc))
            self._stop.wait(self.period)

    def sync(self) -> None:
        raise NotImplementedError


@dataclass
class RunningPod:
    job: str
    pod: str
    process: subprocess.Popen | None
    started: float
    deadline: float | None
    termination_log: Path
    log: Path
    attempt: int


@dataclass
class Kubelet(Poller):
    """Runs a namespace's Jobs as local processes (see the module docstring)."""

    cluster: Cluster
    namespace: str
    claims: dict[str, Path]  # PersistentVolumeClaim name -> the directory it holds
    workdir: Path
    hold: threading.Event = field(default_factory=threading.Event)  # set: pods stay Pending
    started_jobs: list[str] = field(default_factory=list)
    _running: dict[str, RunningPod] = field(default_factory=dict)
    _attempts: dict[str, int] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)

    def stop(self) -> None:
        super().stop()
        for running in self._running.values():
            _kill(running.process)

    def sync(self) -> None:
        jobs = {j["metadata"]["name"]: j for j in self.cluster.jobs(self.namespace)}
        for name, running in list(self._running.items()):
            if name not in jobs:  # deleted: the garbage collector would remove its pod
                _kill(running.process)
                del self._running[name]
                continue
            self._poll(jobs[name], running)
        for name, job in jobs.items():
            if name in self._running or name in self._done or self.hold.is_set():
                continue
            self._run(job)

    # -- running a pod ---------------------------------------------------------------------

    def _run(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        attempt = self._attempts.get(name, 0) + 1
        self._attempts[name] = attempt
        if name not in self.started_jobs:
            self.started_jobs.append(name)
        template = job["spec"]["template"]
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        labels = {**(template["metadata"].get("labels") or {}), "job-name": name,
                  "batch.kubernetes.io/job-name": name}
        self.cluster.core.create_namespaced_pod(self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "labels": labels, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": job["metadata"]["uid"], "controller": True}]},
            "spec": template["spec"]})
        container = template["spec"]["containers"][0]
        root = self.workdir / pod_name
        mounts = self._mounts(template["spec"], container, root)
        termination = root / "termination-log"
        termination.touch()
        mounts[container.get("terminationMessagePath", "/dev/termination-log")] = termination
        argv = [_host_path(a, mounts) for a in container["command"] + container.get("args", [])]
        argv[0] = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])}}
        log = root / "container.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        deadline = job["spec"].get("activeDeadlineSeconds")
        self._running[name] = RunningPod(name, pod_name, process, time.time(),
                                         time.time() + deadline if deadline else None,
                                         termination, log, attempt)
        self._status(pod_name, {"phase": "Running", "containerStatuses": [{
            "name": container["name"], "ready": True, "restartCount": 0,
            "image": container["image"], "imageID": "", "state": {"running": {
                "startedAt": _now()}}}]})
        self._job_status(name, {"active": 1, "startTime": _now()})

    def _mounts(self, pod_spec: dict[str, Any], container: dict[str, Any],
                root: Path) -> dict[str, Path]:
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mounts = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                host = self.claims.get(claim) or root / f"claim-{claim}"  # an empty volume
            elif "configMap" in volume:
                host = root / f"configmap-{mount['name']}"
                cm = self.cluster.config_map(self.namespace, volume["configMap"]["name"])
                host.mkdir(parents=True, exist_ok=True)
                for key, value in ((cm or {}).get("data") or {}).items():
                    (host / key).write_text(value)
            else:
                host = root / f"emptydir-{mount['name']}"
            host.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = host
        return mounts

    def _poll(self, job: dict[str, Any], running: RunningPod) -> None:
        if running.process is None:
            return
        code = running.process.poll()
        if code is None:
            if running.deadline is not None and time.time() > running.deadline:
                _kill(running.process)
                self._finish(job, running, 137, reason="DeadlineExceeded",
                             message="Job was active longer than specified deadline")
            return
        self._finish(job, running, code)

    def _finish(self, job: dict[str, Any], running: RunningPod, code: int,
                reason: str | None = None, message: str | None = None) -> None:
        name = running.job
        del self._running[name]
        text = running.termination_log.read_text()[:4096]
        if not text and code != 0:  # terminationMessagePolicy FallbackToLogsOnError
            text = "\n".join(running.log.read_text(errors="replace").splitlines()[-80:])[-2048:]
        container = job["spec"]["template"]["spec"]["containers"][0]["name"]
        self._status(running.pod, {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": container, "ready": False, "restartCount": 0,
                                   "image": "", "imageID": "", "state": {"terminated": {
                                       "exitCode": code, "reason": "Completed" if code == 0
                                       else "Error", "message": text,
                                       "startedAt": _now(), "finishedAt": _now()}}}]})
        if code == 0:
            self._done.add(name)
            # As the Job controller does: the success criteria first, then Complete (a real
            # API server refuses Complete without SuccessCriteriaMet).
            self._job_status(name, {"active": 0, "succeeded": 1, "completionTime": _now(),
                                    "conditions": [_condition("SuccessCriteriaMet",
                                                              "CompletionsReached"),
                                                   _condition("Complete",
                                                              "CompletionsReached")]})
            return
        retries = job["spec"].get("backoffLimit", 6)
        if reason is None and running.attempt <= retries:
            self._job_status(name, {"active": 0, "failed": running.attempt})
            return  # the next sync starts another pod
        self._done.add(name)
        why = (reason or "BackoffLimitExceeded",
               message or "Job has reached the specified backoff limit")
        # FailureTarget first, then Failed (a real API server refuses Failed without it).
        self._job_status(name, {"active": 0, "failed": running.attempt, "conditions": [
            _condition("FailureTarget", *why), _condition("Failed", *why)]})

    def _status(self, pod: str, status: dict[str, Any]) -> None:
        self.cluster.core.patch_namespaced_pod_status(pod, self.namespace, {"status": status})

    def _job_status(self, job: str, status: dict[str, Any]) -> None:
        try:
            self.cluster.batch.patch_namespaced_job_status(job, self.namespace,
                                                           {"status": status})
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile is fine; a refused status is not
                raise


def _condition(kind: str, reason: str | None = None, message: str | None = None
               ) -> dict[str, Any]:
    out = {"type": kind, "status": "True", "lastProbeTime": _now(),
           "lastTransitionTime": _now()}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _host_path(arg: str, mounts: dict[str, Path]) -> str:
    """An argument naming a path inside the container, as the host path it maps to."""
    for mount, host in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if arg == mount or arg.startswith(mount.rstrip("/") + "/"):
            return str(host) + arg[len(mount):]
    return arg


def _kill(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@dataclass
class ConfigMapSync(Poller):
    """Copies one key of a ConfigMap to a file whenever it changes (the kubelet's update of
    a mounted ConfigMap; the model pods re-read their policy file)."""

    cluster: Cluster
    namespace: str
    name: str
    key: str
    target: Path
    _last: str | None = None

    def sync(self) -> None:
        with contextlib.suppress(ApiException, OSError):  # not there yet: the next round
            cm = self.cluster.config_map(self.namespace, self.name)
            value = ((cm or {}).get("data") or {}).get(self.key)
            if value is not None and value != self._last:
                tmp = self.target.with_suffix(".tmp")
                tmp.write_text(value)
                os.replace(tmp, self.target)
                self._last = value
