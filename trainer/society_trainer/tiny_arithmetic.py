"""`builtin:tiny-arithmetic`: a tiny Llama pretrained for a few minutes of CPU on the paper's
arithmetic task, so that a Society can run the whole method on a laptop or in CI.

What it is, exactly (docs/method.md restates it):
- the tiny model of tiny_model.py (byte-level tokenizer, ChatML with generation markers) at
  hidden size 128, 3 layers, 4 heads, MLP 512: about 0.6M parameters, seed 0;
- taught one way of answering: a worked chain that the arithmetic task's parser reads (the last
  number is the answer), e.g. for 8+16*15+12-29*25:
  "16*15=240, 29*25=725, 8+240=248, 248+12=260, 260-725=-465.";
- on problems drawn like the task's (a+b*c+d-e*f, values uniform in 0..29) but from their own
  random stream (seed 1_000_003), so they are not the train or eval problems of any Society;
- in two phases with the loss on answers only: first packed "a+b*c+d-e*f: chain" lines (cheap,
  most of the steps), then the debate's own conversations: the task's round-1 prompt, and the
  critic prompt carrying other agents' chains, some of them wrong, answered with the right chain.

Training stops after a fixed number of steps, not at a target accuracy: the model ends partly
able (it gets some problems right, and its mistakes differ between samples), which is what the
method needs to show an effect. The pretraining is a transformers Trainer run; everything is
seeded, so a rebuild on the same software gives the same model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from .debate import others_text
from .tasks import get_task

SEED = 1_000_003
MAX_VALUE = 29  # the paper's range of every value
SIZES = {"hidden_size": 128, "layers": 3, "heads": 4, "intermediate_size": 512}
PACKED_STEPS = 1500  # phase 1: packed expression: chain lines
CHAT_STEPS = 150  # phase 2: the debate's prompts
BATCH = 16
PACKED_LENGTH = 128  # tokens per packed row
LEARNING_RATE = 3e-3
WRONG = 0.5  # chance that another agent's chain in a critic example has a mistake


def chain(values: tuple[int, ...]) -> str:
    """The worked answer to a+b*c+d-e*f: both products, then left to right."""
    a, b, c, d, e, f = values
    return _chain_from(values, b * c, e * f)


def _chain_from(values: tuple[int, ...], x: int, y: int, slip: int = -1, delta: int = 0) -> str:
    """A chain whose step `slip` (0..4) is off by `delta`, the later steps consistent with it."""
    a, b, c, d, e, f = values
    x += delta if slip == 0 else 0
    y += delta if slip == 1 else 0
    s1 = a + x + (delta if slip == 2 else 0)
    s2 = s1 + d + (delta if slip == 3 else 0)
    r = s2 - y + (delta if slip == 4 else 0)
    return f"{b}*{c}={x}, {e}*{f}={y}, {a}+{x}={s1}, {s1}+{d}={s2}, {s2}-{y}={r}."


def expression(values: tuple[int, ...]) -> str:
    a, b, c, d, e, f = values
    return f"{a}+{b}*{c}+{d}-{e}*{f}"


class _Examples:
    """The training rows, drawn from one seeded stream: (input_ids, labels) lists, with labels
    -100 wherever the loss does not apply (questions and prompts)."""

    def __init__(self, tokenizer, seed: int = SEED):
        self.tokenizer = tokenizer
        self.rng = random.Random(seed)
        self.task = get_task("arithmetic")

    def values(self) -> tuple[int, ...]:
        return tuple(self.rng.randint(0, MAX_VALUE) for _ in range(6))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def packed(self) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        labels: list[int] = []
        while len(ids) < PACKED_LENGTH:
            values = self.values()
            question = self.encode(f"{expression(values)}: ")
            answer = self.encode(f"{chain(values)}\n")
            ids += question + answer
            labels += [-100] * len(question) + answer
        return ids[:PACKED_LENGTH], labels[:PACKED_LENGTH]

    def noisy(self, values: tuple[int, ...]) -> str:
        a, b, c, d, e, f = values
        if self.rng.random() >= WRONG:
            return chain(values)
        delta = self.rng.choice([d for d in range(-10, 11) if d])
        return _chain_from(values, b * c, e * f, self.rng.randrange(5), delta)

    def conversation(self) -> tuple[list[int], list[int]]:
        """Round 1 (half the time) or a whole critic exchange, in the chat template."""
        values = self.values()
        prompts = self.task.prompts
        question = f"What is the result of {expression(values)}?"
        messages = [{"role": "user", "content": prompts.generation.format(question=question)}]
        if self.rng.random() < 0.5:
            others = [self.noisy(values) for _ in range(self.rng.choice([1, 2]))]
            messages += [
                {"role": "assistant", "content": self.noisy(values)},
                {"role": "user", "content": prompts.critic.format(others=others_text(others))},
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
        for step in range(PACKED_STEPS + CHAT_STEPS):
            for _ in range(BATCH):
                ids, labels = self.packed() if step < PACKED_STEPS else self.conversation()
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
