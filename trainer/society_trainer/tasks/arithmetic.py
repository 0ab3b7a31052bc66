"""The paper's arithmetic task: "a+b*c+d-e*f" with each value uniform in 0..29 (or a narrower
0..max_value, for models too small for the paper's range)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice

from .base import SPLITS, DatasetError, Problem, Task, check_request, debate_prompts, problem_id
from .numeric import last_number, numbers_equal

_VALUES = 6
MAX_VALUE = 29  # the paper's


class ArithmeticTask(Task):
    name = "arithmetic"
    prompts = debate_prompts(
        "Make sure to state your final answer, a single number, at the end of your response."
    )

    def __init__(self, max_value: int = MAX_VALUE) -> None:
        self.max_value = max_value

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
        distinct = (self.max_value + 1) ** _VALUES
        if 2 * size > distinct:
            raise DatasetError(
                f"{size} problems per split need more than the {distinct} distinct problems "
                f"with values 0..{self.max_value}"
            )
        draws = _distinct_draws(seed, self.max_value)
        for a, b, c, d, e, f in islice(draws, start, start + 2 * size, 2):
            question = f"What is the result of {a}+{b}*{c}+{d}-{e}*{f}?"
            answer = str(a + b * c + d - e * f)
            problems.append(Problem(problem_id(self.name, split, question), question, answer))
        return problems


def _distinct_draws(seed: int, max_value: int) -> Iterator[tuple[int, ...]]:
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    while True:
        values = tuple(rng.randint(0, max_value) for _ in range(_VALUES))
        if values not in seen:
            seen.add(values)
            yield values
