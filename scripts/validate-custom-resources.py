#!/usr/bin/env python3
"""Validates Kubernetes custom resources against their CustomResourceDefinitions, strictly.

usage: validate-custom-resources.py CRD_DIR MANIFEST...

kubernetes-validate checks built-in kinds against the API's schemas, but for a kind it has no
schema for (a PodMonitor) it only warns, and passes. This checks those: every resource of a
group that a CRD in CRD_DIR defines must be of a kind and version that CRD serves, and must
match that version's openAPIV3Schema the way `kubernetes-validate --strict` matches built-in
kinds: an object whose schema lists its properties takes no others (unless the schema keeps
unknown fields), and `metadata` must be an ObjectMeta (the schema kubernetes-validate bundles).
Resources of other groups are kubernetes-validate's, and are skipped.

Run with the Python of kubernetes-validate's environment: it uses that package's jsonschema,
PyYAML and bundled schemas. Prints one line per resource; exits 1 if any fails.
"""

import glob
import importlib.resources
import os
import sys

import jsonschema
import referencing
import yaml

OBJECT_META = "https://kubernetes.io/api/objectmeta/meta/v1"


def strict(schema):
    """The schema with every object that lists its properties closed to others."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


def bundled_schemas():
    """kubernetes-validate's newest strict ObjectMeta schema and the definitions it uses."""
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    newest = max(
        (d for d in root.iterdir() if d.name.endswith("-local-strict")),
        key=lambda d: tuple(int(n) for n in d.name[1:].split("-")[0].split(".")),
    )
    registry = referencing.Registry()
    for name in ("objectmeta-meta-v1.json", "_definitions.json"):
        contents = yaml.safe_load((newest / name).read_text())
        registry = referencing.Resource.from_contents(contents) @ registry
    return registry


def load_crds(crd_dir):
    """(group, version, kind) -> that version's schema, made strict, for each served version."""
    schemas = {}
    groups = set()
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                groups.add(spec["group"])
                for version in spec["versions"]:
                    if not version.get("served"):
                        continue
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
                    key = (spec["group"], version["name"], spec["names"]["kind"])
                    schemas[key] = (schema, crd["metadata"]["name"])
    return schemas, groups


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    crd_dir, manifests = argv[1], argv[2:]
    schemas, groups = load_crds(crd_dir)
    if not schemas:
        print(f"ERROR no served CustomResourceDefinition in {crd_dir}")
        return 1
    registry = bundled_schemas()
    failed = False
    for manifest in manifests:
        with open(manifest) as f:
            resources = [r for r in yaml.safe_load_all(f) if r]
        for resource in resources:
            group, _, version = resource.get("apiVersion", "").rpartition("/")
            if group not in groups:
                continue
            name = f"{resource.get('kind', '?').lower()}/{resource.get('metadata', {}).get('name', '?')}"
            found = schemas.get((group, version, resource.get("kind")))
            if found is None:
                print(f"ERROR {manifest}: {name}: no served CRD version for {resource.get('apiVersion')} {resource.get('kind')}")
                failed = True
                continue
            schema, crd = found
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
            errors = sorted(validator.iter_errors(resource), key=lambda e: list(e.path))
            for error in errors:
                path = ".".join(str(p) for p in error.path)
                print(f"ERROR {manifest} did not validate for resource {name} against CRD {crd}: {path}: {error.message}")
            if errors:
                failed = True
            else:
                print(f"INFO {manifest} passed for resource {name} against CRD {crd} ({group}/{version})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
