"""Prototype pretraining recipe for a tiny model that answers, summarises and criticises on the
tiny-equations task (eqtask.py). A plain, seeded torch loop (no Trainer, no data workers), on a
fixed number of threads set inside the build.

usage: python recipe.py OUT [--steps N] [--batch B] [--threads T] [--lr LR] ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, "/work/scratch13/vendor/trainer")
sys.path.insert(0, "/work/scratch13")

import eqtask as T  # noqa: E402

P_RIGHT = 0.35  # chance that a made-up round-1 answer in a critic/summary row is right


def noisy_x(rng: random.Random, x: int) -> int:
    if rng.random() < P_RIGHT:
        return x
    r = rng.random()
    if r < 0.5:
        k = x + rng.choice([-2, -1, 1, 2])
    elif r < 0.75:
        k = x + rng.choice([-5, -4, -3, 3, 4, 5])
    else:
        k = rng.choice([v for v in T.X_RANGE if v != x])
    return k if k >= 0 and k != x else x + rng.choice([1, 2, 3])


def chatml(messages: list[dict]) -> tuple[str, str]:
    """(everything before the last assistant answer, incl. its header; that answer + im_end)."""
    text = ""
    for m in messages[:-1]:
        text += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    text += "<|im_start|>assistant\n"
    return text, messages[-1]["content"] + "<|im_end|>"


def chatml_pieces(messages: list[dict]) -> list[tuple[str, bool]]:
    """(text, taught) pieces: user turns and the last answer are taught; earlier assistant
    answers (made up, often wrong on purpose) are not."""
    pieces = []
    for i, m in enumerate(messages):
        last = i == len(messages) - 1
        pieces.append((f"<|im_start|>{m['role']}\n", True))
        taught = m["role"] != "assistant" or last
        pieces.append((m["content"] + "<|im_end|>", taught))
        if not last:
            pieces.append(("\n", True))
    return pieces


class Rows:
    def __init__(self, seed: int, mix: tuple[float, float, float], p_summary: float = 0.75):
        self.rng = random.Random(seed)
        self.pool = T.space("builtin")
        self.mix = mix
        self.p_summary = p_summary

    def problem(self):
        return self.rng.choice(self.pool)

    def kind(self) -> str:
        kinds = ("gen", "summ", "critic", "copy")
        return self.rng.choices(kinds[: len(self.mix)], weights=self.mix)[0]

    def copy_row(self) -> list[dict]:
        """A pure copying exercise: random equation-like text, repeated. Only attention that
        looks back and copies lowers its loss, which is what the summariser and critic need."""
        rng = self.rng
        parts = []
        for _ in range(rng.randint(2, 5)):
            a, b, x = rng.randint(2, 9), rng.randint(0, 59), rng.randint(0, 19)
            parts.append(rng.choice([f"{a}*{x}+{b}={a * x + b}", f"x={x}.", f"Agent {x}: x={b}."]))
        text = " ".join(parts)
        return [
            {"role": "user", "content": f"Copy: {text}"},
            {"role": "assistant", "content": text},
        ]

    def row(self, kind: str) -> list[dict]:
        if kind == "copy":
            return self.copy_row()
        rng = self.rng
        a, b, x = self.problem()
        q = T.question(a, b, x)
        gen_prompt = T.PROMPTS.generation.format(question=q)
        if kind == "gen":
            return [
                {"role": "user", "content": gen_prompt},
                {"role": "assistant", "content": T.generation_response(x)},
            ]
        n_others = rng.choices((1, 2, 3), weights=(0.15, 0.7, 0.15))[0]
        others = [T.generation_response(noisy_x(rng, x)) for _ in range(n_others)]
        if kind == "summ":
            return [
                {
                    "role": "user",
                    "content": T.PROMPTS.summarizer.format(
                        question=q, responses=T.others_text(others)
                    ),
                },
                {"role": "assistant", "content": T.summary_response(others)},
            ]
        own = T.generation_response(noisy_x(rng, x))
        shown = (
            T.summary_response(others) if rng.random() < self.p_summary else T.others_text(others)
        )
        cands = [T.last_int(own)] + [T.last_int(o) for o in others]
        return [
            {"role": "user", "content": gen_prompt},
            {"role": "assistant", "content": own},
            {
                "role": "user",
                "content": T.PROMPTS.critic.format(question=q, own_answer=own, others=shown),
            },
            {"role": "assistant", "content": T.critic_response(a, b, x, cands)},
        ]


LOSS_ALL = False  # loss on every token (prompts too), not only on the last answer


def encode(tok, messages):
    if LOSS_ALL:
        ids, labels = [], []
        for text, taught in chatml_pieces(messages):
            t = tok(text, add_special_tokens=False)["input_ids"]
            ids += t
            labels += t if taught else [-100] * len(t)
        return ids, labels
    prefix, answer = chatml(messages)
    p = tok(prefix, add_special_tokens=False)["input_ids"]
    q = tok(answer, add_special_tokens=False)["input_ids"]
    return p + q, [-100] * len(p) + q


def state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1_000_003)
    ap.add_argument("--mix", default="0.3,0.15,0.55")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--save-at", default="", help="comma-separated extra steps to save at")
    ap.add_argument("--init", default="", help="continue from this model directory")
    ap.add_argument("--loss", choices=("all", "answer"), default="answer")
    args = ap.parse_args()
    global LOSS_ALL
    LOSS_ALL = args.loss == "all"

    import torch

    torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from society_trainer.tiny_model import build_tokenizer

    dtype = getattr(torch, args.dtype)
    tok = build_tokenizer(max_length=1024)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=args.mlp,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(dtype)
    if args.init:
        model = LlamaForCausalLM.from_pretrained(args.init).to(dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    n_params = sum(p.numel() for p in model.parameters())
    mix = tuple(float(v) for v in args.mix.split(","))
    rows = Rows(args.seed, mix)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        prog = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * prog))

    save_at = {int(s) for s in args.save_at.split(",") if s}
    model.train()
    t0 = time.time()
    c0 = time.process_time()
    running = 0.0
    tokens = 0
    print(f"params {n_params} threads {torch.get_num_threads()}", flush=True)
    for step in range(args.steps):
        kind = rows.kind()
        size = args.batch if kind == "critic" else 2 * args.batch
        batch = [encode(tok, rows.row(kind)) for _ in range(size)]
        tokens += sum(len(i) for i, _ in batch)
        width = max(len(i) for i, _ in batch)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running += loss.item()
        if (step + 1) % args.log_every == 0:
            print(
                f"step {step + 1} loss {running / args.log_every:.4f} "
                f"{time.time() - t0:.0f}s wall {time.process_time() - c0:.0f}s cpu {tokens} tok",
                flush=True,
            )
            running = 0.0
        if step + 1 in save_at:
            save(model, tok, Path(f"{args.out}-s{step + 1}"), args, time.time() - t0, n_params)
    save(model, tok, Path(args.out), args, time.time() - t0, n_params)


def save(model, tok, out: Path, args, seconds: float, n_params: int) -> None:
    model.save_pretrained(out)
    tok.save_pretrained(out)
    info = {
        "hash": state_hash(model),
        "seconds": round(seconds, 1),
        "params": n_params,
        "args": vars(args),
    }
    (out / "build.json").write_text(json.dumps(info, indent=1))
    print(f"saved {out} hash {info['hash']} {seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
