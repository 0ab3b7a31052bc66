"""tiny-equations: "Solve 7x+12=61." (a in 2..9, x in 0..9, b in 0..29; 2,400 problems), a task
where checking an answer (by substitution) is easier than producing one, for builtin:tiny-equations
and `make demo` (docs/method.md). The paper's tasks are arithmetic, gsm8k, math and mmlu; this one
is ours.

The problem space is split in two halves by a hash of the question (`half`): "builtin" problems
are the only ones builtin:tiny-equations was trained on, "society" problems the only ones a
Society draws, for its train and its eval split. So by construction no Society ever trains or
evaluates on a problem the base model was taught.

The prompts are short, in the words the builtin model was taught; every number a role must copy
sits right after a key that is unique in its context (tokenizer_numbers.py makes numbers and keys
one token each):
- generation: `{question}`, answered outright: `7`;
- summariser: `{question}\\n{responses}\\nSummarise.` (responses: `Agent 1:\\n7\\n\\nAgent 2:\\n9`),
  answered `One says 7. Another says 9.`;
- critic: `{question}\\nYou said {own_answer}.\\n{others}\\nCheck.` (others: the summary),
  answered with one check line per candidate, its own answer first, stopping at the first that
  fits (`check_line`), then `Answer k.`, or `None fits. Answer k.` with a fresh answer.
The builtin model learnt the critic for two others (3 agents) and for a summary (summarize on).

The answer is the last number of a response, as for arithmetic.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from itertools import islice

from .base import SPLITS, DatasetError, Problem, PromptTemplates, Task, check_request, problem_id
from .numeric import last_number, numbers_equal

A_RANGE = range(2, 10)
X_RANGE = range(0, 10)
B_RANGE = range(0, 30)
MAX_SUM = 299  # the largest number a check line writes (tokenizer_numbers.MAX_NUMBER)

PROMPTS = PromptTemplates(
    generation="{question}",
    critic="{question}\nYou said {own_answer}.\n{others}\nCheck.",
    summarizer="{question}\n{responses}\nSummarise.",
)
LABELS = ("One says ", "Another says ", "A third says ")  # the summary's, in its order

_INT = re.compile(r"-?\d+")


def question(a: int, b: int, x: int) -> str:
    return f"Solve {a}x+{b}={a * x + b}."


def half(a: int, b: int, x: int) -> str:
    """Which half of the problem space a problem is in: "builtin" (builtin:tiny-equations trains
    on these only) or "society" (a Society draws these only). The first byte of the question's
    BLAKE2b digest decides: stable across Python versions and machines."""
    digest = hashlib.blake2b(question(a, b, x).encode(), digest_size=8).digest()
    return "builtin" if digest[0] & 1 == 0 else "society"


def space(which: str) -> list[tuple[int, int, int]]:
    """Every (a, b, x) of one half, in a fixed order."""
    return [(a, b, x) for a in A_RANGE for b in B_RANGE for x in X_RANGE if half(a, b, x) == which]


def last_int(text: str) -> int | None:
    found = _INT.findall(text)
    return int(found[-1]) if found else None


def generation_response(x: int) -> str:
    return f"{x}"


def summary_response(responses: Sequence[str]) -> str:
    """The summary the builtin model was taught: each response's last number, in order."""
    parts = []
    for label, text in zip(LABELS, responses, strict=False):
        k = last_int(text)
        parts.append(f"{label}{k}." if k is not None else f"{label}nothing.")
    return " ".join(parts)


def digits_verdict(s: int, c: int) -> str:
    """Compare s with c one digit pair at a time, tens then ones, a word for each; fits iff both
    are the same. (Equality of two numbers in 0..299 is a pure interaction a model this small
    does not learn; equality of two digits it does: docs/research/tiny-equations.)"""
    tens = "same" if s // 10 == c // 10 else "differ"
    ones = "same" if s % 10 == c % 10 else "differ"
    verdict = ", yes." if s == c else ", no."
    return f": {s // 10} {c // 10} {tens}, {s % 10} {c % 10} {ones}{verdict}"


def check_line(a: int, b: int, c: int, label: str, k: int) -> tuple[str, bool]:
    """One candidate k checked by substitution, and whether it fits:
    `You said 5. 7*5 is 35+12 is 47, c=61: 4 6 differ, 7 1 differ, no.`"""
    s = a * k + b
    return f"{label}{k}. {a}*{k} is {a * k}+{b} is {s}, c={c}" + digits_verdict(s, c), s == c


CheckLine = Callable[[int, int, int, str, int], tuple[str, bool]]


def critic_response(
    a: int,
    b: int,
    x: int,
    own: int | None,
    others: Sequence[int | None],
    check: CheckLine = check_line,
) -> str:
    """The critic's answer the builtin model was taught: its own answer checked first, then the
    others' in the summary's order, stopping at the first that fits; when none fits, a fresh
    answer (here the right one, x). Candidates with no number, or outside the numbers a line can
    write, are skipped."""
    c = a * x + b
    lines = []
    for label, k in [("You said ", own), *zip(LABELS, others, strict=False)]:
        if k is None or k < 0 or a * k + b > MAX_SUM:
            continue
        line, fits = check(a, b, c, label, k)
        lines.append(line)
        if fits:
            return "\n".join([*lines, f"Answer {k}."])
    return "\n".join([*lines, f"None fits. Answer {x}."])


class EquationsTask(Task):
    name = "tiny-equations"
    prompts = PROMPTS

    def parse(self, text: str) -> str | None:
        return last_number(text)

    def answers_equal(self, a: str, b: str) -> bool:
        return numbers_equal(a, b)

    def load(self, split: str, size: int, seed: int, source: str | None = None) -> list[Problem]:
        """The "society" half shuffled by the seed; train takes the even positions, eval the odd,
        so they are disjoint and a larger sample extends a smaller one."""
        check_request(split, size)
        if source is not None:
            raise DatasetError("tiny-equations problems are generated from the seed; no source")
        pool = space("society")
        if 2 * size > len(pool):
            raise DatasetError(
                f"{size} problems per split: tiny-equations has {len(pool) // 2} per split"
            )
        random.Random(seed).shuffle(pool)
        start = SPLITS.index(split)
        return [
            Problem(problem_id(self.name, split, question(a, b, x)), question(a, b, x), str(x))
            for a, b, x in islice(pool, start, start + 2 * size, 2)
        ]
