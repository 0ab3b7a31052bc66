"""Prototype of a built-in tiny task where checking an answer is easier than producing one:
linear equations a*x+b=c, answered outright (no worked steps: the tiny model must compute
x=(c-b)/a in its head, which it gets right only part of the time), and checked by substitution
in written steps (a*k, then +b, then compare with c: each step a fact the model knows well).

The problem space is split in two halves by a hash of the question text: the builtin model is
pretrained only on the "builtin" half, and the Society task draws train and eval problems only
from the "society" half, so no problem a Society can draw was ever seen in pretraining.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from collections.abc import Iterator, Sequence
from itertools import islice

sys.path.insert(0, "/work/scratch13/vendor/trainer")

from society_trainer.tasks.base import (  # noqa: E402
    SPLITS,
    DatasetError,
    Problem,
    PromptTemplates,
    Task,
    check_request,
    problem_id,
)
from society_trainer.tasks.numeric import last_number, numbers_equal  # noqa: E402

A_RANGE = range(2, 10)  # coefficient
X_RANGE = range(0, 20)  # the unknown
B_RANGE = range(0, 60)  # the constant


def question(a: int, b: int, x: int) -> str:
    return f"Solve {a}*x+{b}={a * x + b}."


def half(a: int, b: int, x: int) -> str:
    """Which half of the problem space a problem lies in: 'builtin' (pretraining) or 'society'."""
    digest = hashlib.blake2b(question(a, b, x).encode(), digest_size=8).digest()
    return "builtin" if digest[0] & 1 == 0 else "society"


def space(which: str) -> list[tuple[int, int, int]]:
    return [
        (a, b, x)
        for a in A_RANGE
        for b in B_RANGE
        for x in X_RANGE
        if half(a, b, x) == which
    ]


PROMPTS = PromptTemplates(
    generation="{question}",
    critic="{question}\nYou: {own_answer}\nOthers: {others}\nCheck each by substitution.",
    summarizer="{question}\n{responses}\nSummarise their answers.",
)


def generation_response(x: int) -> str:
    return f"x={x}."


def summary_response(responses: Sequence[str]) -> str:
    parts = []
    for i, text in enumerate(responses, 1):
        k = last_int(text)
        parts.append(f"Agent {i}: x={k}." if k is not None else f"Agent {i}: none.")
    return " ".join(parts)


def check_line(a: int, b: int, c: int, k: int) -> tuple[str, bool]:
    p = a * k
    s = p + b
    ok = s == c
    return f"{a}*{k}+{b}={p}+{b}={s}, " + ("yes." if ok else "no."), ok


def critic_response(a: int, b: int, x: int, candidates: Sequence[int | None]) -> str:
    """Check the distinct candidates in order (own answer first); the first that fits is the
    answer; if none fits, answer outright again (here: the right answer, to teach)."""
    c = a * x + b
    seen: list[int] = []
    for k in candidates:
        if k is None or k in seen or k < 0 or k > 99:
            continue
        seen.append(k)
    lines = []
    for k in seen:
        line, ok = check_line(a, b, c, k)
        lines.append(line)
        if ok:
            return " ".join(lines) + f" x={k}."
    return " ".join(lines + ["None fits."]) + f" x={x}." if lines else f"x={x}."


_INT = re.compile(r"-?\d+")


def last_int(text: str) -> int | None:
    found = _INT.findall(text)
    return int(found[-1]) if found else None


def others_text(responses: Sequence[str]) -> str:
    return "\n\n".join(f"Agent {i}:\n{text.strip()}" for i, text in enumerate(responses, 1))


class EquationsTask(Task):
    name = "tiny-equations"
    prompts = PROMPTS

    def parse(self, text: str) -> str | None:
        return last_number(text)

    def answers_equal(self, a: str, b: str) -> bool:
        return numbers_equal(a, b)

    def load(self, split: str, size: int, seed: int, source: str | None = None) -> list[Problem]:
        check_request(split, size)
        if source is not None:
            raise DatasetError("tiny-equations problems are generated from the seed")
        pool = space("society")
        if 2 * size > len(pool):
            raise DatasetError(f"at most {len(pool) // 2} problems per split")
        random.Random(seed).shuffle(pool)
        start = SPLITS.index(split)
        return [
            Problem(problem_id(self.name, split, question(a, b, x)), question(a, b, x), str(x))
            for a, b, x in islice(pool, start, start + 2 * size, 2)
        ]


if __name__ == "__main__":
    b, s = space("builtin"), space("society")
    print(len(b), len(s), len(set(b) & set(s)))
    print(PROMPTS.generation.format(question=question(7, 12, 7)))
    print(summary_response(["x=7.", "x=5."]))
    print(critic_response(7, 12, 7, [5, 8, 7]))
    print(critic_response(7, 12, 7, [5, 8, 9]))
