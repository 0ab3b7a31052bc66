"""GSM8K: grade-school word problems with a single numeric answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import debate_prompts
from .latex import last_boxed, latex_number
from .loading import DatasetTask, text_field
from .numeric import canonical, last_number, numbers_equal, to_decimal


class Gsm8kTask(DatasetTask):
    name = "gsm8k"
    prompts = debate_prompts(
        "Give your final answer as a single number in the form \\boxed{answer} at the end of "
        "your response."
    )
    default_source = "openai/gsm8k"
    default_config = "main"

    def parse(self, text: str) -> str | None:
        """The number in the last \\boxed{}, read as LaTeX ("1\\,000", "-\\$5", "\\frac{3}{4}");
        failing that, the last number in the box; models that forget the box still usually end
        on the answer, so the last number in the text is the fallback."""
        boxed = last_boxed(text)
        number = None if boxed is None else latex_number(boxed) or last_number(boxed)
        return number if number is not None else last_number(text)

    def answers_equal(self, a: str, b: str) -> bool:
        return numbers_equal(a, b)

    def convert(self, record: Mapping[str, Any]) -> tuple[str, str]:
        """The dataset's answer is a worked solution ending in "#### 42"; a bare number is also
        accepted so that hand-written JSONL files need no fake solution."""
        question = text_field(record, "question")
        answer = text_field(record, "answer")
        _, marker, final = answer.rpartition("####")
        number = to_decimal(final if marker else answer)
        if number is None:
            raise ValueError(f"answer {(final if marker else answer).strip()!r} is not a number")
        return question, canonical(number)
