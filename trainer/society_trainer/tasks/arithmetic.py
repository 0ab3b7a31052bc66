"""The paper's arithmetic task: "a+b*c+d-e*f" with each value uniform in 0..29 (or a narrower
0..max_value, for models too small for the paper's range).

Half of the problems whose values all lie in 0..9 are kept out of every Society's draws
(`reserved_for_builtin`): builtin:tiny-arithmetic is trained on those only, so no Society ever
trains or evaluates on a problem the base model was taught (docs/method.md).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from itertools import islice, product

from .base import SPLITS, DatasetError, Problem, Task, check_request, debate_prompts, problem_id
from .numeric import last_number, numbers_equal

_VALUES = 6
MAX_VALUE = 29  # the paper's
BUILTIN_MAX_VALUE = 9  # the range builtin:tiny-arithmetic is taught


def expression(values: tuple[int, ...]) -> str:
    a, b, c, d, e, f = values
    return f"{a}+{b}*{c}+{d}-{e}*{f}"


def reserved_for_builtin(values: tuple[int, ...]) -> bool:
    """Whether the problem is one that builtin:tiny-arithmetic's recipe may train on, and so one
    that no Society draws: every value in 0..9 and an odd first byte of the expression's
    BLAKE2b digest (about half of those 10^6 problems; stable across Python versions)."""
    if max(values) > BUILTIN_MAX_VALUE:
        return False
    return bool(hashlib.blake2b(expression(values).encode(), digest_size=1).digest()[0] & 1)


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
        draws, eval the odd), so they are disjoint and a larger sample extends a smaller one.
        Problems reserved for the builtin model's training are skipped."""
        check_request(split, size)
        if source is not None:
            raise DatasetError(
                "arithmetic problems are generated from the seed; it takes no source"
            )
        start = SPLITS.index(split)
        problems = []
        distinct = _drawable(self.max_value, 2 * size)
        if 2 * size > distinct:
            raise DatasetError(
                f"{size} problems per split need more than the {distinct} distinct problems "
                f"with values 0..{self.max_value} that a Society may draw"
            )
        draws = _distinct_draws(seed, self.max_value)
        for a, b, c, d, e, f in islice(draws, start, start + 2 * size, 2):
            question = f"What is the result of {expression((a, b, c, d, e, f))}?"
            answer = str(a + b * c + d - e * f)
            problems.append(Problem(problem_id(self.name, split, question), question, answer))
        return problems


def _distinct_draws(seed: int, max_value: int) -> Iterator[tuple[int, ...]]:
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    while True:
        values = tuple(rng.randint(0, max_value) for _ in range(_VALUES))
        if values not in seen and not reserved_for_builtin(values):
            seen.add(values)
            yield values


def _drawable(max_value: int, wanted: int) -> int:
    """How many distinct problems a Society may draw with values 0..max_value, or at least
    `wanted` of them: the reserved ones are counted only when the request comes near the limit
    (counting all 10^6 small problems takes about a second)."""
    total = (max_value + 1) ** _VALUES
    small = (min(max_value, BUILTIN_MAX_VALUE) + 1) ** _VALUES
    if wanted <= (total - small) + small // 4:  # a quarter of the small ones is far below half
        return max(wanted, total - small // 2)
    reserved = sum(
        reserved_for_builtin(values)
        for values in product(range(min(max_value, BUILTIN_MAX_VALUE) + 1), repeat=_VALUES)
    )
    return total - reserved
