"""The KubeRay manifests against the CRD schemas of the operator version ops/README.md names.

The schemas are vendored (tests/ops/kuberay-crd-v<version>/, source in SOURCE.md). Two checks
per manifest: JSON-Schema validation of the whole object (types, enums, required fields), and
no field the schema does not declare: the API server prunes unknown fields silently (that is
how an operator older than 1.5.1 loses `authOptions`), so a typo would deploy without error.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve().parent
OPS = HERE.parents[1] / "ops"
KINDS = {"RayCluster": "ray.io_rayclusters", "RayJob": "ray.io_rayjobs"}


def _operator_version() -> str:
    m = re.search(r"KubeRay \(operator (\d+\.\d+\.\d+) or newer\)", (OPS / "README.md").read_text())
    assert m, "ops/README.md must name the KubeRay operator version"
    return m.group(1)


@functools.cache
def _schema(kind: str) -> dict[str, Any]:
    path = HERE / f"kuberay-crd-v{_operator_version()}" / f"{KINDS[kind]}.v1.schema.json"
    assert path.is_file(), f"vendor the CRD schemas of the version ops/README.md names: {path}"
    return dict(json.loads(path.read_text()))


@functools.cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    """A validator for the kind's schema (Kubernetes CRDs use OpenAPI v3, a JSON-Schema
    draft 4 dialect); the schema itself is checked once."""
    schema = _schema(kind)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((OPS / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in KINDS:
                out.append((f"{path.name}:{doc['kind']}", doc))
    return out


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Paths of keys in `value` that `schema` does not declare (what the API server prunes)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = []
        for key, item in value.items():
            if props is not None and key in props:
                out += unknown_fields(item, props[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                out += unknown_fields(item, extra, f"{where}.{key}")
            elif props is not None:
                out.append(f"{where}.{key}")
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            p
            for i, v in enumerate(value)
            for p in unknown_fields(v, schema["items"], f"{where}[{i}]")
        ]
    return []


MANIFESTS = _manifests()


def test_both_kinds_are_checked() -> None:
    assert {doc["kind"] for _, doc in MANIFESTS} == set(KINDS)


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=[n for n, _ in MANIFESTS])
def test_manifest_matches_the_operators_crd(name: str, doc: dict[str, Any]) -> None:
    _validator(doc["kind"]).validate(doc)
    assert unknown_fields(doc, _schema(doc["kind"])) == []


def test_the_checks_catch_wrong_types_and_unknown_fields() -> None:
    (_, cluster) = next((n, d) for n, d in MANIFESTS if d["kind"] == "RayCluster")
    schema = _schema("RayCluster")
    bad = json.loads(json.dumps(cluster))
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        _validator("RayCluster").validate(bad)
    typo = json.loads(json.dumps(cluster))
    typo["spec"]["authOption"] = typo["spec"].pop("authOptions")
    assert unknown_fields(typo, schema) == [".spec.authOption"]
    mode = json.loads(json.dumps(cluster))
    mode["spec"]["authOptions"] = {"mode": "password"}
    with pytest.raises(jsonschema.ValidationError):
        _validator("RayCluster").validate(mode)
