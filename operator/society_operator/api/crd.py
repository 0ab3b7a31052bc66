"""The Society CustomResourceDefinition, rendered from the API models (never edited by hand).

pydantic emits JSON Schema 2020-12; a CRD needs a *structural* OpenAPI v3.0 schema. The
translation below is the whole difference:
- `$ref`s are inlined (a CRD schema is self-contained);
- `Optional[X]` becomes X: leaving a field out is how a manifest says "none";
- `int | str` quantities become `x-kubernetes-int-or-string`;
- numeric `exclusiveMinimum/Maximum` become OpenAPI 3.0's boolean flags;
- `additionalProperties: false` is dropped: the apiserver prunes unknown fields and kubectl's
  strict field validation (the default) rejects them, while `society validate` rejects them via
  pydantic's extra="forbid";
- titles go, descriptions are kept (so `kubectl explain` works);
- an object field that pydantic fills with a default instance gets that instance as its `default`,
  spelled out leaf by leaf. The apiserver validates each `default` against its own subschema and
  CEL rules as written: it does not fill nested defaults in first, so `default: {}` on an object
  with required fields, or whose rules read a defaulted field, is refused. A required field, or
  an object with a required field that has no default, gets no default at all.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .base import CEL_VALIDATIONS
from .society import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, Society

CRD_NAME = f"{PLURAL}.{GROUP}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _filled_default(node: dict[str, Any]) -> dict[str, Any] | None:
    """The object the apiserver would build from `{}` by filling in the defaults below `node`
    (whose own properties are already translated), or None where that object would lack a
    required field or `node` is not an object with properties."""
    if node.get("type") != "object" or "properties" not in node:
        return None
    filled = {
        name: copy.deepcopy(prop["default"])
        for name, prop in node["properties"].items()
        if "default" in prop
    }
    if not set(node.get("required", [])) <= set(filled):
        return None
    return filled


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Translate one JSON-schema node (and everything under it) to a structural CRD schema."""
    node = dict(node)
    if "$ref" in node:  # a field that is a model: the model's schema, the field's own keys on top
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        own_rules = node.pop(CEL_VALIDATIONS, [])
        target.update(node)
        if own_rules:
            target[CEL_VALIDATIONS] = target.get(CEL_VALIDATIONS, []) + own_rules
        return _structural(target, defs)

    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if node.get("default", ...) is None:
            del node["default"]
        types = {b.get("type") for b in branches}
        if len(branches) == 1:
            merged = dict(branches[0])
            merged.update(node)
            return _structural(merged, defs)
        if types != {"integer", "string"}:
            raise ValueError(f"no structural form for a union of {sorted(map(str, types))}")
        # A resource.Quantity, spelled as kubebuilder spells it: the structural-schema rules
        # allow `type` inside anyOf for exactly this shape, with the pattern beside it.
        node["pattern"] = next(b["pattern"] for b in branches if b.get("type") == "string")
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        node["x-kubernetes-int-or-string"] = True

    node.pop("title", None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound in ("Minimum", "Maximum"):
        exclusive = node.get(f"exclusive{bound}")
        if exclusive is not None and not isinstance(exclusive, bool):
            node[bound.lower()] = exclusive
            node[f"exclusive{bound}"] = True
    if "description" in node:
        node["description"] = _one_line(node["description"])

    if "properties" in node:
        props = {}
        required = set(node.get("required", []))
        for name, raw in node["properties"].items():
            prop = props[name] = _structural(raw, defs)
            optional = "anyOf" in raw and raw.get("default", ...) is None
            if name in required or optional or "default" in prop:
                continue
            default = _filled_default(prop)
            if default is not None:
                prop["default"] = default
        node["properties"] = props
    if isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"], defs)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], defs)
    return node


def openapi_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema for the Society resource."""
    raw = Society.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs")
    root = _structural(raw, defs)
    props = root["properties"]
    # metadata is the apiserver's: a CRD may only say it is an object.
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion of this object: society.dev/v1alpha1.",
    }
    props["kind"] = {"type": "string", "description": "Kind of this object: Society."}
    props["spec"].pop("default", None)
    props["status"].pop("default", None)
    root["required"] = ["spec"]
    return root


def render_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "society-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "ml"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Iteration", "type": "integer", "jsonPath": ".status.iteration"},
                        {"name": "Accuracy", "type": "number", "jsonPath": ".status.accuracy"},
                        {
                            "name": "Degraded",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Degraded")].reason',
                        },
                        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1},
                        {
                            "name": "Agents",
                            "type": "integer",
                            "jsonPath": ".spec.agents",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# GENERATED by `society crd` from the API models; do not edit (run `make crd`).\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=100)
