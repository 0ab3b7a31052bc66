"""`society-trainer analyse`: one iteration's eval debate read the ways the paper's Table 1 reads
a society, and the likelihood diversity of its agents.

Readings (each graded as evaluation.py grades a debate):
- alone: agent 0's round-1 answers, each on its own (the base model, one agent, one round);
- first: the majority vote of the round-1 answers (N agents, one round);
- final: the debate's verdict (N agents, M rounds), what the debate step reported.

Likelihood diversity (the paper's third measure): the negative log-likelihood, per answer token,
of one agent's round-1 response under *another* agent's generation model, given the prompt that
response answered; the mean over ordered pairs of different agents and over the first
`likelihood_questions` questions. Models that have specialised find each other's answers less
likely. For the modes with one model every pair is that model scoring samples it did not draw
itself, so the number then measures how spread the one model's own answers are. The same NLL of
each agent's responses under its own model is reported beside it (`selfLikelihood`). The tokens
scored are those a training step would teach (training_rows.py), so the number is the loss the
finetuning minimises.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .config import AnalysisConfig
from .evaluation import evaluate
from .tasks import Task, get_task
from .transcript import QuestionRecord, read_transcript
from .voting import majority


def first_round(record: QuestionRecord, task: Task) -> QuestionRecord:
    first = record.rounds[0]
    verdict = majority([turn.answer for turn in first], task.answers_equal)
    return record.model_copy(update={"rounds": [first], "majority": verdict})


def alone(record: QuestionRecord, agent: int) -> QuestionRecord:
    turn = record.rounds[0][agent]
    return record.model_copy(update={"rounds": [[turn]], "majority": turn.answer})


def _reading(records: Sequence[QuestionRecord], task: Task, embedding_model: str | None) -> dict:
    found = evaluate(records, task, embedding_model)
    return {
        "questions": found.questions,
        "correct": found.correct,
        "accuracy": found.accuracy,
        "consensus": found.consensus,
        "diversity": found.diversity,
        "diversityMethod": found.diversity_method,
    }


def _nll_matrix(config: AnalysisConfig, records: Sequence[QuestionRecord]) -> list[list[float]]:
    """nll[i][j]: mean per-token NLL of agent j's round-1 responses under agent i's model."""
    import torch
    from peft import PeftModel

    from .models import load_causal_lm, load_tokenizer
    from .training_rows import IGNORE, tokenize_rows

    backend = config.debate.backend
    tokenizer = load_tokenizer(backend.base_model, backend.base_model_revision)
    model = load_causal_lm(backend.base_model, backend.dtype, backend.base_model_revision).eval()
    rows = [
        [
            {
                "messages": [
                    {"role": "user", "content": t.prompt},
                    {"role": "assistant", "content": t.response},
                ]
            }
            for t in (record.rounds[0][j] for record in records)
        ]
        for j in range(len(config.debate.agents))
    ]
    encoded = [tokenize_rows(tokenizer, r, "final_answer", 1 << 20, "truncate").rows for r in rows]

    def score(net) -> list[float]:
        """Each agent's rows in one right-padded batch: the mean NLL over its taught tokens."""
        means = []
        for agent_rows in encoded:
            width = max(len(row["input_ids"]) for row in agent_rows)
            ids = torch.zeros(len(agent_rows), width, dtype=torch.long)
            labels = torch.full((len(agent_rows), width), IGNORE)
            mask = torch.zeros(len(agent_rows), width, dtype=torch.long)
            for k, row in enumerate(agent_rows):
                n = len(row["input_ids"])
                ids[k, :n], labels[k, :n] = (
                    torch.tensor(row["input_ids"]),
                    torch.tensor(row["labels"]),
                )
                mask[k, :n] = 1
            with torch.inference_mode():
                logits = net(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            taught = target != IGNORE
            loss = torch.nn.functional.cross_entropy(logits[taught], target[taught])
            means.append(float(loss))
        return means

    scored: dict[Path | None, list[float]] = {}
    for n, agent in enumerate(config.debate.agents):
        path = agent.generation.path
        if path not in scored:
            if path is None:
                scored[path] = score(model)
            else:
                adapted = PeftModel.from_pretrained(model, path, adapter_name=f"agent{n}").eval()
                scored[path] = score(adapted)
                model = adapted.unload()  # the base weights again, for the next adapter
    return [scored[agent.generation.path] for agent in config.debate.agents]


def likelihoods(config: AnalysisConfig, records: Sequence[QuestionRecord]) -> dict:
    agents = len(config.debate.agents)
    scored = list(records[: config.likelihood_questions])
    if agents < 2 or not scored:
        return {"likelihood": None, "selfLikelihood": None}
    nll = _nll_matrix(config, scored)
    cross = [nll[i][j] for i in range(agents) for j in range(agents) if i != j]
    return {
        "likelihood": sum(cross) / len(cross),
        "selfLikelihood": sum(nll[i][i] for i in range(agents)) / agents,
        "likelihoodQuestions": len(scored),
        "likelihoodMatrix": nll,
    }


def analyse(config: AnalysisConfig) -> dict:
    debate = config.debate
    task = get_task(debate.task.name, debate.task.max_value, debate.task.levels)
    records = read_transcript(debate.output_dir / "eval" / "transcript.jsonl")
    if not records:
        raise ValueError(f"no eval transcript under {debate.output_dir}")
    result = {
        "iteration": debate.iteration,
        "mode": debate.mode,
        "alone": _reading([alone(r, 0) for r in records], task, None),
        "final": _reading(records, task, config.embedding_model),
    }
    # After one round the verdict is the round-1 vote: the same reading, measured once.
    result["first"] = (
        dict(result["final"])
        if debate.rounds == 1
        else _reading([first_round(r, task) for r in records], task, config.embedding_model)
    )
    spread = likelihoods(config, records)
    for reading in ("first", "final"):
        result[reading].update(likelihood=spread["likelihood"])
    result["likelihood"] = spread
    config.output.parent.mkdir(parents=True, exist_ok=True)
    partial = config.output.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(config.output)
    return result
