"""What reaches a command line, the file system or str.format from a Society: prompt overrides
the trainer would trip on, option-like names and `..` paths are refused up front, and
spec.task.source is resolved as docs/api.md says (a path is a path on the artifact volume)."""

from __future__ import annotations

import json
import string

import pytest
from pydantic import ValidationError

from society_operator.api import Society
from society_operator.api.spec import PROMPT_PLACEHOLDERS, PromptTemplates
from society_operator.build.server import openai_backend
from society_operator.build.steps import debate_config, layout
from society_operator.settings import Settings
from society_trainer.tasks import get_task
from society_trainer.tasks.base import PLACEHOLDERS
from society_trainer.tasks.base import PromptTemplates as TrainerPrompts


def test_the_placeholders_are_the_trainers():
    assert {
        role: (frozenset(required), frozenset(allowed))
        for role, (required, allowed) in PROMPT_PLACEHOLDERS.items()
    } == PLACEHOLDERS


TEMPLATES = [
    "{question}",
    "Q: {question}\n\nA:",
    "{{question}}",
    "{{{question}}}",
    "{{ {question} }}",
    "{question} }",
    "{ {question}",
    "{question.upper}",
    "{question[0]}",
    "{question!r}",
    "{question:>40}",
    "{question:d}",
    "{question:{width}}",
    "{0}",
    "{}",
    "{answer} {question}",
    "{question}{own_answer}",
    "plain",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_an_accepted_generation_prompt_is_one_the_trainer_accepts_and_formats(template):
    try:
        PromptTemplates(generation=template)
    except ValidationError:
        return  # refused up front: the trainer need not see it
    defaults = get_task("gsm8k").prompts
    TrainerPrompts(generation=template, critic=defaults.critic, summarizer=defaults.summarizer)
    assert "What is 2+2?" in template.format(question="What is 2+2?")


@pytest.mark.parametrize("template", TEMPLATES)
def test_what_the_trainer_would_fail_on_is_refused(template):
    defaults = get_task("gsm8k").prompts
    try:
        TrainerPrompts(generation=template, critic=defaults.critic, summarizer=defaults.summarizer)
        template.format(question="q")
        trainer_ok = True
    except (ValueError, KeyError, IndexError, AttributeError):
        trainer_ok = False
    if not trainer_ok:
        with pytest.raises(ValidationError):
            PromptTemplates(generation=template)


def test_every_field_of_a_template_is_a_plain_name_in_what_is_accepted():
    for template in TEMPLATES:
        try:
            PromptTemplates(generation=template)
        except ValidationError:
            continue
        for _, name, spec, conversion in string.Formatter().parse(template):
            assert name in (None, "question") and not spec and conversion is None, template


def society(**spec) -> Society:
    manifest = {
        "apiVersion": "society.dev/v1alpha1",
        "kind": "Society",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
        "spec": {"model": {"name": "owner/model"}, "task": {"name": "gsm8k"}, **spec},
    }
    return Society.model_validate(json.loads(json.dumps(manifest)))


@pytest.mark.parametrize(
    "source,seen",
    [
        ("/datasets/q.jsonl", "/artifacts/datasets/q.jsonl"),
        ("/q", "/artifacts/q"),
        ("openai/gsm8k", "openai/gsm8k"),
        ("cais/mmlu:all", "cais/mmlu:all"),
        (None, None),
    ],
)
def test_a_source_path_is_on_the_artifact_volume(source, seen):
    task = {"name": "custom" if source else "gsm8k", **({"source": source} if source else {})}
    s = society(task=task)
    paths = layout(s, Settings())
    assert debate_config(s, 0, paths, openai_backend(s, 0)).task.source == seen


def test_society_run_reads_a_source_path_under_its_artifacts_directory(tmp_path):
    (tmp_path / "datasets").mkdir()
    lines = [json.dumps({"question": f"{n} + 1?", "answer": str(n + 1)}) for n in range(20)]
    (tmp_path / "datasets" / "q.jsonl").write_text("\n".join(lines) + "\n")
    s = society(task={"name": "custom", "source": "/datasets/q.jsonl"})
    # What `society run --artifacts DIR` configures: DIR is the artifact volume.
    paths = layout(s, Settings(artifacts_mount=str(tmp_path)))
    task = debate_config(s, 0, paths, openai_backend(s, 0)).task
    assert task.source == str(tmp_path / "datasets" / "q.jsonl")
    problems = get_task("custom").load("eval", 5, 0, task.source)
    assert len(problems) == 5


@pytest.mark.parametrize(
    "field,value",
    [
        ("model.name", "-x"),
        ("model.name", "--trust-remote-code"),
        ("model.name", "/models/../../etc"),
        ("model.name", ".."),
        ("model.name", "owner/.."),
        ("model.name", "owner/model\n"),
        ("model.revision", "--help"),
        ("model.revision", "a..b"),
        ("model.revision", "main\n"),
        ("task.source", "-x"),
        ("task.source", "/data/../../x.jsonl"),
        ("task.source", "data/x.jsonl"),
        ("task.source", "owner/../x"),
    ],
)
def test_option_like_and_dot_dot_values_are_refused(field, value):
    part, name = field.split(".")
    spec = {"model": {"name": "owner/model"}, "task": {"name": "custom", "source": "/q.jsonl"}}
    spec[part][name] = value
    with pytest.raises(ValidationError) as error:
        society(**spec)
    assert f"spec.{field}" in ".".join(map(str, error.value.errors()[0]["loc"])) or name in str(
        error.value
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("model.name", "microsoft/Phi-3-mini-4k-instruct"),
        ("model.name", "gpt2"),
        ("model.name", "/models/phi3"),
        ("model.name", "builtin:tiny-arithmetic"),
        ("model.revision", "v1.0"),
        ("model.revision", "refs/pr/1"),
        ("model.revision", "0123abcd"),
        ("task.source", "/datasets/q.jsonl"),
        ("task.source", "openai/gsm8k"),
        ("task.source", "cais/mmlu:all"),
    ],
)
def test_ordinary_names_pass(field, value):
    part, name = field.split(".")
    spec = {"model": {"name": "owner/model"}, "task": {"name": "custom", "source": "/q.jsonl"}}
    spec[part][name] = value
    society(**spec)
