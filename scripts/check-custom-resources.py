#!/usr/bin/env python3
"""Validates the custom resources of Kubernetes manifests against their CRDs, strictly.

kubernetes-validate checks the built-in kinds against the API's schemas and only warns about a
kind it has no schema for ("Couldn't find schema"), so a typo in an ExternalSecret would pass.
This takes over there: every document whose apiVersion is not a built-in group is validated
against the openAPIV3Schema of its CRD, found by group, kind and served version in CRD_DIR
(CRDs committed as test data, each with its source and version in tests/fixtures/README.md).

Strict, as `kubectl apply --validate=strict` is: an unknown field is an error (every object
schema without additionalProperties or x-kubernetes-preserve-unknown-fields gets
additionalProperties: false), and metadata is checked against the ObjectMeta schema that
kubernetes-validate bundles. A custom resource without a CRD in CRD_DIR is an error.
Not checked: CEL rules (x-kubernetes-validations) and defaulting, which only a server does.

Each resource is also checked with an unknown field added to its spec, which must fail: the
validation is proven to reject something, not merely to run.

Usage: check-custom-resources.py CRD_DIR MANIFEST...   (exit 0: all valid; 1: a finding)
Runs with the Python of scripts/test.sh's venv (PyYAML, jsonschema, kubernetes-validate).
"""

import copy
import pathlib
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv


def builtin(api_version):
    """Built-in API groups: the core group (`v1`), dotless groups (`apps/v1`) and *.k8s.io."""
    if "/" not in api_version:
        return True
    group = api_version.split("/", 1)[0]
    return "." not in group or group.endswith(".k8s.io")


def strict(schema):
    """The OpenAPI v3 schema as a JSON schema that refuses unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if node.pop("x-kubernetes-int-or-string", False):
                node.pop("type", None)
                node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_crds(crd_dir):
    """(group, kind, version) -> a validator of its strict schema, for every served version of
    every CRD."""
    schemas = {}
    for path in sorted(pathlib.Path(crd_dir).glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (spec["group"], spec["names"]["kind"], version["name"])
                    schemas[key] = jsonschema.Draft7Validator(
                        strict(version["schema"]["openAPIV3Schema"])
                    )
    return schemas


def object_meta():
    """The ObjectMeta schema kubernetes-validate bundles (strict), for `metadata`."""
    version = kv.latest_version()
    defs = kv.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
    )
    return jsonschema.Draft202012Validator(
        {"$defs": defs["$defs"], "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    )


def errors(validator, resource):
    return sorted(validator.iter_errors(resource), key=lambda e: list(e.path))


def check(path, index, resource, schemas, meta):
    """Findings for one custom resource (empty: valid)."""
    group, version = resource["apiVersion"].split("/", 1)
    name = f"{path}: {resource['kind']}/{resource.get('metadata', {}).get('name')}"
    schema = schemas.get((group, resource["kind"], version))
    if schema is None:
        return [f"{name}: no CRD for {resource['apiVersion']} {resource['kind']} in the CRD directory"]
    found = [
        f"{name}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}"
        for e in errors(schema, resource)
    ]
    found += [
        f"{name}: {'.'.join(['metadata', *map(str, e.path)])}: {e.message}"
        for e in errors(meta, resource.get("metadata", {}))
    ]
    probe = copy.deepcopy(resource)
    probe.setdefault("spec", {})["notAField"] = True
    if not errors(schema, probe):
        found.append(f"{name}: an unknown spec field passed: the check is not strict")
    return found


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    schemas, meta = load_crds(argv[1]), object_meta()
    findings, checked = [], 0
    for path in argv[2:]:
        for index, resource in enumerate(yaml.safe_load_all(pathlib.Path(path).read_text())):
            if not resource or builtin(resource.get("apiVersion", "")):
                continue
            checked += 1
            findings += check(path, index, resource, schemas, meta)
    for finding in findings:
        print(f"ERROR {finding}")
    print(f"custom resources: {checked} checked against {len(schemas)} CRD versions, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
