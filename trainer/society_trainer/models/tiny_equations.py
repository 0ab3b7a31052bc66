"""`builtin:tiny-equations`: a tiny Llama taught the tiny-equations task (tasks/equations.py) in all
three of the debate's roles, so that `make demo` shows the whole method on a CPU: 3 agents, 2
rounds, a summariser, critics that check the others' answers by substitution, and a debate that
beats the majority vote (docs/method.md, docs/research/tiny-equations/).

What it is, exactly (docs/method.md restates it):
- a Llama of hidden size 128, 3 layers, 4 heads, MLP 512, tied embeddings (0.87M parameters),
  seed 0, with tokenizer_numbers.py's tokenizer (numbers 0..299 and the formats' key phrases one
  token each; 674 tokens);
- trained only on problems of the task's "builtin" half (equations.half), which no Society ever
  draws, with the loss on the taught tokens only, on rows of six kinds (`Rows`): round-1
  answers, summaries of 1-3 made-up round-1 answers, critic exchanges (the round-1 conversation,
  then the critic prompt with a summary of 1-3 others, answered by equations.critic_response),
  multiplication-and-sum drills (`7*5 is 35+12 is 47.`), and verdict drills in the check line's
  own words (`is 47, c=61: 4 6 differ, 7 1 differ, no.`), one kind per step;
- by a plain seeded torch loop on one thread (set inside; no Trainer, no data workers), in five
  stages (`STAGES`), each starting from the previous one's weights with a fresh optimizer, as the
  research chain O-s600 -> D-s300 -> D2 -> D4 -> D6 ran them. The first stage teaches an older
  check line (`..., c=61, off 14, no.`: "format 4") that the later ones replace with the
  digit-by-digit comparison ("format 6"); it only taught the copies and the tables, which both
  formats share. Two stages stop early in a longer cosine schedule, as the research took their
  checkpoints.

About 850 s of one CPU core. On the same CPU vendor, vector ISA and software the build is
bit-identical (it does not depend on the thread count or load); another CPU or torch version
gives other bits, so the package ships the weights this recipe built
(weights/tiny-equations/, builtin.py), and
`python -m society_trainer.models.build tiny-equations DIR` rebuilds them.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..tasks import equations as eq
from ..tasks.base import others_text

log = logging.getLogger(__name__)

SIZES = {"hidden_size": 128, "layers": 3, "heads": 4, "intermediate_size": 512}
MAX_POSITIONS = 512
TOKENS_PER_STEP = 3000  # rows of one kind are added until a step holds this many tokens
P_RIGHT = 0.35  # a made-up round-1 answer is right this often
P_NEAR = 0.6  # a wrong one is within 2 of the answer this often (else uniform in 0..9)
KINDS = ("gen", "summ", "critic", "drill", "vdrill")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@dataclass(frozen=True)
class Stage:
    name: str  # the research checkpoint it reproduces
    steps: int  # the cosine schedule's length
    stop: int  # steps actually run (the research took a checkpoint before the schedule ended)
    learning_rate: float
    warmup: int
    seed: int  # of the row stream
    mix: tuple[float, ...]  # weight of each of KINDS
    check_format: int  # 4: `c=61, off 14, no.`; 6: equations.check_line
    balanced: bool = False  # format 6's verdict drills with D6's pair mix


STAGES = (
    Stage("O-s600", 1200, 600, 1.5e-3, 30, 1_000_003, (0.12, 0.1, 0.45, 0.18, 0.15), 4),
    Stage("D-s300", 500, 300, 1.5e-3, 10, 9_000_003, (0.05, 0.05, 0.4, 0.15, 0.35), 6),
    Stage("D2", 400, 400, 1e-3, 10, 10_000_003, (0.02, 0.03, 0.4, 0.1, 0.45), 6),
    Stage("D4", 250, 250, 7e-4, 10, 12_000_003, (0.02, 0.03, 0.45, 0.1, 0.4), 6),
    Stage("D6", 250, 250, 7e-4, 10, 14_000_003, (0.02, 0.03, 0.35, 0.1, 0.5), 6, balanced=True),
)


def _gap_check_line(a: int, b: int, c: int, label: str, k: int) -> tuple[str, bool]:
    """The first stage's check line ("format 4"): the gap c-s, then the verdict."""
    s = a * k + b
    verdict = "yes." if s == c else "no."
    return f"{label}{k}. {a}*{k} is {a * k}+{b} is {s}, c={c}, off {c - s}, {verdict}", s == c


def chat(turns: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(role, content, teach) turns -> (text, taught "y"/"n") pieces in the chat template's
    ChatML. teach: "all", "none", or "q" (a critic prompt: all but the summary, whose numbers the
    model cannot know)."""
    pieces: list[tuple[str, str]] = []
    for i, (role, content, teach) in enumerate(turns):
        last = i == len(turns) - 1
        pieces.append((f"{IM_START}{role}\n", "y"))
        if teach == "q":
            head, _, rest = content.partition("\nOne says ")
            pieces.append((head + "\n", "y"))
            summary, _, tail = ("One says " + rest).partition("\nCheck.")
            pieces.append((summary, "n"))
            pieces.append(("\nCheck." + tail, "y"))
        else:
            pieces.append((content, "y" if teach == "all" else "n"))
        pieces.append((IM_END, "y" if last or teach != "none" else "n"))
        if not last:
            pieces.append(("\n", "y"))
    return pieces


class Rows:
    """The training rows of one stage, all drawn from one seeded stream, as (text, taught)
    pieces. Problems come from the task's "builtin" half only."""

    def __init__(self, seed: int, check_format: int = 6, balanced: bool = False):
        self.rng = random.Random(seed)
        self.pool = eq.space("builtin")
        self.check_format = check_format
        self.balanced = balanced

    def guess(self, x: int) -> int:
        """A made-up round-1 answer: right with P_RIGHT, else mostly a near miss."""
        rng = self.rng
        if rng.random() < P_RIGHT:
            return x
        if rng.random() < P_NEAR:
            k = x + rng.choice([-2, -1, 1, 2])
        else:
            k = rng.choice(list(eq.X_RANGE))
        return k if k >= 0 and k != x else x + rng.choice([1, 2, 3])

    def row(self, kind: str) -> list[tuple[str, str]]:
        if kind == "drill":
            return self._drill()
        if kind == "vdrill":
            return self._verdict_drill()
        rng = self.rng
        a, b, x = rng.choice(self.pool)
        question = eq.question(a, b, x)
        if kind == "gen":
            return chat([("user", question, "none"), ("assistant", f"{x}", "all")])
        n_others = rng.choices((1, 2, 3), weights=(0.1, 0.8, 0.1))[0]
        others = [eq.generation_response(self.guess(x)) for _ in range(n_others)]
        if kind == "summ":
            prompt = eq.PROMPTS.summarizer.format(question=question, responses=others_text(others))
            return chat(
                [("user", prompt, "none"), ("assistant", eq.summary_response(others), "all")]
            )
        own = eq.generation_response(self.guess(x))
        prompt = eq.PROMPTS.critic.format(
            question=question, own_answer=own, others=eq.summary_response(others)
        )
        check = _gap_check_line if self.check_format == 4 else eq.check_line
        answer = eq.critic_response(
            a, b, x, eq.last_int(own), [eq.last_int(o) for o in others], check
        )
        return chat(
            [
                ("user", question, "none"),
                ("assistant", own, "none"),
                ("user", prompt, "q"),
                ("assistant", answer, "all"),
            ]
        )

    def _drill(self) -> list[tuple[str, str]]:
        """4-6 lines of the check's arithmetic: `7*5 is 35+12 is 47.`"""
        rng = self.rng
        parts = []
        for _ in range(rng.randint(4, 6)):
            a, k, b = rng.choice(eq.A_RANGE), rng.randint(0, 12), rng.choice(eq.B_RANGE)
            parts += [(f"{a}*{k} is ", "n"), (f"{a * k}+", "y"), (f"{b}", "n")]
            parts += [(f" is {a * k + b}.\n", "y")]
        return parts

    def _verdict_drill(self) -> list[tuple[str, str]]:
        """8-12 verdicts in the check line's own words, after `is s, c=c` (not taught)."""
        rng = self.rng
        parts = []
        for _ in range(rng.randint(8, 12)):
            c = rng.randint(0, 140)
            u = rng.random()
            if self.check_format == 6 and self.balanced:
                # D6's mix: given "tens same", the ones differ more often than not (a model
                # taught mostly equal pairs learns "tens same -> copy s's ones digit as c's"):
                # equal 25%, tens same and ones differ 35%, tens differ and ones same 15%,
                # random 25%
                if u < 0.25:
                    s = c
                elif u < 0.6:
                    s = 10 * (c // 10) + rng.choice([d for d in range(10) if d != c % 10])
                elif u < 0.75:
                    s = c + rng.choice([-30, -20, -10, 10, 20, 30])
                else:
                    s = rng.randint(0, 140)
                s = min(max(s, 0), 160)
            elif self.check_format == 6:
                # equal 40%, ones differ 25%, tens differ only 15%, random 20%
                if u < 0.4:
                    s = c
                elif u < 0.65:
                    s = c + rng.choice([-1, 1]) * rng.randint(1, 9)
                elif u < 0.8:
                    s = c + rng.choice([-30, -20, -10, 10, 20, 30])
                else:
                    s = rng.randint(0, 140)
                s = min(max(s, 0), 160)
            elif u < 0.5:
                s = c
            else:  # unequal as in real lines (a multiple of a) or a small random gap
                while True:
                    multiple = rng.choice(eq.A_RANGE) * rng.randint(1, 3)
                    gap = rng.choice([multiple, rng.randint(1, 20)])
                    s = c + gap * rng.choice([-1, 1])
                    if 0 <= s <= 160:
                        break
            parts += [(f" is {s}, c=", "n"), (f"{c}", "n")]
            if self.check_format == 6:
                parts += [(eq.digits_verdict(s, c) + "\n", "y")]
            else:
                parts += [(f", off {c - s}, " + ("yes." if s == c else "no.") + "\n", "y")]
        return parts


def encode(tokenizer, pieces: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 where the piece a token starts in is not taught)."""
    text = "".join(t for t, _ in pieces)
    taught: list[bool] = []
    for piece, flag in pieces:
        taught += [flag == "y"] * len(piece)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    offsets = encoded["offset_mapping"]
    labels = [i if taught[start] else -100 for i, (start, _) in zip(ids, offsets, strict=True)]
    return ids, labels


def state_hash(model) -> str:
    """The first 16 hex digits of the sha256 of the weights, name by name (the research logs')."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def train_stage(model, tokenizer, stage: Stage) -> None:
    """One stage of the recipe on `model`, in place: AdamW (betas 0.9/0.98, no weight decay),
    linear warmup then cosine to a tenth of the rate, gradients clipped at 1."""
    import torch

    rows = Rows(stage.seed, stage.check_format, stage.balanced)
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    other = [p for _, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.0}, {"params": other, "weight_decay": 0.0}],
        lr=stage.learning_rate,
        betas=(0.9, 0.98),
    )

    def rate(step: int) -> float:
        if step < stage.warmup:
            return stage.learning_rate * (step + 1) / stage.warmup
        progress = (step - stage.warmup) / max(1, stage.steps - stage.warmup)
        return stage.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    pad = tokenizer.pad_token_id
    started = time.process_time()
    for step in range(stage.stop):
        kind = rows.rng.choices(KINDS, weights=stage.mix)[0]
        batch = []
        used = 0
        while used < TOKENS_PER_STEP:
            ids, labels = encode(tokenizer, rows.row(kind))
            batch.append((ids, labels))
            used += len(ids)
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
        label_ids = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        for group in optimizer.param_groups:
            group["lr"] = rate(step)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0:
            log.info(
                "%s step %d/%d %s loss %.3f (%.0f s CPU)",
                stage.name,
                step + 1,
                stage.stop,
                kind,
                loss.item(),
                time.process_time() - started,
            )


def build(path: Path, stages: tuple[Stage, ...] = STAGES) -> Path:
    """Write builtin:tiny-equations to `path` (which must not exist yet): the stages in order,
    each saved and loaded again before the next (as the research chain ran them)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from .tokenizer_numbers import build_tokenizer

    torch.set_num_threads(1)  # the same bits at any thread count or load on one CPU
    tokenizer = build_tokenizer(max_length=MAX_POSITIONS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=SIZES["hidden_size"],
        intermediate_size=SIZES["intermediate_size"],
        num_hidden_layers=SIZES["layers"],
        num_attention_heads=SIZES["heads"],
        num_key_value_heads=SIZES["heads"],
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        previous: Path | None = None
        for number, stage in enumerate(stages):
            if previous is not None:
                model = LlamaForCausalLM.from_pretrained(previous)
            model.generation_config = generation_config
            train_stage(model, tokenizer, stage)
            last = number == len(stages) - 1
            out = path if last else Path(scratch) / stage.name
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            log.info("stage %s: weights %s", stage.name, state_hash(model))
            previous = out
    return path
