"""What the debate, the data builder and the evaluator need from a task, whatever the benchmark."""

from __future__ import annotations

import hashlib
import string
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

SPLITS = ("train", "eval")

# Per template: (placeholders it must use, placeholders it may use). A critic continues its own
# conversation, so its earlier answer is already in context; {own_answer} is there for templates
# that want to quote it anyway. The summariser and critic need the others' answers, or they are
# not debating.
PLACEHOLDERS = {
    "generation": (frozenset({"question"}), frozenset({"question"})),
    "critic": (frozenset({"others"}), frozenset({"question", "own_answer", "others"})),
    "summarizer": (frozenset({"responses"}), frozenset({"question", "responses"})),
}


class DatasetError(Exception):
    """A task's problems cannot be loaded as asked.

    The message is written for the person who wrote the Society spec (it ends up in a Job's
    termination message and the Society's Failed condition), so it names the file and line.
    """


@dataclass(frozen=True)
class Problem:
    """One question and its reference answer, already in the form the task grades against.

    The id depends only on the task, the split and the question text, so transcripts written by
    an interrupted debate can be matched to problems again after a restart.
    """

    id: str
    question: str
    answer: str


def problem_id(task: str, split: str, question: str) -> str:
    digest = hashlib.sha256(question.encode("utf-8")).hexdigest()[:12]
    return f"{task}-{split}-{digest}"


def check_request(split: str, size: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")


@dataclass(frozen=True)
class PromptTemplates:
    """`str.format` templates for the three calls of a debate.

    Checked when built, so that a template overridden in a Society spec is rejected when the spec
    is applied rather than with a KeyError in the middle of a debate.
    """

    generation: str
    critic: str
    summarizer: str

    def __post_init__(self) -> None:
        for role, (required, allowed) in PLACEHOLDERS.items():
            template = getattr(self, role)
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            except ValueError as err:
                raise ValueError(f"{role} prompt is not a valid format string: {err}") from err
            if not required <= fields <= allowed:
                raise ValueError(
                    f"{role} prompt must use {_braced(required)} and may also use "
                    f"{_braced(allowed - required) or 'nothing else'}; it uses "
                    f"{_braced(fields) or 'none'}"
                )


def _braced(names: Iterable[str]) -> str:
    return ", ".join("{" + name + "}" for name in sorted(set(names)))


def debate_prompts(answer_format: str) -> PromptTemplates:
    """Our wording of the paper's three prompts.

    Only the answer-format sentence differs between tasks: it is the contract with the task's
    parser, so every call (including the critic's update) repeats it. The critic prompt
    restates the question: a long first answer pushes it far back in the critic's context.
    """
    fmt = answer_format.replace("{", "{{").replace("}", "}}")
    return PromptTemplates(
        generation=f"{{question}}\n\nSolve the problem step by step. {fmt}",
        critic=(
            "The problem again:\n{question}\n\n"
            "Other agents' solutions to it (or a summary of them):\n{others}\n\n"
            "Use the other agents' reasoning as additional advice. Check your solution and "
            f"theirs step by step, then give your updated answer. {fmt}"
        ),
        summarizer=(
            "Several agents solved this problem:\n{question}\n\n"
            "Their solutions:\n{responses}\n\n"
            "Summarise these agents' answers and their reasoning: which final answers they "
            "reached, the key steps behind each, and where they agree or disagree. Do not add "
            "a solution of your own."
        ),
    )


def others_text(responses: Sequence[str]) -> str:
    """The other agents' answers, verbatim, as the critic prompt's {others} (and the
    summariser's {responses}). Here, beside the templates, because the debate and the builtin
    model's recipe must fill them identically: the recipe teaches the debate's own prompts."""
    return "\n\n".join(f"Agent {i}:\n{text.strip()}" for i, text in enumerate(responses, 1))


class Task(ABC):
    """A benchmark as the debate sees it: how to ask, how to read an answer, how to grade it."""

    name: ClassVar[str]
    prompts: ClassVar[PromptTemplates]

    @abstractmethod
    def parse(self, text: str) -> str | None:
        """The answer a response commits to, in canonical form; None if it commits to none."""

    @abstractmethod
    def answers_equal(self, a: str, b: str) -> bool:
        """Whether two answers are the same answer.

        Majority voting between agents and grading against the reference use this one relation,
        so that the debate's pseudo-label and the reported accuracy agree on what "same" means.
        """

    def is_correct(self, pred: str | None, ref: str) -> bool:
        """An unparseable response is wrong.

        The authors' public code counted it as correct, which inflates accuracy exactly when a
        model degrades; that defect is deliberately not reproduced.
        """
        return pred is not None and self.answers_equal(pred, ref)

    @abstractmethod
    def load(self, split: str, size: int, seed: int, source: str | None = None) -> list[Problem]:
        """A deterministic sample of `size` problems; train and eval never share a question."""
