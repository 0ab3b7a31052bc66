"""`society validate`: every example passes; every invalid manifest fails with a line that names
the file, the Society, the offending field and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from society_operator.api.crd import openapi_schema
from society_operator.cli import main

from ..conftest import EXAMPLES


def run_validate(*files: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["validate", *files])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


def write(tmp_path, text: str, name: str = "society.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_example_is_valid():
    code, lines = run_validate(*map(str, EXAMPLES))
    assert code == 0, lines
    assert len(lines) == len(EXAMPLES) and all(line.endswith(": valid") for line in lines)


BASE = {
    "apiVersion": "society.dev/v1alpha1",
    "kind": "Society",
    "metadata": {"name": "broken"},
    "spec": {"model": {"name": "m"}, "task": {"name": "gsm8k"}},
}


def _set(obj: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    if value is _DELETE:
        del obj[last]
    else:
        obj[last] = value


_DELETE = object()

# (id, field to set, value, field path the message must name, words it must contain,
#  whether the CRD's openAPI schema alone rejects it; False means a CEL rule or the
#  apiserver's strict field validation does)
INVALID = [
    (
        "rounds-zero",
        "spec.debate.rounds",
        0,
        "spec.debate.rounds",
        "greater than or equal to 1",
        True,
    ),
    ("rounds-string", "spec.debate.rounds", "two", "spec.debate.rounds", "valid integer", True),
    ("agents-too-many", "spec.agents", 17, "spec.agents", "less than or equal to 16", True),
    ("agents-zero", "spec.agents", 0, "spec.agents", "greater than or equal to 1", True),
    (
        "iterations-zero",
        "spec.finetune.iterations",
        0,
        "spec.finetune.iterations",
        "greater than or equal to 1",
        True,
    ),
    (
        "lr-zero",
        "spec.finetune.generation.learningRate",
        0,
        "spec.finetune.generation.learningRate",
        "greater than 0",
        True,
    ),
    (
        "lr-negative",
        "spec.finetune.critic.learningRate",
        -1e-5,
        "spec.finetune.critic.learningRate",
        "greater than 0",
        True,
    ),
    (
        "mix-weight",
        "spec.finetune.criticMixWeight",
        1.5,
        "spec.finetune.criticMixWeight",
        "less than or equal to 1",
        True,
    ),
    (
        "temperature",
        "spec.debate.temperature",
        -0.1,
        "spec.debate.temperature",
        "greater than or equal to 0",
        True,
    ),
    ("top-p-zero", "spec.debate.topP", 0, "spec.debate.topP", "greater than 0", True),
    ("top-p-high", "spec.debate.topP", 1.2, "spec.debate.topP", "less than or equal to 1", True),
    (
        "gpus-negative",
        "spec.training.gpus",
        -1,
        "spec.training.gpus",
        "greater than or equal to 0",
        True,
    ),
    (
        "bad-method",
        "spec.finetune.method",
        "qlora",
        "spec.finetune.method",
        "'lora' or 'full'",
        True,
    ),
    ("bad-mode", "spec.mode", "solo", "spec.mode", "'multiagent', 'single-agent' or 'star'", True),
    ("bad-task", "spec.task.name", "gsm9k", "spec.task.name", "'arithmetic', 'gsm8k'", True),
    ("bad-dtype", "spec.model.dtype", "fp8", "spec.model.dtype", "'bfloat16'", True),
    ("bad-rank", "spec.finetune.lora.r", 12, "spec.finetune.lora.r", "16, 32", True),
    (
        "bad-effect",
        "spec.inference.tolerations",
        [{"key": "k", "effect": "Never"}],
        "spec.inference.tolerations[0].effect",
        "'NoSchedule'",
        True,
    ),
    (
        "bad-quantity",
        "spec.training.resources",
        {"requests": {"memory": "12XB"}},
        "spec.training.resources.requests.memory",
        "Kubernetes quantity",
        True,
    ),
    ("bad-queue", "spec.queueName", "GPU_Queue", "spec.queueName", "match pattern", True),
    ("missing-model", "spec.model", _DELETE, "spec.model", "required field is missing", True),
    (
        "missing-task-name",
        "spec.task",
        {"seed": 1},
        "spec.task.name",
        "required field is missing",
        True,
    ),
    ("missing-spec", "spec", _DELETE, "spec", "required field is missing", True),
    ("unknown-top", "spec.agent", 3, "spec.agent", "did you mean agents?", False),
    ("unknown-nested", "spec.debate.round", 3, "spec.debate.round", "did you mean rounds?", False),
    (
        "unknown-deep",
        "spec.finetune.lora.rank",
        8,
        "spec.finetune.lora.rank",
        "allowed fields: r, alpha, dropout, targetModules",
        False,
    ),
    (
        "unknown-in-list",
        "spec.inference.tolerations",
        [{"key": "k", "efect": "NoSchedule"}],
        "spec.inference.tolerations[0].efect",
        "did you mean effect?",
        False,
    ),
    (
        "custom-no-source",
        "spec.task",
        {"name": "custom"},
        "spec.task.source",
        "source is required when name is custom",
        False,
    ),
    (
        "arithmetic-source",
        "spec.task",
        {"name": "arithmetic", "source": "x.jsonl"},
        "spec.task.source",
        "not allowed when name is arithmetic",
        False,
    ),
    (
        "tp-above-gpus",
        "spec.inference",
        {"gpus": 2, "tensorParallel": 4},
        "spec.inference.tensorParallel",
        "at most gpus",
        False,
    ),
    (
        "gpu-in-resources",
        "spec.training.resources",
        {"limits": {"nvidia.com/gpu": 8}},
        "spec.training.resources",
        "use the gpus field",
        False,
    ),
    (
        "claim-and-size",
        "spec.storage",
        {"claimName": "c", "size": "10Gi"},
        "spec.storage.claimName",
        "must be unset",
        False,
    ),
    (
        "prompt-placeholder",
        "spec.task.prompts",
        {"critic": "Try again."},
        "spec.task.prompts.critic",
        "must contain {others}",
        False,
    ),
    (
        "prompt-attribute",
        "spec.task.prompts",
        {"generation": "{question.upper} {question}"},
        "spec.task.prompts.generation",
        "may use only {question}, each written as is",
        False,
    ),
    (
        "prompt-unknown-name",
        "spec.task.prompts",
        {"critic": "{others} and {answer}"},
        "spec.task.prompts.critic",
        "may use only {question}, {own_answer}, {others}",
        False,
    ),
    (
        "prompt-index-and-format-spec",
        "spec.task.prompts",
        {"summarizer": "{responses[0]} {responses:.100}"},
        "spec.task.prompts.summarizer",
        "may use only {question}, {responses}",
        False,
    ),
    (
        "prompt-placeholder-escaped",
        "spec.task.prompts",
        {"generation": "{{question}}"},
        "spec.task.prompts.generation",
        "must contain {question}",
        False,
    ),
    ("model-option", "spec.model.name", "--trust-remote-code", "spec.model.name", "model id", True),
    ("model-dot-dot", "spec.model.name", "/models/../../etc", "spec.model.name", "'..'", False),
    ("model-hub-dot-dot", "spec.model.name", "../model", "spec.model.name", "model id", True),
    ("revision-option", "spec.model.revision", "-x", "spec.model.revision", "not starting", True),
    ("revision-dot-dot", "spec.model.revision", "v1..v2", "spec.model.revision", "'..'", True),
    (
        "source-option",
        "spec.task",
        {"name": "custom", "source": "--help"},
        "spec.task.source",
        "dataset id",
        True,
    ),
    (
        "source-dot-dot",
        "spec.task",
        {"name": "custom", "source": "/datasets/../../etc/x.jsonl"},
        "spec.task.source",
        "'..'",
        False,
    ),
    (
        "source-relative-file",
        "spec.task",
        {"name": "custom", "source": "datasets/x.jsonl"},
        "spec.task.source",
        "is absolute",
        False,
    ),
    (
        "token-key-dot-dot",
        "spec.model.hfTokenSecretRef",
        {"name": "hf", "key": ".."},
        "spec.model.hfTokenSecretRef.key",
        "pattern",
        True,
    ),
    ("bad-name", "metadata.name", "Phi3.GSM8K", "", "metadata.name must be at most 40", False),
]


@pytest.mark.parametrize(
    "field,value,path,words,schema_rejects",
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_manifest_names_the_field(tmp_path, field, value, path, words, schema_rejects):
    manifest = copy.deepcopy(BASE)
    _set(manifest, field, value)
    code, lines = run_validate(write(tmp_path, yaml.safe_dump(manifest)))
    assert code == 1
    label = manifest["metadata"]["name"]
    expected_prefix = f"{tmp_path}/society.yaml: {label}: {path + ': ' if path else ''}"
    assert any(line.startswith(expected_prefix) and words in line for line in lines), lines

    if schema_rejects:  # the apiserver would refuse it at apply time, from the schema alone
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft4Validator(openapi_schema()).validate(manifest)


def test_there_are_at_least_twenty_invalid_cases():
    assert len(INVALID) >= 20


def test_every_problem_of_a_document_is_reported(tmp_path):
    manifest = copy.deepcopy(BASE)
    manifest["spec"].update({"agents": 0, "debate": {"rounds": 0}, "extra": 1})
    code, lines = run_validate(write(tmp_path, yaml.safe_dump(manifest)))
    assert code == 1 and len(lines) == 3
    assert [line.split(": ")[2] for line in lines] == [
        "spec.agents",
        "spec.debate.rounds",
        "spec.extra",
    ]


def test_multi_document_files_report_each_document(tmp_path):
    good = yaml.safe_dump(BASE)
    nameless = copy.deepcopy(BASE)
    del nameless["metadata"]
    nameless["spec"]["agents"] = "three"
    text = good + "---\n" + yaml.safe_dump(nameless) + "---\n" + good.replace("broken", "fine")
    code, lines = run_validate(write(tmp_path, text))
    assert code == 1
    assert lines[0].endswith("broken: valid") and lines[-1].endswith("fine: valid")
    assert f"{tmp_path}/society.yaml: document 2: spec.agents: " in lines[1]


@pytest.mark.parametrize(
    "text,words",
    [
        ("spec: [1, 2\n", "not valid YAML at line 2"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("", "holds no YAML document"),
        ("- just\n- a list\n", "document 1: not a Kubernetes object"),
        ("apiVersion: apps/v1\nkind: Deployment\n", "document 1: kind: expected Society"),
        (
            "apiVersion: society.dev/v1\nkind: Society\n",
            "apiVersion: expected society.dev/v1alpha1, got 'society.dev/v1'",
        ),
    ],
    ids=["broken", "duplicate-key", "empty", "list", "not-a-society", "wrong-version"],
)
def test_unreadable_documents_get_one_line(tmp_path, text, words):
    code, lines = run_validate(write(tmp_path, text))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path}/society.yaml: ") and words in lines[0]


def test_binary_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\xff\xfe\x00\x01")
    code, lines = run_validate(str(path))
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"{path}: cannot read: ")


def test_missing_file(tmp_path):
    code, lines = run_validate(str(tmp_path / "nope.yaml"))
    assert code == 1 and lines == [f"{tmp_path}/nope.yaml: cannot read: No such file or directory"]


def _alias_bomb() -> str:
    """Nine levels of nine aliases: 9**9 values once expanded, a few lines as text."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):
        prev = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([prev] * 9)}]")
    return "\n".join(lines) + "\n"


SOCIETY_HEAD = "apiVersion: society.dev/v1alpha1\nkind: Society\n"
SPEC = "spec: {model: {name: m}, task: {name: arithmetic}}\n"


@pytest.mark.parametrize(
    "text,words",
    [
        (_alias_bomb(), "expands to more than 20000 values"),
        (
            SOCIETY_HEAD
            + "metadata: {name: x}\nspec: {model: {name: m}, agents: "
            + "[" * 3000
            + "]" * 3000
            + "}\n",
            "nested deeper than 50 levels",
        ),
        (
            SOCIETY_HEAD + "metadata: {name: x}\nspec: {model: {name: m}, ? [a, b] : 1}\n",
            "a key must be a plain value, not a list or mapping",
        ),
        (SOCIETY_HEAD + "metadata: {}\n" + SPEC, "document 1: metadata.name must be"),
        (SOCIETY_HEAD + 'metadata: {name: "x\\n"}\n' + SPEC, "'x\\n': metadata.name must be"),
        (
            SOCIETY_HEAD
            + "metadata: {name: x}\nspec: {model: {name: m}, task: {name: arithmetic}, "
            + 'inference: {resources: {requests: {cpu: "8\\n"}}}}\n',
            "spec.inference.resources.requests.cpu: must be a Kubernetes quantity",
        ),
    ],
    ids=["alias-bomb", "deep-nesting", "unhashable-key", "no-name", "name-newline", "qty-newline"],
)
def test_hostile_input_gets_one_line_and_no_traceback(tmp_path, text, words):
    """Hostile or odd manifests are bounded and refused in one line naming the file, as the
    apiserver would refuse them (its regexes do not let `$` match before a final newline)."""
    code, lines = run_validate(write(tmp_path, text))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path}/society.yaml: ") and words in lines[0], lines
