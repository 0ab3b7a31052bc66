"""`builtin:tiny-arithmetic`: a tiny Llama pretrained for a few minutes of CPU on the paper's
arithmetic task with values in 0..9, so that a Society can run the whole method on a laptop or
in CI (examples/tiny.yaml: `task: {name: arithmetic, maxValue: 9}`).

What it is, exactly (docs/method.md restates it):
- the tiny model of tiny_model.py (byte-level tokenizer, ChatML with generation markers) at
  hidden size 128, 3 layers, 4 heads, MLP 512: 0.85M parameters, seed 0;
- taught one way of answering: a worked chain that the arithmetic task's parser reads (the last
  number is the answer), e.g. for 8+6*5+2-9*7:
  "6*5=30, 9*7=63, 8+30=38, 38+2=40, 40-63=-(63-40)=-23.";
- on problems drawn like the task's (a+b*c+d-e*f, values uniform in 0..9) from their own
  random stream (seed 1_000_003), and only among those the task reserves for it
  (tasks.arithmetic.reserved_for_builtin, about half of them), which no Society ever draws: its
  train and eval problems are never ones this model was taught;
- with the loss on answers only, in two phases: packed rows of "a+b*c+d-e*f: chain" lines, some
  led by a round-1 conversation in the task's own prompt; then the debate's conversations: the
  round-1 prompt, and the critic prompt carrying other agents' chains, some of them wrong,
  answered with the right chain.

The paper's range (0..29) is far harder for a model this size: builds three times longer stayed
below 2% accuracy (docs/method.md). Training stops after a fixed number of steps, not at a
target accuracy: the model ends partly able, which is what the method needs to show an effect.
The pretraining is a transformers Trainer run; everything is seeded, so a rebuild on the same
software and CPU gives the same model (bit for bit at 1 or 2 threads; another CPU's vector
kernels give other bits, and possibly a model of another accuracy). So the package ships the
weights this recipe built (builtin.py, docs/method.md), and `python -m
society_trainer.models.build tiny-arithmetic DIR` is how to rebuild them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from ..tasks import get_task
from ..tasks.arithmetic import expression, reserved_for_builtin
from ..tasks.base import others_text

SEED = 1_000_003
MAX_VALUE = 9  # every value in 0..9: spec.task.maxValue 9
SIZES = {"hidden_size": 128, "layers": 3, "heads": 4, "intermediate_size": 512}
PACKED_STEPS = 500  # phase 1: packed rows, some of them led by a round-1 conversation
LED_BY_CONVERSATION = 0.35  # share of the phase 1 rows that are
CHAT_STEPS = 40  # phase 2: the debate's conversations, critic exchanges included
BATCH = 16  # rows per step
PACKED_LENGTH = 256  # tokens per packed row
LEARNING_RATE = 3e-3
WRONG = 0.5  # chance that another agent's chain in a critic example has a mistake


def chain(values: tuple[int, ...]) -> str:
    """The worked answer to a+b*c+d-e*f: both products, then left to right. A difference
    that comes out negative is worked as a positive one (a tiny model learns borrowing, not
    signs, quickly): 260-725=-(725-260)=-465."""
    return _chain_from(values)


def _chain_from(values: tuple[int, ...], slip: int = -1, delta: int = 0) -> str:
    """A chain whose step `slip` (0..4) is off by `delta`, the later steps consistent with it."""
    a, b, c, d, e, f = values
    off = [delta if slip == step else 0 for step in range(5)]
    x, y = b * c + off[0], e * f + off[1]
    s1 = a + x + off[2]
    s2 = s1 + d + off[3]
    if s2 >= y:
        last = f"{s2}-{y}={s2 - y + off[4]}."
    else:
        last = f"{s2}-{y}=-({y}-{s2})=-{y - s2 + off[4]}."
    return f"{b}*{c}={x}, {e}*{f}={y}, {a}+{x}={s1}, {s1}+{d}={s2}, {last}"


class _Examples:
    """The training rows, drawn from one seeded stream: (input_ids, labels) lists, with labels
    -100 wherever the loss does not apply (questions and prompts)."""

    def __init__(self, tokenizer, seed: int = SEED):
        self.tokenizer = tokenizer
        self.rng = random.Random(seed)
        self.task = get_task("arithmetic", MAX_VALUE)

    def values(self) -> tuple[int, ...]:
        """A problem no Society draws: redrawn until it is one the task reserves for this
        model."""
        while True:
            values = tuple(self.rng.randint(0, MAX_VALUE) for _ in range(6))
            if reserved_for_builtin(values):
                return values

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def packed(self) -> tuple[list[int], list[int]]:
        """Some rows start with a round-1 conversation, so the model learns early to find the
        problem far back in the task's prompt; `problem: chain` lines fill the rest."""
        ids: list[int] = []
        labels: list[int] = []
        if self.rng.random() < LED_BY_CONVERSATION:
            ids, labels = self.conversation(critic=False)
        while len(ids) < PACKED_LENGTH:
            values = self.values()
            question = self.encode(f"{expression(values)}: ")
            answer = self.encode(f"{chain(values)}\n")
            ids += question + answer
            labels += [-100] * len(question) + answer
        return ids[:PACKED_LENGTH], labels[:PACKED_LENGTH]

    def noisy(self, values: tuple[int, ...]) -> str:
        if self.rng.random() >= WRONG:
            return chain(values)
        delta = self.rng.choice([d for d in range(-10, 11) if d])
        return _chain_from(values, self.rng.randrange(5), delta)

    def conversation(self, critic: bool = True) -> tuple[list[int], list[int]]:
        """Round 1, or (half the time, with `critic`) a whole critic exchange, in the chat
        template."""
        values = self.values()
        prompts = self.task.prompts
        question = f"What is the result of {expression(values)}?"
        messages = [{"role": "user", "content": prompts.generation.format(question=question)}]
        if critic and self.rng.random() < 0.5:
            others = [self.noisy(values) for _ in range(self.rng.choice([1, 2]))]
            messages += [
                {"role": "assistant", "content": self.noisy(values)},
                {
                    "role": "user",
                    "content": prompts.critic.format(question=question, others=others_text(others)),
                },
            ]
        messages.append({"role": "assistant", "content": chain(values)})
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = rendered["input_ids"], rendered["assistant_masks"]
        # Only the last answer is taught: earlier ones may be wrong on purpose.
        start = max(i for i in range(1, len(ids)) if mask[i] and not mask[i - 1])
        return ids, [t if i >= start and mask[i] else -100 for i, t in enumerate(ids)]

    def rows(self) -> Iterator[dict[str, list[int]]]:
        for _ in range(PACKED_STEPS * BATCH):
            ids, labels = self.packed()
            yield {"input_ids": ids, "labels": labels}
        for _ in range(CHAT_STEPS * BATCH):
            ids, labels = self.conversation()
            yield {"input_ids": ids, "labels": labels}


def _dataset(tokenizer):
    from torch.utils.data import IterableDataset

    class Rows(IterableDataset):
        def __iter__(self):
            return _Examples(tokenizer).rows()

    return Rows()


def _collate(pad_id: int):
    import torch

    def collate(rows: list[dict[str, list[int]]]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, mask = [], [], []
        for row in rows:
            pad = width - len(row["input_ids"])
            ids.append(row["input_ids"] + [pad_id] * pad)
            labels.append(row["labels"] + [-100] * pad)
            mask.append([1] * len(row["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    return collate


def build(path: Path) -> Path:
    """Write builtin:tiny-arithmetic to `path` (which must not exist yet)."""
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from .tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as scratch:
        initial = build_tiny_model(
            Path(scratch) / "init",
            seed=0,
            hidden_size=SIZES["hidden_size"],
            layers=SIZES["layers"],
            heads=SIZES["heads"],
            intermediate_size=SIZES["intermediate_size"],
            max_position_embeddings=2048,
        )
        tokenizer = AutoTokenizer.from_pretrained(initial)
        model = AutoModelForCausalLM.from_pretrained(initial)
        args = TrainingArguments(
            output_dir=str(Path(scratch) / "trainer"),
            max_steps=PACKED_STEPS + CHAT_STEPS,
            per_device_train_batch_size=BATCH,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="cosine",
            warmup_steps=30,
            weight_decay=0.0,
            adam_beta2=0.98,
            max_grad_norm=1.0,
            save_strategy="no",
            logging_steps=100,
            report_to="none",
            use_cpu=True,
            seed=SEED,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_dataset(tokenizer),
            data_collator=_collate(tokenizer.pad_token_id),
        )
        trainer.train()
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path
