"""MMLU: four-choice questions across 57 subjects; the answer is a letter.

Default source: cais/mmlu, config "all". Its validation split (1,531 questions) is the train
split here and its test split the eval split; "auxiliary_train" is not MMLU's own questions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import debate_prompts
from .latex import last_boxed, unwrap_text
from .loading import DatasetTask, text_field

LETTERS = ("A", "B", "C", "D")

# Ordered by how deliberately a response commits to a letter: the last match of the first pattern
# that matches wins, so a closing "The answer is (B)" beats choices discussed along the way.
_STATED = re.compile(
    r"\b(?i:answer|choice|option)\s*(?:(?i:is|would\s+be|should\s+be)\s*:?|:)"
    r"\s*(?i:option|choice)?[(\[*\s]*([A-D])(?![A-Za-z0-9])"
)
# "A" is also a word: after "The answer is" or "Answer:", "A" followed by a lower-case word
# that does not go on about a choice is the article ("Answer: A careful reading gives (C)").
_ARTICLE_USE = re.compile(
    r"\s+(?!(?:is|was|would|should|seems|looks|fits|matches|best|because|since|as|so|and|or|"
    r"but|which|for|in|on|at|to|here|there|not|instead|only)\b)[a-z]"
)
_BOLD = re.compile(r"\*\*\s*\(?([A-D])(?:\)|\*\*|[.:])")
_AT_END = re.compile(r"(?<![A-Za-z])\(?([A-D])\)?[.!]?\s*$")


class MmluTask(DatasetTask):
    name = "mmlu"
    prompts = debate_prompts(
        'End your response with "The answer is (X)", where X is the letter (A, B, C or D) of '
        "the correct choice."
    )
    default_source = "cais/mmlu"
    default_config = "all"
    hub_splits = ("validation", "test")

    def parse(self, text: str) -> str | None:
        boxed = last_boxed(text)
        if boxed is not None:
            letter = re.match(r"\W*([A-D])(?![A-Za-z0-9])", unwrap_text(boxed))
            if letter:
                return letter.group(1)
        stated = [m.group(1) for m in _STATED.finditer(text) if not _is_article(text, m)]
        if stated:
            return stated[-1]
        for pattern in (_BOLD, _AT_END):
            matches = pattern.findall(text)
            if matches:
                return matches[-1]
        return None

    def answers_equal(self, a: str, b: str) -> bool:
        return a.strip().upper() == b.strip().upper()

    def convert(self, record: Mapping[str, Any]) -> tuple[str, str]:
        """The choices go into the question text, lettered, because the prompt has one slot."""
        question = text_field(record, "question")
        choices = record.get("choices")
        if (
            not isinstance(choices, list)
            or len(choices) != len(LETTERS)
            or not all(isinstance(choice, str) for choice in choices)
        ):
            raise ValueError(f"field 'choices' must be a list of {len(LETTERS)} strings")
        lines = [f"{letter}) {choice}" for letter, choice in zip(LETTERS, choices, strict=True)]
        return question.strip() + "\n\n" + "\n".join(lines), _answer_letter(record)


def _is_article(text: str, match: re.Match[str]) -> bool:
    """Whether a stated "A" is the article: bare (not "(A)" or "**A"), before a word that does
    not go on about a choice."""
    if match.group(1) != "A" or text[match.start(1) - 1] in "([*":
        return False
    return _ARTICLE_USE.match(text, match.end(1)) is not None


def _answer_letter(record: Mapping[str, Any]) -> str:
    """cais/mmlu stores the answer as an index 0-3; hand-written files may use the letter."""
    if "answer" not in record:
        raise ValueError("missing field 'answer'")
    answer = record["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(LETTERS):
        return LETTERS[answer]
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
        return answer.strip().upper()
    raise ValueError(f"field 'answer' must be an index 0-3 or a letter A-D, not {answer!r}")
