"""KMock's in-memory Kubernetes API, with the little server behaviour our tests rely on.

KMock 0.8 stores objects as posted and merges patches naively. The operator and its tests
also need what every API server does on writes: names from ``generateName``, a ``uid``,
``creationTimestamp``, a ``resourceVersion`` that moves, a ``generation`` that moves with
the spec, the status subresource (a status patch changes only status, a main patch never
does), and ``labelSelector`` on lists and watches. That is added here, nothing more: the
emulator runs no controllers (no garbage collector, no Job controller, no kubelet).

Run as a process: ``python tests/harness/emulator.py --port N --crd FILE...``; it prints its
URL and serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import signal
import sys
import uuid
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import yaml
from kmock._internal import dicts, enums

_versions = itertools.count(1)


def _matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _labels(obj: Any) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


class ApiServer(kmock.KubernetesEmulator):
    """The emulator plus object metadata, the status subresource and label selectors."""

    def _has_status(self, request: Any) -> bool:
        return (request.resource in self.resources
                and "status" in self.resources[request.resource].subresources)

    async def _handle(self, request: Any) -> Any:
        data = request.data if isinstance(request.data, dict) else None
        if request.action == enums.action.CREATE and data is not None:
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace:
                meta.setdefault("namespace", request.namespace)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            meta["resourceVersion"] = str(next(_versions))
            meta["generation"] = 1
            if self._has_status(request):
                data.pop("status", None)  # status is written through its subresource
        elif (request.action == enums.action.UPDATE and data is not None
              and request.name is not None):
            key = (request.resource, request.namespace, request.name)
            current = self.objects[key].raw if key in self.objects and not self.objects[
                key].deleted else None
            if self._has_status(request):
                if request.subresource == "status":
                    for k in [k for k in data if k not in ("status", "metadata")]:
                        del data[k]
                    data["metadata"] = {}
                else:
                    data.pop("status", None)
            meta = data.get("metadata")
            if not isinstance(meta, dict):
                meta = data["metadata"] = {}
            for field in ("uid", "creationTimestamp", "generation", "name", "namespace"):
                meta.pop(field, None)  # the server's, not the client's
            meta["resourceVersion"] = str(next(_versions))
            if current is not None and isinstance(data.get("spec"), dict):
                patched = dicts.merge_patch_dict(current.get("spec") or {}, data["spec"])
                if dict(patched) != (current.get("spec") or {}):
                    meta["generation"] = current["metadata"].get("generation", 1) + 1
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            # A JSON patch whose `test` op fails (kopf tests the resourceVersion before it
            # removes its finalizer) is a 422 on a real API server, which kopf retries
            # quietly; KMock 0.8 answers 500 with a traceback.
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                 "reason": "Invalid", "code": 422,
                 "message": f"the server rejected our request due to an error in our "
                            f"request: {exc}"}, status=422)

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [o for o in result["items"] if _matches(_labels(o), selector)]
        return result

    async def _serve_watch(self, request: Any) -> Any:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if (not selector or not isinstance(event, dict)
                    or _matches(_labels(event.get("object")), selector)):
                yield event


def declare(server: ApiServer, crd: dict[str, Any]) -> None:
    """Declare a CustomResourceDefinition's resource, as the API server would serve it."""
    names, spec = crd["spec"]["names"], crd["spec"]
    for version in spec["versions"]:
        server.resources[f"{spec['group']}/{version['name']}/{names['plural']}"] = (
            kmock.ResourceInfo(kind=names["kind"], singular=names["singular"],
                               namespaced=spec["scope"] == "Namespaced",
                               shortnames=set(names.get("shortNames", [])),
                               categories=set(names.get("categories", [])),
                               verbs={"create", "delete", "get", "list", "patch", "update",
                                      "watch"},
                               subresources=set(version.get("subresources", {}))))


async def serve(port: int, crds: list[str]) -> None:
    async with ApiServer() as server, kmock.Server(server, port=port) as http:
        server.resources.load_bundled()
        for path in crds:
            with open(path) as fh:
                for doc in yaml.safe_load_all(fh):
                    if doc and doc.get("kind") == "CustomResourceDefinition":
                        declare(server, doc)
        print(http.url, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crd", action="append", default=[])
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.crd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
