"""User-supplied problems: JSONL (or JSON/parquet) records {"question": ..., "answer": ...}.

Answers may be numbers or short strings, so grading is numeric when both sides are numbers and
otherwise a comparison of lightly normalised text (case, spacing, $, \\text{}, a final period).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import debate_prompts
from .latex import last_boxed, unwrap_text
from .loading import DatasetTask, text_field
from .numeric import canonical, last_number, numbers_equal, to_decimal


class CustomTask(DatasetTask):
    name = "custom"
    prompts = debate_prompts("Give your final answer in the form \\boxed{answer}.")

    def parse(self, text: str) -> str | None:
        boxed = last_boxed(text)
        if boxed is None:
            return last_number(text)
        number = to_decimal(boxed)
        return canonical(number) if number is not None else (_normalize(boxed) or None)

    def answers_equal(self, a: str, b: str) -> bool:
        if to_decimal(a) is not None and to_decimal(b) is not None:
            return numbers_equal(a, b)
        return _normalize(a) == _normalize(b)

    def convert(self, record: Mapping[str, Any]) -> tuple[str, str]:
        return text_field(record, "question"), text_field(record, "answer").strip()


def _normalize(text: str) -> str:
    plain = unwrap_text(text).replace("\\$", "").replace("$", "")
    return " ".join(plain.split()).rstrip(".").casefold()
