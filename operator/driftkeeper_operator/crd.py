"""The DriftPolicy CustomResourceDefinition, generated from the one spec schema.

``driftkeeper/policy/driftpolicy.schema.yaml`` (JSON Schema 2020-12, what policy files are
validated against) becomes a structural OpenAPI v3 schema the API server enforces:

* ``$ref`` to ``$defs`` inlined; ``additionalProperties: false`` dropped (the API server
  prunes, and with kubectl's strict field validation rejects, unknown fields);
  ``exclusiveMinimum: x`` becomes ``minimum: x, exclusiveMinimum: true`` (OpenAPI 3.0);
  ``uniqueItems`` becomes ``x-kubernetes-list-type: set``.
* A number-or-``"auto"`` threshold cannot have a type in a structural schema, and the API
  server's CEL compiler ignores untyped fields, so those nodes keep
  ``x-kubernetes-preserve-unknown-fields`` and carry type-free value validations instead:
  ``anyOf`` a non-negative number (every other JSON type is ruled out by a constraint it
  cannot meet) or the string ``auto``.
* Cross-field rules become ``x-kubernetes-validations`` (CEL), e.g. a window's
  ``minSamples <= size``.

Run ``scripts/generate-crd`` after changing either schema; a test keeps the committed CRD
equal to the generated one.
"""

from __future__ import annotations

import copy
import sys
from importlib import resources
from typing import Any

import yaml

from driftkeeper.policy import spec_schema

GROUP = "driftkeeper.io"
VERSION = "v1alpha1"
KIND = "DriftPolicy"
PLURAL = "driftpolicies"
SINGULAR = "driftpolicy"
SHORT_NAMES = ["dp"]
CRD_NAME = f"{PLURAL}.{GROUP}"

NUMBER_OR_AUTO: dict[str, Any] = {
    "x-kubernetes-preserve-unknown-fields": True,
    "anyOf": [
        # A number >= 0. Each bound below applies to one other JSON type only and cannot be
        # met by it, so strings, objects, arrays and booleans all fail this branch.
        {"minimum": 0, "minLength": 1, "maxLength": 0, "minProperties": 1,
         "maxProperties": 0, "minItems": 1, "maxItems": 0, "not": {"enum": [True, False]}},
        {"enum": ["auto"]},
    ],
}
"""A threshold: a number >= 0 or "auto", enforced by the API server without a type."""

# Written to hold for partial objects too: the API server also checks defaults ({}) with it.
WINDOW_RULE = {"rule": "!has(self.minSamples) || !has(self.size) || "
                       "self.minSamples <= self.size",
               "message": "minSamples must not exceed size", "fieldPath": ".minSamples"}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Data", "type": "number", "jsonPath": ".status.data.score",
     "description": "Mean per-feature data drift score of the fleet's window"},
    {"name": "Concept", "type": "number", "jsonPath": ".status.concept.score",
     "description": "Relative RMSE increase of the fleet's labelled window"},
    {"name": "Model", "type": "string", "jsonPath": ".status.modelVersion"},
    {"name": "Last Retrain", "type": "date", "jsonPath": ".status.lastRetrain.finishedAt"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def status_schema() -> dict[str, Any]:
    text = (resources.files("driftkeeper_operator") / "status.schema.yaml").read_text()
    return yaml.safe_load(text)


def structural(node: Any, defs: dict[str, Any]) -> Any:
    """One JSON Schema node as a structural OpenAPI v3 node (see the module docstring)."""
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if name == "threshold":
            out = copy.deepcopy(NUMBER_OR_AUTO)
            out["description"] = siblings.get("description", defs[name].get("description"))
            if "default" in siblings:
                out["default"] = siblings["default"]
            return out
        merged = {**copy.deepcopy(defs[name]), **siblings}
        out = structural(merged, defs)
        if name == "window":
            out["x-kubernetes-validations"] = [WINDOW_RULE]
        return out
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$defs" or (key == "additionalProperties" and value is False):
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "uniqueItems":
            if value:
                out["x-kubernetes-list-type"] = "set"
        elif key == "properties":
            out[key] = {name: _defaulted(structural(sub, defs)) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, defs)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _defaulted(node: dict[str, Any]) -> dict[str, Any]:
    """An optional block of settings defaults to ``{}``, so that the API server, like the
    policy parser, fills in the defaults below it when the block is left out."""
    if (node.get("type") == "object" and "properties" in node and "default" not in node
            and not node.get("required")):
        return {**node, "default": {}}
    return node


def spec_to_structural() -> dict[str, Any]:
    schema = spec_schema()
    return structural(schema, schema.get("$defs", {}))


def custom_resource_definition() -> dict[str, Any]:
    """The whole CRD object (what ``kubectl apply`` and the chart's ``crds/`` take)."""
    spec = spec_to_structural()
    spec["description"] = spec.pop("description", "")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME,
                     "labels": {"app.kubernetes.io/name": "driftkeeper",
                                "app.kubernetes.io/component": "crd"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": SINGULAR, "shortNames": SHORT_NAMES,
                      "categories": ["driftkeeper"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "Drift thresholds, windows and retraining rules for one "
                                   "served model, and what the operator saw and did.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status_schema(),
                    },
                }},
            }],
        },
    }


HEADER = ("# Generated by scripts/generate-crd from service/driftkeeper/policy/"
          "driftpolicy.schema.yaml\n# and operator/driftkeeper_operator/status.schema.yaml. "
          "Do not edit by hand.\n")


def render() -> str:
    return HEADER + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
