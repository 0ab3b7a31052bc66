"""The debate's verdict: majority vote over the last round's parsed answers.

Tie-break (documented in docs/method.md): among the answers with the most votes, one chosen by a
hash of all the answers, so that it is the same on every run and machine. Not the lowest-numbered
agent's: the verdict decides whose responses become finetuning data, and with three different
answers (common on a hard task) agent 0 would get every such question's data, its critic every
corrected row, and the society would train lopsided. Unparseable answers (None) never vote; if no
answer parses, there is no majority and the question yields no data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Equal = Callable[[str, str], bool]


def majority(answers: Sequence[str | None], equal: Equal) -> str | None:
    """The winning answer, spelled as the lowest-numbered agent that gave it spelled it."""
    clusters: list[list[str]] = []  # in order of first appearance, so index order = agent order
    for answer in answers:
        if answer is None:
            continue
        for cluster in clusters:
            if equal(cluster[0], answer):
                cluster.append(answer)
                break
        else:
            clusters.append([answer])
    if not clusters:
        return None
    best = max(len(c) for c in clusters)
    tied = [c for c in clusters if len(c) == best]
    return tied[_tie_break(answers, len(tied))][0]


def _tie_break(answers: Sequence[str | None], tied: int) -> int:
    """Which of `tied` answers wins: uniform over their positions across questions, fixed for
    the same answers."""
    if tied == 1:
        return 0
    text = "\x1f".join("\x00" if a is None else a for a in answers)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % tied


def agrees(answer: str | None, verdict: str | None, equal: Equal) -> bool:
    return answer is not None and verdict is not None and equal(answer, verdict)


def consensus(answers: Sequence[str | None], verdict: str | None, equal: Equal) -> float:
    """Fraction of the agents that gave an answer whose answer equals the verdict (the paper's
    consensus measure). An unparseable answer is no vote, as in the majority, rather than a
    disagreement: it says nothing about whether the agents think alike. 0 when none parses."""
    parsed = [a for a in answers if a is not None]
    if not parsed:
        return 0.0
    return sum(agrees(a, verdict, equal) for a in parsed) / len(parsed)
