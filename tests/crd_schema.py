"""Validate custom resources as an API server would: against their CRD's structural
schema (OpenAPI 3.0 read with JSON-schema draft 4 semantics) and its CEL rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml


def crd_schema(path: Path, version: str | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of a CRD file (its storage version, or ``version``)."""
    crd = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    versions = crd["spec"]["versions"]
    chosen = next(v for v in versions if (v["name"] == version if version else v["storage"]))
    return chosen["schema"]["openAPIV3Schema"]


def as_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 to JSON Schema draft 4 semantics (they share the boolean
    exclusiveMinimum); ``nullable`` becomes a null type; x-kubernetes-* are dropped."""
    if isinstance(node, list):
        return [as_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_jsonschema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def schema_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(as_jsonschema(schema))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def cel_rules(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple, str]]:
    """Every (path of properties, CEL rule) in a schema."""
    found = [(path, r["rule"]) for r in node.get("x-kubernetes-validations", [])]
    for name, sub in node.get("properties", {}).items():
        found += cel_rules(sub, (*path, name))
    return found


def cel_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    env = celpy.Environment()
    failed = []
    for path, rule in cel_rules(schema):
        value: Any = document
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        result = env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(value)})
        if not bool(result):
            failed.append(f"{'.'.join(path)}: {rule}")
    return failed
