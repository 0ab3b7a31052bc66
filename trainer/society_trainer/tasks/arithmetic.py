"""The paper's arithmetic task: "a+b*c+d-e*f" with each value uniform in 0..29."""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice

from .base import SPLITS, DatasetError, Problem, Task, check_request, debate_prompts, problem_id
from .numeric import last_number, numbers_equal

_VALUES = 6


class ArithmeticTask(Task):
    name = "arithmetic"
    prompts = debate_prompts(
        "Make sure to state your final answer, a single number, at the end of your response."
    )

    def parse(self, text: str) -> str | None:
        return last_number(text)

    def answers_equal(self, a: str, b: str) -> bool:
        return numbers_equal(a, b)

    def load(self, split: str, size: int, seed: int, source: str | None = None) -> list[Problem]:
        """Train and eval interleave one stream of distinct expressions (train takes the even
        draws, eval the odd), so they are disjoint and a larger sample extends a smaller one."""
        check_request(split, size)
        if source is not None:
            raise DatasetError(
                "arithmetic problems are generated from the seed; it takes no source"
            )
        start = SPLITS.index(split)
        problems = []
        for a, b, c, d, e, f in islice(_distinct_draws(seed), start, start + 2 * size, 2):
            question = f"What is the result of {a}+{b}*{c}+{d}-{e}*{f}?"
            answer = str(a + b * c + d - e * f)
            problems.append(Problem(problem_id(self.name, split, question), question, answer))
        return problems


def _distinct_draws(seed: int) -> Iterator[tuple[int, ...]]:
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    while True:
        values = tuple(rng.randint(0, 29) for _ in range(_VALUES))
        if values not in seen:
            seen.add(values)
            yield values
