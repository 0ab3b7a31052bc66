"""The generated CRD: in sync with the models, structural, documented, and enforcing the same
cross-field rules as the Python validators."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from society_operator.api import ApiModel, Society
from society_operator.api.base import CEL_VALIDATIONS
from society_operator.api.crd import render_crd, render_crd_yaml

from ..conftest import EXAMPLES, ROOT

# The keywords a structural schema may use (apiextensions.k8s.io/v1 JSONSchemaProps).
ALLOWED_KEYS = {
    "type",
    "description",
    "default",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
    "anyOf",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
}


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_is_what_the_models_render():
    committed = (ROOT / "crds" / "society.yaml").read_text()
    assert committed == render_crd_yaml(), "crds/society.yaml is stale: run `make crd`"


def test_crd_names_and_subresources():
    crd = render_crd()
    assert crd["metadata"]["name"] == "societies.society.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "Society",
        "societies",
        ["soc"],
    )
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Phase", "Iteration", "Accuracy", "Degraded", "Age"]


def test_schema_is_structural(schema):
    for path, node in _nodes(schema):
        assert set(node) <= ALLOWED_KEYS, f"{path}: keys {set(node) - ALLOWED_KEYS}"
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert "type" in node, f"{path} has no type"
            assert "anyOf" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_every_field_is_described_for_kubectl_explain(schema):
    for part in ("spec", "status"):
        for path, node in _nodes(schema["properties"][part], part):
            # Values of maps and items of scalar lists are described by their field.
            scalar_member = path.endswith(("{}", "[]")) and node.get("type") != "object"
            if not scalar_member:
                assert node.get("description"), f"{path} has no description"


def test_only_model_and_task_names_are_required(schema):
    required = sorted(
        f"{path}.{name}"
        for path, node in _nodes(schema["properties"]["spec"], "spec")
        for name in node.get("required", [])
    )
    # model and task with their names; and a Secret reference, when given, needs a Secret name.
    assert required == [
        "spec.model",
        "spec.model.hfTokenSecretRef.name",
        "spec.model.name",
        "spec.task",
        "spec.task.name",
    ]
    assert schema["required"] == ["spec"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(schema, example):
    for document in yaml.safe_load_all(example.read_text()):
        jsonschema.Draft4Validator(schema).validate(document)


def test_design_md_example_is_a_valid_society(schema):
    """The example manifest of the agreed design fixes the field names: it must stay valid."""
    manifest = yaml.safe_load((Path(__file__).parent / "design-example.yaml").read_text())
    Society.model_validate(manifest)
    jsonschema.Draft4Validator(schema).validate(manifest)


# --- cross-field rules: the CEL the apiserver runs must say what the Python check says ---


def _rule_classes() -> list[type[ApiModel]]:
    found, todo = [], [ApiModel]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "rules" in cls.__dict__ and cls.rules:
            found.append(cls)
    return found


# Objects for each class with rules, chosen so that every rule both passes and fails at least once.
RULE_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "Toleration": [
        {"operator": "Exists"},
        {"operator": "Exists", "value": "x"},
        {"key": "k", "value": "x"},
    ],
    "ResourceRequirements": [
        {},
        {"requests": {"cpu": 1}},
        {"limits": {"nvidia.com/gpu": 1}},
        {"requests": {"nvidia.com/gpu": 2}, "limits": {"memory": "1Gi"}},
    ],
    "ModelSpec": [
        {"name": "owner/model"},
        {"name": "/models/m"},
        {"name": "/models/../../etc"},
        {"name": "/.."},
    ],
    "TaskSpec": [
        {"name": "custom", "source": "/data/x.jsonl"},
        {"name": "custom", "source": "/data/../x.jsonl"},
        {"name": "custom", "source": "data/x.jsonl"},
        {"name": "custom", "source": "owner/questions"},
        {"name": "custom"},
        {"name": "arithmetic"},
        {"name": "arithmetic", "source": "x"},
        {"name": "arithmetic", "maxValue": 9},
        {"name": "gsm8k"},
        {"name": "gsm8k", "maxValue": 9},
        {"name": "math", "levels": [1, 2, 3]},
        {"name": "gsm8k", "levels": [1]},
    ],
    "InferenceSpec": [
        {"gpus": 0},
        {"gpus": 0, "tensorParallel": 2},
        {"gpus": 4, "tensorParallel": 4},
        {"gpus": 2, "tensorParallel": 4},
    ],
    "StorageSpec": [
        {},
        {"claimName": "c"},
        {"claimName": "c", "size": "1Gi"},
        {"claimName": "c", "storageClassName": "s"},
        {"size": "1Gi", "storageClassName": "s"},
    ],
    "PromptTemplates": [
        {},
        {"generation": "Solve {question}", "critic": "Others: {others}"},
        {"generation": "Solve it"},
        {"critic": "{question} {own_answer}"},
        {"summarizer": "Summarise {responses}"},
        {"summarizer": "Summarise"},
        {"generation": "{{question}}"},
        {"generation": "{question.real} {question}"},
        {"critic": "{others[0]}"},
        {"critic": "{{{others}}} {own_answer!r}"},
        {"summarizer": "{responses:>9}"},
        {"summarizer": "{{ {responses} }}"},
    ],
    "Society": [
        {"metadata": {"name": "ok"}, "spec": {"model": {"name": "m"}, "task": {"name": "math"}}},
        {
            "metadata": {"name": "Not.Ok"},
            "spec": {"model": {"name": "m"}, "task": {"name": "math"}},
        },
        {
            "metadata": {"name": "x" * 41},
            "spec": {"model": {"name": "m"}, "task": {"name": "math"}},
        },
    ],
}


def test_every_class_with_rules_has_samples():
    assert {cls.__name__ for cls in _rule_classes()} == set(RULE_SAMPLES)


@pytest.mark.parametrize("cls", _rule_classes(), ids=lambda c: c.__name__)
def test_cel_rules_agree_with_python_checks(cls):
    # Validate without this class's own rules, so we get a defaulted instance to test them on.
    unruled = type(f"Unruled{cls.__name__}", (cls,), {"rules": ()})
    env = celpy.Environment()
    for rule in cls.rules:
        program = env.program(env.compile(rule.cel))
        outcomes = set()
        for sample in RULE_SAMPLES[cls.__name__]:
            instance = unruled.model_validate(copy.deepcopy(sample))
            # What the apiserver sees: the object with its defaults filled in.
            seen = instance.model_dump(mode="json", exclude_none=True)
            by_cel = bool(program.evaluate({"self": celpy.json_to_cel(seen)}))
            by_python = rule.check(instance)
            assert by_cel == by_python, (
                f"{rule.cel!r} on {sample}: CEL {by_cel}, Python {by_python}"
            )
            outcomes.add(by_python)
        assert outcomes == {True, False}, f"samples never exercise both outcomes of {rule.cel!r}"


def test_rules_and_immutability_reach_the_crd(schema):
    spec = schema["properties"]["spec"]["properties"]
    immutable = {
        path
        for path, node in _nodes(schema["properties"]["spec"], "spec")
        if {"rule": "self == oldSelf"}
        in [{"rule": r["rule"]} for r in node.get(CEL_VALIDATIONS, [])]
    }
    assert {
        "spec.model.name",
        "spec.task",
        "spec.agents",
        "spec.mode",
        "spec.finetune.method",
        "spec.storage.claimName",
    } <= immutable
    assert "spec.finetune.iterations" not in immutable  # raising it extends a run
    assert any("claimName" in r["rule"] for r in spec["storage"][CEL_VALIDATIONS])
    assert schema[CEL_VALIDATIONS][0]["rule"].startswith("size(self.metadata.name) <= 40")
