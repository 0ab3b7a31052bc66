"""The multiagent debate (Du et al. 2023, as used by Subramaniam et al. 2025).

Per question: in round 1 each generation agent A^G_n answers alone; in each later round each
critic agent A^C_n sees its own conversation so far plus the other agents' previous answers
(condensed by one summariser call when summarising is on) and answers again. The verdict is the
majority of the last round's parsed answers (voting.py).

Every question is its own coroutine, so a question's round 2 starts as soon as its own round 1 is
done: the generator's concurrency bound, not round barriers, decides what is in flight. Records
are appended to the transcript as questions finish, so a killed debate resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .config import AgentModels, ModelRef, SamplingConfig
from .generation import CompletionRequest, Generator, Message
from .tasks import Problem, Task
from .tasks.base import PromptTemplates, others_text
from .transcript import (
    QuestionRecord,
    TranscriptWriter,
    Turn,
    read_transcript,
    start_transcript,
)
from .voting import majority

log = logging.getLogger(__name__)

# How often a debate without a terminal (a pod's log) reports progress.
LOG_EVERY_SECONDS = 30.0


def request_seed(*parts: object) -> int:
    """A sampling seed that depends only on what the request is, not on when it runs, so a
    resumed debate samples exactly what the uninterrupted one would have."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class DebateSetup:
    task: Task
    prompts: PromptTemplates
    agents: Sequence[AgentModels]
    rounds: int
    summarize: bool
    sampling: SamplingConfig
    seed: int
    summarizer: ModelRef | None = None  # None: each agent's critic model summarises for itself
    base_model: str | None = None  # what serves the base model, where the step knows it

    def settings(self) -> dict:
        """Everything that decides what the debate samples, besides the problems themselves: a
        transcript is only resumed under the same settings (transcript.start_transcript). The
        problems are checked by id instead, and a transcript of other problems is refused."""
        return {
            "rounds": self.rounds,
            "summarize": self.summarize,
            "summarizer": None
            if self.summarizer is None
            else self.summarizer.model_dump(mode="json"),
            "sampling": self.sampling.model_dump(mode="json"),
            "prompts": dataclasses.asdict(self.prompts),
            "agents": [agent.model_dump(mode="json") for agent in self.agents],
            "baseModel": self.base_model,
        }


class Debate:
    def __init__(self, setup: DebateSetup, generator: Generator):
        self.setup = setup
        self.generator = generator

    async def _ask(self, model: ModelRef, messages: list[Message], *seed_parts: object) -> str:
        request = CompletionRequest(
            model=model,
            messages=messages,
            sampling=self.setup.sampling,
            seed=request_seed(self.setup.seed, *seed_parts),
        )
        return await self.generator.complete(request)

    async def _critic_turn(
        self, problem: Problem, agent: int, m: int, history: list[Message], previous: list[Turn]
    ) -> tuple[Turn, list[Message]]:
        setup = self.setup
        models = setup.agents[agent]
        others = [turn.response for turn in previous if turn.agent != agent]
        # In a seeded order of their own, so that no agent's answer always comes first.
        random.Random(request_seed(setup.seed, problem.id, agent, m, "order")).shuffle(others)
        summary = None
        if setup.summarize and others:
            prompt = setup.prompts.summarizer.format(
                question=problem.question, responses=others_text(others)
            )
            summary = await self._ask(
                setup.summarizer or models.critic,
                [{"role": "user", "content": prompt}],
                problem.id,
                agent,
                m,
                "summary",
            )
        prompt = setup.prompts.critic.format(
            question=problem.question,
            own_answer=previous[agent].response,
            others=summary if summary is not None else others_text(others),
        )
        messages = history + [{"role": "user", "content": prompt}]
        response = await self._ask(models.critic, messages, problem.id, agent, m)
        turn = Turn(
            agent=agent,
            model=models.critic.name,
            prompt=prompt,
            response=response,
            answer=setup.task.parse(response),
            summary=summary,
        )
        return turn, messages + [{"role": "assistant", "content": response}]

    async def debate_question(self, problem: Problem) -> QuestionRecord:
        setup = self.setup
        prompt = setup.prompts.generation.format(question=problem.question)
        first = [{"role": "user", "content": prompt}]
        responses = await asyncio.gather(
            *(self._ask(a.generation, first, problem.id, n, 1) for n, a in enumerate(setup.agents))
        )
        rounds = [
            [
                Turn(
                    agent=n,
                    model=setup.agents[n].generation.name,
                    prompt=prompt,
                    response=response,
                    answer=setup.task.parse(response),
                )
                for n, response in enumerate(responses)
            ]
        ]
        histories = [first + [{"role": "assistant", "content": r}] for r in responses]
        for m in range(2, setup.rounds + 1):
            results = await asyncio.gather(
                *(
                    self._critic_turn(problem, n, m, histories[n], rounds[-1])
                    for n in range(len(setup.agents))
                )
            )
            rounds.append([turn for turn, _ in results])
            histories = [history for _, history in results]
        verdict = majority([turn.answer for turn in rounds[-1]], setup.task.answers_equal)
        return QuestionRecord(
            id=problem.id,
            question=problem.question,
            reference=problem.answer,
            rounds=rounds,
            majority=verdict,
        )

    async def run(
        self, problems: Sequence[Problem], transcript: Path, label: str
    ) -> list[QuestionRecord]:
        """Debate every problem not already in `transcript`; return all records in problem order."""
        start_transcript(transcript, self.setup.settings())
        done = {record.id: record for record in read_transcript(transcript)}
        wanted = {problem.id for problem in problems}
        stale = set(done) - wanted
        if stale:
            raise ValueError(
                f"{transcript} holds {len(stale)} questions this debate does not ask (a different "
                "task, size or seed wrote it); use a fresh output directory"
            )
        todo = [problem for problem in problems if problem.id not in done]
        if done:
            log.info(
                "%s: resuming, %d of %d questions already debated", label, len(done), len(problems)
            )
        progress = _Progress(label, total=len(problems), initial=len(done))
        writer = TranscriptWriter(transcript)
        try:

            async def one(problem: Problem) -> None:
                record = await self.debate_question(problem)
                writer.write(record)
                done[record.id] = record
                progress.advance()

            await asyncio.gather(*(one(problem) for problem in todo))
        finally:
            writer.close()
            progress.close()
        return [done[problem.id] for problem in problems]


class _Progress:
    """A progress bar on a terminal; a log line every LOG_EVERY_SECONDS in a pod's log."""

    def __init__(self, label: str, total: int, initial: int):
        self.label, self.total, self.count = label, total, initial
        self.bar = tqdm(
            total=total, initial=initial, desc=label, unit="q", disable=not sys.stderr.isatty()
        )
        self.started = self.last_log = time.monotonic()

    def advance(self) -> None:
        self.count += 1
        self.bar.update()
        now = time.monotonic()
        if self.bar.disable and (
            now - self.last_log >= LOG_EVERY_SECONDS or self.count == self.total
        ):
            self.last_log = now
            log.info(
                "%s: %d/%d questions (%.0f s)",
                self.label,
                self.count,
                self.total,
                now - self.started,
            )

    def close(self) -> None:
        self.bar.close()
