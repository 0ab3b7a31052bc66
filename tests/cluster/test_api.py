"""The Society API on a real kube-apiserver: the CRD installs, documents itself, prints its
columns, accepts every example, and refuses invalid manifests and immutable changes itself."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from ..conftest import EXAMPLES
from ..unit.test_validate_cli import _DELETE, BASE, INVALID, _set
from .conftest import create_namespace


@pytest.fixture(scope="module")
def namespace(kubectl, api):
    """One namespace for this module's tests (each uses Societies of its own names)."""
    name = create_namespace(kubectl, api, "api")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def society(namespace: str, name: str = "s", **spec) -> dict:
    manifest = copy.deepcopy(BASE)
    manifest["metadata"] = {"name": name, "namespace": namespace}
    manifest["spec"].update(spec)
    return manifest


def test_the_crd_installs_server_side_and_is_established(crd):
    assert crd["metadata"]["name"] == "societies.society.dev"
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["soc"]


def test_kubectl_explain_prints_the_descriptions(crd, kubectl):
    out = kubectl.run("explain", "society.spec.debate").stdout
    assert "Debate settings." in out
    assert "rounds\t<integer>" in out and "Rounds M." in out
    assert "summarize\t<boolean>" in out
    deep = kubectl.run("explain", "soc.spec.finetune.lora.r").stdout
    assert "Adapter rank" in deep


def test_kubectl_get_shows_the_printer_columns(crd, kubectl, namespace):
    kubectl.apply(society(namespace, "columns"))
    status = {"phase": "Training", "iteration": 1, "accuracy": 0.61}
    kubectl.run(
        *("patch", "soc", "columns", "-n", namespace, "--subresource=status"),
        *("--type=merge", "-p", json.dumps({"status": status})),
    )
    header, row = kubectl.run("get", "soc", "-n", namespace).stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "ITERATION", "ACCURACY", "DEGRADED", "AGE"]
    assert row.split()[:4] == ["columns", "Training", "1", "0.61"]
    wide = kubectl.run("get", "soc", "-n", namespace, "-o", "wide").stdout.splitlines()[0]
    assert wide.split() == [
        *("NAME", "PHASE", "ITERATION", "ACCURACY", "DEGRADED", "MODE", "AGENTS", "AGE")
    ]
    # Results that went missing stay said, where `kubectl get soc` shows them.
    degraded = {
        "type": "Degraded",
        "status": "True",
        "reason": "ResultsMissing",
        "message": "Job columns-debate-it0 succeeded but no pod of it reported a result",
        "lastTransitionTime": "2026-12-02T06:00:00Z",
    }
    kubectl.run(
        *("patch", "soc", "columns", "-n", namespace, "--subresource=status"),
        *("--type=merge", "-p", json.dumps({"status": {"conditions": [degraded]}})),
    )
    row = kubectl.run("get", "soc", "-n", namespace).stdout.splitlines()[1]
    assert row.split()[:5] == ["columns", "Training", "1", "0.61", "ResultsMissing"]


def test_the_apiserver_fills_in_the_defaults(crd, kubectl, namespace):
    kubectl.apply(society(namespace, "defaults"))
    spec = kubectl.json("get", "soc", "defaults", "-n", namespace)["spec"]
    assert (spec["agents"], spec["debate"]["rounds"], spec["finetune"]["method"]) == (3, 2, "lora")
    assert spec["inference"] == {"gpus": 1, "tensorParallel": 1}
    assert spec["finetune"]["lora"]["r"] == 16 and spec["storage"] == {"whenDeleted": "Retain"}
    assert spec["task"] == {
        **{"name": "gsm8k", "trainSize": 500, "evalSize": 500, "seed": 0},
        "prompts": {},
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_a_server_side_dry_run(crd, kubectl, namespace, example):
    for document in yaml.safe_load_all(example.read_text()):
        document["metadata"]["namespace"] = namespace
        out = kubectl.apply(document, "--dry-run=server").stdout
        assert "created (server dry run)" in out


@pytest.mark.parametrize(
    "field,value,path,words,schema_rejects",
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_the_apiserver_refuses_invalid_manifests_naming_the_field(
    crd, kubectl, namespace, field, value, path, words, schema_rejects
):
    manifest = society(namespace, "broken")
    _set(manifest, field, value)
    done = kubectl.apply(manifest, "--dry-run=server", check=False)
    assert done.returncode != 0, f"the apiserver accepted {field}={value!r}"
    said = done.stderr
    assert path in said, said
    if not schema_rejects and not path.startswith("metadata"):
        # A CEL rule's own message, or kubectl's strict field validation, reaches the user.
        assert words.split(":")[0].split(" (")[0] in said or "unknown field" in said, said


IMMUTABLE = [
    ("spec.model.name", "other/model"),
    ("spec.model.revision", "v2"),
    ("spec.task.seed", 7),
    ("spec.task.name", "math"),
    ("spec.agents", 4),
    ("spec.mode", "single-agent"),
    ("spec.finetune.method", "full"),
    ("spec.storage.storageClassName", "premium-rwx"),
    ("spec.storage.size", "10Gi"),
    ("spec.storage.claimName", "mine"),
]


@pytest.mark.parametrize("field,value", IMMUTABLE, ids=[f for f, _ in IMMUTABLE])
def test_immutable_fields_are_refused_on_update(crd, kubectl, namespace, field, value):
    name = "fixed-" + field.removeprefix("spec.").replace(".", "-").lower()
    kubectl.apply(society(namespace, name, storage={"size": "1Gi"}))
    changed = society(namespace, name, storage={"size": "1Gi"})
    if field == "spec.storage.claimName":  # a claim instead of size: unset one, set the other
        changed["spec"]["storage"] = {"claimName": value}
    else:
        _set(changed, field, value)
    done = kubectl.apply(changed, check=False)
    assert done.returncode != 0, f"{field} changed"
    assert "immutable" in done.stderr, done.stderr


def test_optional_immutable_fields_can_be_neither_set_nor_unset(crd, kubectl, namespace):
    kubectl.apply(society(namespace, "claim", storage={"claimName": "mine"}))
    dropped = society(namespace, "claim")
    done = kubectl.apply(dropped, check=False)
    assert done.returncode != 0 and "spec.storage.claimName is immutable" in done.stderr

    kubectl.apply(society(namespace, "noclaim"))
    added = society(namespace, "noclaim", storage={"claimName": "mine"})
    done = kubectl.apply(added, check=False)
    assert done.returncode != 0 and "spec.storage.claimName is immutable" in done.stderr


def test_mutable_fields_change_and_cross_field_rules_hold_on_update(crd, kubectl, namespace):
    kubectl.apply(society(namespace, "grow", finetune={"iterations": 2}))
    kubectl.apply(society(namespace, "grow", finetune={"iterations": 5}, suspend=True))
    spec = kubectl.json("get", "soc", "grow", "-n", namespace)["spec"]
    assert spec["finetune"]["iterations"] == 5 and spec["suspend"] is True

    broken = society(namespace, "grow", inference={"gpus": 1, "tensorParallel": 2})
    done = kubectl.apply(broken, check=False)
    assert done.returncode != 0 and "tensorParallel must be at most gpus" in done.stderr


def test_a_missing_required_field_is_named(crd, kubectl, namespace):
    manifest = society(namespace, "nomodel")
    _set(manifest, "spec.model", _DELETE)
    done = kubectl.apply(manifest, "--dry-run=server", check=False)
    assert done.returncode != 0 and "spec.model: Required value" in done.stderr
