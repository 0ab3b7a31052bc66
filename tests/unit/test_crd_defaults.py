"""Every `default` in the generated CRD is what the kube-apiserver accepts.

The apiserver validates each default against its own subschema and that subschema's CEL rules,
as written: it does not fill in the nested defaults first. `default: {}` on an object with a
required field ("Required value"), or on one whose rule reads a defaulted field ("no such key"),
makes the whole CRD uninstallable. These tests say the same thing without a cluster;
tests/cluster installs the CRD on a real apiserver.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import pytest

from society_operator.api.base import CEL_VALIDATIONS
from society_operator.api.crd import render_crd

from .test_crd import _nodes


def _schema() -> dict[str, Any]:
    return render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _defaults(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, node) for every node below `node` (itself included) that has a default."""
    return ((path, n) for path, n in _nodes(node) if "default" in n)


_CEL = celpy.Environment()


def _cel_errors(node: dict[str, Any], value: Any, path: str) -> list[str]:
    """The CEL rules of `node` and of the nodes below it that `value` breaks, as the apiserver
    runs them on a new object: every rule but the transition rules (they need oldSelf)."""
    errors = []
    for rule in node.get(CEL_VALIDATIONS, []):
        if "oldSelf" in rule["rule"]:
            continue
        try:
            result = _CEL.program(_CEL.compile(rule["rule"])).evaluate(
                {"self": celpy.json_to_cel(value)}
            )
        except Exception as error:  # an evaluation error refuses the default too
            result = error
        if isinstance(result, Exception):
            errors.append(f"{path}: {result} evaluating rule: {rule['rule']}")
        elif not result:
            errors.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for name, prop in node.get("properties", {}).items():
            if name in value:
                errors += _cel_errors(prop, value[name], f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            for key, item in value.items():
                errors += _cel_errors(node["additionalProperties"], item, f"{path}[{key}]")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            errors += _cel_errors(node["items"], item, f"{path}[{i}]")
    return errors


def default_errors(schema: dict[str, Any]) -> list[str]:
    """What the apiserver would say about the defaults in `schema` (empty: it accepts them)."""
    errors = []
    for path, node in _defaults(schema):
        value = node["default"]
        validator = jsonschema.Draft4Validator(node)
        errors += [
            f"{path}.default{''.join(f'.{p}' for p in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(value)
        ]
        errors += _cel_errors(node, value, f"{path}.default")
    return errors


def test_every_default_is_valid_against_its_schema_and_rules():
    assert default_errors(_schema()) == []


def test_required_fields_get_no_default():
    for path, node in _walk(_schema()):
        for name in node.get("required", []):
            assert "default" not in node["properties"][name], f"{path}.{name}"


def test_object_defaults_are_the_fully_defaulted_object():
    """What a manifest that leaves out `spec.inference` gets is what pydantic would fill in, so
    the stored object, kubectl get -o yaml and the operator agree."""
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["inference"]["default"] == {"gpus": 1, "tensorParallel": 1}
    assert spec["debate"]["default"]["rounds"] == 2
    assert spec["finetune"]["default"]["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "targetModules": "all-linear",
    }
    assert spec["storage"]["default"] == {"whenDeleted": "Retain"}
    for path, node in _walk(_schema()):
        if node.get("type") == "object" and "default" in node and "properties" in node:
            filled = {n: p["default"] for n, p in node["properties"].items() if "default" in p}
            assert node["default"] == filled, path


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")


# The defaults a real kube-apiserver v1.37.2 refused (issue 15): the checker must refuse them too.
REFUSED = [
    (
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        {},
        "'name' is a required property",
    ),
    (
        {
            "type": "object",
            "properties": {
                "gpus": {"type": "integer", "default": 1},
                "tensorParallel": {"type": "integer", "default": 1},
            },
            CEL_VALIDATIONS: [
                {
                    "rule": "self.gpus == 0 ? self.tensorParallel == 1 "
                    ": self.tensorParallel <= self.gpus",
                    "message": "tensorParallel must be at most gpus",
                }
            ],
        },
        {},
        "evaluating rule",
    ),
    (
        {
            "type": "object",
            "properties": {"gpus": {"type": "integer"}, "tensorParallel": {"type": "integer"}},
            CEL_VALIDATIONS: [
                {"rule": "self.tensorParallel <= self.gpus", "message": "at most gpus"}
            ],
        },
        {"gpus": 1, "tensorParallel": 2},
        "at most gpus",
    ),
]


@pytest.mark.parametrize(("node", "default", "said"), REFUSED, ids=["required", "key", "rule"])
def test_the_checker_refuses_what_the_apiserver_refused(node, default, said):
    schema = {"type": "object", "properties": {"field": {**node, "default": default}}}
    (error,) = default_errors(schema)
    assert error.startswith(".field.default") and said in error, error
