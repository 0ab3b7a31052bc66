"""Algorithm 1 of the paper: each agent's own finetuning data, from the debate alone.

No ground truth is used: the pseudo-label of a question is the debate's majority answer ŷ.
For agent n:
- generation data D^G_n: (x, y_1n) for every question whose first-round answer y_1n agrees with ŷ;
- critic data, the whole exchange of agent n as a multi-turn conversation:
  D^C-_n: first answer disagreed with ŷ and final answer agrees (the agent was corrected);
  D^C+_n: first and final answers both agree with ŷ;
  D^C_n mixes them so that a share w comes from D^C-: every corrected exchange is kept and
  round(|D^C-| (1-w)/w) kept-correct ones are drawn at random (all of D^C+ when w == 0). With
  w = 2/3 that is the authors' "each corrected example plus, half the time, a kept-correct one".

Single-agent mode (the paper's baseline): one model plays every agent, so it learns from all of
the debate's data: every agent's generation rows and critic exchanges, pooled into one dataset
written as agent 0's generation dataset (the one its training step reads).

STaR mode (the paper's STaR baseline, Zelikman et al. 2022): one model plays every agent and is
finetuned on its own first-round answers that match the ground truth (the only mode that uses the
reference): every agent's correct round-1 answer, pooled the same way.

Rows are chat conversations in TRL's `messages` format; loss goes on the assistant turns.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .transcript import QuestionRecord, Turn, write_jsonl
from .voting import Equal, agrees


@dataclass
class AgentData:
    agent: int
    generation: list[dict]
    critic: list[dict]
    corrected: int  # |D^C-|
    kept_correct: int  # |D^C+|


def _messages(turns: Sequence[Turn]) -> dict:
    """Agent n's side of one debate: each round's prompt and the agent's answer."""
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": turn.response})
    return {"messages": messages}


def mix_critic(
    corrected: list[dict], kept: list[dict], weight: float, rng: random.Random
) -> list[dict]:
    """D^C: all corrected exchanges, plus kept-correct ones so corrected make up `weight`."""
    if weight == 0.0:
        return list(kept)
    wanted = round(len(corrected) * (1.0 - weight) / weight)
    return corrected + rng.sample(kept, min(wanted, len(kept)))


def build_agent_data(
    records: Sequence[QuestionRecord],
    agents: int,
    critic_mix_weight: float,
    equal: Equal,
    seed: int,
) -> list[AgentData]:
    """Algorithm 1 over a debate's records, one AgentData per agent."""
    result = []
    for n in range(agents):
        generation, corrected, kept = [], [], []
        for record in records:
            verdict = record.majority
            first = record.rounds[0][n]
            first_ok = agrees(first.answer, verdict, equal)
            if first_ok:
                generation.append(_messages([first]))
            if len(record.rounds) > 1 and agrees(record.rounds[-1][n].answer, verdict, equal):
                exchange = _messages([turns[n] for turns in record.rounds])
                (kept if first_ok else corrected).append(exchange)
        rng = random.Random(f"{seed}/critic-mix/{n}")
        critic = mix_critic(corrected, kept, critic_mix_weight, rng)
        result.append(AgentData(n, generation, critic, len(corrected), len(kept)))
    return result


def pooled_data(per_agent: Sequence[AgentData]) -> AgentData:
    """Every agent's data, pooled role by role."""
    return AgentData(
        0,
        [row for data in per_agent for row in data.generation],
        [row for data in per_agent for row in data.critic],
        sum(data.corrected for data in per_agent),
        sum(data.kept_correct for data in per_agent),
    )


def single_agent_data(per_agent: Sequence[AgentData]) -> AgentData:
    """Single-agent mode: the one model's dataset, generation rows and critic exchanges."""
    pooled = pooled_data(per_agent)
    return AgentData(
        0, pooled.generation + pooled.critic, [], pooled.corrected, pooled.kept_correct
    )


def star_data(
    records: Sequence[QuestionRecord], agents: int, is_correct: Callable[[str | None, str], bool]
) -> AgentData:
    """STaR mode: every agent's first-round answer that the reference grades right."""
    generation = [
        _messages([record.rounds[0][n]])
        for n in range(agents)
        for record in records
        if is_correct(record.rounds[0][n].answer, record.reference)
    ]
    return AgentData(0, generation, [], 0, 0)


def dataset_path(root: Path, agent: int, role: str) -> Path:
    return root / f"agent-{agent}" / f"{role}.jsonl"


def write_agent_data(root: Path, data: Sequence[AgentData], with_critic: bool) -> list[dict]:
    """Write each agent's datasets under `root`; return their sizes for the summary."""
    sizes = []
    for agent in data:
        roles = [("generation", agent.generation)]
        if with_critic:
            roles.append(("critic", agent.critic))
        for role, rows in roles:
            count = write_jsonl(dataset_path(root, agent.agent, role), rows)
            sizes.append({"agent": agent.agent, "role": role, "examples": count})
    return sizes
