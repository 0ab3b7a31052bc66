"""The debate's verdict: majority vote over the last round's parsed answers.

Tie-break (deterministic, documented in docs/method.md): among the answers with the most votes,
the one given by the lowest-numbered agent wins. Agents are interchangeable copies at iteration 0,
so this favours no one systematically; it only has to be repeatable. Unparseable answers (None)
never vote; if no answer parses, there is no majority and the question yields no data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Equal = Callable[[str, str], bool]


def majority(answers: Sequence[str | None], equal: Equal) -> str | None:
    """The winning answer, spelled as its lowest-numbered agent spelled it."""
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
    return next(c[0] for c in clusters if len(c) == best)


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
