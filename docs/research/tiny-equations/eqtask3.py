"""tiny-equations v2 prototype: formats written so that every number a role must copy sits right
after a token that is unique in its context (see numtok.py: numbers 0..299 and the key phrases
are one token each), so a one-token induction head suffices.

Problem: `Solve 7x+12=61.` (a in 2..9, x in 0..9, b in 0..29; 2,400 problems), split in two
halves by a hash of the question: "builtin" (pretraining only) and "society" (the Society's
train and eval problems), disjoint by construction.

Roles and the keys they copy from (key -> value, each key followed by one value in a context):
- generation: prompt `{question}`, answer outright: `7`.
- summariser: prompt `{question}\n{responses}\nSummarise.` where responses is the product's
  others_text (`Agent 1:\n7\n\nAgent 2:\n9`; keys `Agent n:\n`); summary
  `One says 7. Another says 9.` (a third: `A third says 3.`).
- critic: prompt `{question}\nYou said {own_answer}.\n{others}\nCheck.` (others = the summary);
  keys `Solve ` -> a, `+` -> b, `=` -> c, `You said ` -> own, `One says ` / `Another says ` ->
  the others. Response: one line per candidate, own first, stop at the first that fits:
  `You said 5. 7*5 is 35+12 is 47, no.\nOne says 7. 7*7 is 49+12 is 61, yes.\nAnswer 7.`;
  none fits: `... , no.\nNone fits. Answer 6.` (a fresh answer, as in round 1).
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from collections.abc import Sequence
from itertools import islice

sys.path.insert(0, "/work/scratch13/v3/vendor/trainer")

from society_trainer.tasks.base import (  # noqa: E402
    SPLITS,
    DatasetError,
    Problem,
    PromptTemplates,
    Task,
    check_request,
    others_text,
    problem_id,
)
from society_trainer.tasks.numeric import last_number, numbers_equal  # noqa: E402

A_RANGE = range(2, 10)
X_RANGE = range(0, 10)
B_RANGE = range(0, 30)


def question(a: int, b: int, x: int) -> str:
    return f"Solve {a}x+{b}={a * x + b}."


def half(a: int, b: int, x: int) -> str:
    digest = hashlib.blake2b(question(a, b, x).encode(), digest_size=8).digest()
    return "builtin" if digest[0] & 1 == 0 else "society"


def space(which: str) -> list[tuple[int, int, int]]:
    return [
        (a, b, x) for a in A_RANGE for b in B_RANGE for x in X_RANGE if half(a, b, x) == which
    ]


PROMPTS = PromptTemplates(
    generation="{question}",
    critic="{question}\nYou said {own_answer}.\n{others}\nCheck.",
    summarizer="{question}\n{responses}\nSummarise.",
)

CHECK_FORMAT = 4  # 4: v3 (c= then off |s-c|); 1: v2 lines; 2: v2.1 (c= before the verdict); 3: v2.2

SIGNED = True  # v3: off = c-s (signed: linear in the numbers' magnitudes) or |c-s|


def OFF(c: int, s: int) -> int:
    return c - s if SIGNED else abs(c - s)


LABELS = ("One says ", "Another says ", "A third says ")

_INT = re.compile(r"-?\d+")


def last_int(text: str) -> int | None:
    found = _INT.findall(text)
    return int(found[-1]) if found else None


def generation_response(x: int) -> str:
    return f"{x}"


def summary_response(responses: Sequence[str]) -> str:
    parts = []
    for label, text in zip(LABELS, responses, strict=False):
        k = last_int(text)
        parts.append(f"{label}{k}." if k is not None else f"{label}nothing.")
    return " ".join(parts)


def digits_verdict(s: int, c: int) -> str:
    t = "same" if s // 10 == c // 10 else "differ"
    o = "same" if s % 10 == c % 10 else "differ"
    return f": {s // 10} {c // 10} {t}, {s % 10} {c % 10} {o}" + (", yes." if s == c else ", no.")


def check_line(a: int, b: int, c: int, label: str, k: int) -> tuple[str, bool]:
    p = a * k
    s = p + b
    ok = s == c
    if CHECK_FORMAT == 6:
        # v3 "digits": restate c, then compare the tens and the ones digits of s and c one pair
        # at a time (each an equality over 0..15 / 0..9, not over 0..299); yes iff both same
        return f"{label}{k}. {a}*{k} is {p}+{b} is {s}, c={c}" + digits_verdict(s, c), ok
    if CHECK_FORMAT == 4:
        # v3 "off": restate c, write the gap |s-c| (a subtraction of two adjacent numbers, a table
        # like +b), then the verdict is a function of the one token before it: 0 means fits.
        return f"{label}{k}. {a}*{k} is {p}+{b} is {s}, c={c}, off {OFF(c, s)}, " + (
            "yes." if ok else "no."
        ), ok
    if CHECK_FORMAT == 1:
        return f"{label}{k}. {a}*{k} is {p}+{b} is {s}, " + ("yes." if ok else "no."), ok
    if CHECK_FORMAT == 3:
        # v2.2: no verdict word to compute: a line whose sum equals c ends like the question's
        # `=61.` does (a plain induction head's continuation of the token 61), else `, no.`
        return f"{label}{k}. {a}*{k} is {p}+{b} is {s}" + ("." if ok else ", no."), ok
    # v2.1: restate c right before the verdict (`=` is c's key, so this is a plain copy), so
    # the verdict compares two nearby tokens instead of reaching back to the question.
    return f"{label}{k}. {a}*{k} is {p}+{b} is {s}, c={c}, " + ("yes." if ok else "no."), ok


def critic_response(a: int, b: int, x: int, own: int | None, others: Sequence[int | None]) -> str:
    if CHECK_FORMAT == 5:
        # v3 "rederive" (the honest fallback): the critic solves the equation in two written
        # steps, c-b then /a, and does NOT use the others' answers (they are in its prompt only).
        c = a * x + b
        return f"{c}-{b} is {c - b}, {c - b}/{a} is {x}.\nAnswer {x}."
    """Own answer first, then the others in the summary's order; stop at the first that fits;
    none fits: a fresh answer (here the right one, to teach)."""
    c = a * x + b
    lines = []
    cands = [("You said ", own)] + list(zip(LABELS, others, strict=False))
    for label, k in cands:
        if k is None or k < 0 or a * k + b > 299:
            continue
        line, ok = check_line(a, b, c, label, k)
        lines.append(line)
        if ok:
            return "\n".join(lines + [f"Answer {k}."])
    return "\n".join(lines + [f"None fits. Answer {x}."])


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
    print(summary_response(["7", "9"]))
    print(critic_response(7, 12, 7, 5, [7, 9]))
    print(critic_response(7, 12, 7, 5, [8, 9]))
    print(critic_response(7, 12, 7, 7, [8, 9]))
