"""The DriftPolicy CRD: generated from the spec schema, structural, and as strict as the
policy parser on the same good and bad policies (schema rules and CEL rules both)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from crd_schema import cel_errors, cel_rules, crd_schema, schema_errors
from driftkeeper.errors import PolicyError
from driftkeeper.policy import parse_policy
from driftkeeper_operator import crd
from policy_cases import BAD, GOOD

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "k8s" / "crds" / "driftpolicies.driftkeeper.io.yaml"
EXAMPLES = sorted((ROOT / "k8s" / "examples").glob("driftpolicy-*.yaml"))


def _schema() -> dict[str, Any]:
    return crd_schema(COMMITTED)


def _api_server_accepts(document: dict[str, Any]) -> bool:
    """The schema and CEL checks the API server makes, after it fills the defaults (here
    the parser's defaults, which come from the same schema)."""
    schema = _schema()
    if schema_errors(schema, document):
        return False
    try:
        defaulted = {**document, "spec": parse_policy(document).spec}
    except PolicyError:
        defaulted = document
    return not cel_errors(schema, defaulted)


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
            "metadata": {"name": "p"}, "spec": spec}


def test_committed_crd_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == crd.render(), "run scripts/generate-crd"


def test_crd_validates_against_the_api_schema() -> None:
    kubernetes_validate.validate(yaml.safe_load(COMMITTED.read_text()), "1.30", strict=True)


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                out += _walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out += _walk(node[key], f"{path}[{key}]")
    return out


def test_schema_is_structural() -> None:
    """The API server's rules: a type on every node unless it preserves unknown fields or is
    int-or-string, no $ref, no type/default/description/nullable inside anyOf or not."""
    for path, node in _walk(_schema()):
        assert "$ref" not in node and "$defs" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "uniqueItems" not in node, path
        if "type" not in node:
            assert node.get("x-kubernetes-preserve-unknown-fields") or node.get(
                "x-kubernetes-int-or-string"), f"{path} has no type"
        for branch in [*node.get("anyOf", []), node.get("not") or {}]:
            assert not {"type", "default", "description", "nullable"} & set(branch), path


def test_printer_columns_and_status_subresource() -> None:
    version = yaml.safe_load(COMMITTED.read_text())["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {"Phase": ".status.phase", "Data": ".status.data.score",
                       "Concept": ".status.concept.score", "Model": ".status.modelVersion",
                       "Last Retrain": ".status.lastRetrain.finishedAt",
                       "Age": ".metadata.creationTimestamp"}
    assert "conditions" in version["schema"]["openAPIV3Schema"]["properties"]["status"][
        "properties"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_accepted(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert _api_server_accepts(document)
    parse_policy(document)


@pytest.mark.parametrize("spec", GOOD, ids=str)
def test_good_policies_pass_both_the_crd_and_the_parser(spec: dict[str, Any]) -> None:
    assert _api_server_accepts(_policy(spec))
    parse_policy(_policy(spec))


@pytest.mark.parametrize("spec", BAD, ids=str)
def test_bad_policies_fail_both_the_crd_and_the_parser(spec: dict[str, Any]) -> None:
    assert not _api_server_accepts(_policy(spec))
    with pytest.raises(PolicyError):
        parse_policy(_policy(spec))


def test_window_rule_is_cel_and_names_its_field() -> None:
    schema = _schema()
    rules = cel_rules(schema)
    assert (("spec", "window"), crd.WINDOW_RULE["rule"]) in rules
    assert (("spec", "concept", "window"), crd.WINDOW_RULE["rule"]) in rules
    document = copy.deepcopy(_policy({"window": {"size": 100, "minSamples": 500,
                                                 "maxAge": "1h"}}))
    assert cel_errors(schema, document) == [f"spec.window: {crd.WINDOW_RULE['rule']}"]
