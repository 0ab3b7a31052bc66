r"""MATH (Hendrycks et al.): competition problems whose solutions end in a \boxed{} answer.

Default source: DigitalLearningGmbH/MATH-lighteval, a mirror of the original release with all
seven subjects in one config (7,500 train, 5,000 test; columns problem, level, type, solution).
EleutherAI/hendrycks_math holds the same data but one config per subject, so it would need seven
loads; pass "EleutherAI/hendrycks_math:algebra" to use one subject from it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from .base import Problem, debate_prompts
from .latex import last_boxed, normalize
from .loading import DatasetTask, text_field


class MathTask(DatasetTask):
    name = "math"
    prompts = debate_prompts("Give your final answer in the form \\boxed{answer}.")
    default_source = "DigitalLearningGmbH/MATH-lighteval"
    default_config = "default"

    def __init__(self, levels: Collection[int] | None = None) -> None:
        self.levels = None if levels is None else frozenset(levels)

    def parse(self, text: str) -> str | None:
        boxed = last_boxed(text)
        if boxed is None:
            return None
        return normalize(boxed) or None

    def answers_equal(self, a: str, b: str) -> bool:
        x, y = normalize(a), normalize(b)
        return x == y or _scalars_equal(x, y) or _tuples_equal(x, y)

    def convert(self, record: Mapping[str, Any]) -> tuple[str, str]:
        question = text_field(record, "problem", "question")
        if "answer" in record:
            return question, text_field(record, "answer").strip()
        answer = last_boxed(text_field(record, "solution"))
        if not answer:
            raise ValueError("solution has no \\boxed{} answer")
        return question, answer

    def load(
        self,
        split: str,
        size: int,
        seed: int,
        source: str | None = None,
        *,
        levels: Collection[int] | None = None,
    ) -> list[Problem]:
        """`levels` (default: the task's own) keeps only those difficulty levels (the paper used
        1 to 3); records whose level is missing or unreadable ("Level ?") are then left out."""
        levels = self.levels if levels is None else levels

        def convert(record: Mapping[str, Any]) -> tuple[str, str] | None:
            if levels is not None and _level(record) not in levels:
                return None
            return self.convert(record)

        kept = None if levels is None else "levels " + ", ".join(map(str, sorted(levels)))
        return self.sample(split, size, seed, source, convert, kept)


def _level(record: Mapping[str, Any]) -> int | None:
    level = record.get("level")
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    match = re.fullmatch(r"\s*(?:Level\s*)?(\d+)\s*", level) if isinstance(level, str) else None
    return int(match.group(1)) if match else None


def _scalars_equal(a: str, b: str) -> bool:
    # sympy takes half a second to import, and only MATH grading needs it
    from .symbolic import equivalent

    return equivalent(a, b)


def _tuples_equal(a: str, b: str) -> bool:
    """Coordinates and intervals, "(1,\\frac{1}{2})" vs "(1,0.5)": equal brackets, equal parts."""
    x, y = _parts(a), _parts(b)
    if x is None or y is None or x[0] != y[0] or len(x[1]) != len(y[1]) or len(x[1]) < 2:
        return False
    return all(p == q or _scalars_equal(p, q) for p, q in zip(x[1], y[1], strict=True))


def _parts(s: str) -> tuple[str, list[str]] | None:
    brackets = ""
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        brackets, s = s[0] + s[-1], s[1:-1]
    parts, depth, start = [], 0, 0
    for i, char in enumerate(s):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return (brackets, parts) if depth == 0 else None
