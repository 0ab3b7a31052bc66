"""Pretraining recipe for tiny-equations v2 (eqtask2.py formats, numtok.py tokenizer): a plain
seeded torch loop on one thread (set inside), no Trainer, no data workers.

usage: python recipe2.py OUT [--steps N] [--tokens-per-step T] [--lr LR] [--layers L] ...
Row kinds (--mix weights, in this order): gen, summ, critic, drill.
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

sys.path.insert(0, "/work/scratch13/v3/vendor/trainer")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eqtask3 as T  # noqa: E402
import numtok  # noqa: E402

VERDICT_DRILLS = False
VDRILL_WIDE = False
VDRILL_BALANCE = False
KINDS = ("gen", "summ", "critic", "drill", "copy", "vdrill")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def chat(turns: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(role, content, teach) turns -> (text, teach) pieces in the product's ChatML. teach is
    'all', 'none', or 'q' (a critic prompt: teach all but the summary, which holds numbers the
    model cannot know)."""
    pieces: list[tuple[str, str]] = []
    for i, (role, content, teach) in enumerate(turns):
        last = i == len(turns) - 1
        pieces.append((f"{IM_START}{role}\n", "y"))
        if teach == "q":
            head, _, rest = content.partition("\nOne says ")
            pieces.append((head + "\n", "y"))
            summ, _, tail = ("One says " + rest).partition("\nCheck.")
            pieces.append((summ, "n"))
            pieces.append(("\nCheck." + tail, "y"))
        else:
            pieces.append((content, "y" if teach == "all" else "n"))
        pieces.append((IM_END, "y" if last or teach != "none" else "n"))
        if not last:
            pieces.append(("\n", "y"))
    return pieces


class Rows:
    def __init__(self, seed: int, p_right: float, p_near: float):
        self.rng = random.Random(seed)
        self.pool = T.space("builtin")
        self.p_right = p_right
        self.p_near = p_near

    def guess(self, x: int) -> int:
        """A made-up round-1 answer: right with p_right, else mostly a near miss."""
        rng = self.rng
        if rng.random() < self.p_right:
            return x
        if rng.random() < self.p_near:
            k = x + rng.choice([-2, -1, 1, 2])
        else:
            k = rng.choice(list(T.X_RANGE))
        return k if k >= 0 and k != x else x + rng.choice([1, 2, 3])

    def row(self, kind: str) -> list[tuple[str, str]]:
        rng = self.rng
        if kind == "drill" and T.CHECK_FORMAT == 5:
            # v3 rederive: subtraction c-b and division facts, the two steps of the critic
            parts = []
            for _ in range(rng.randint(4, 6)):
                a, k, b = rng.choice(T.A_RANGE), rng.choice(T.X_RANGE), rng.choice(T.B_RANGE)
                c = a * k + b
                if rng.random() < 0.5:
                    parts += [(f"{c}-{b} is ", "n"), (f"{c - b}.\n", "y")]
                else:
                    parts += [(f"{a * k}/{a} is ", "n"), (f"{k}.\n", "y")]
            return parts
        if kind == "drill":
            parts = []
            for _ in range(rng.randint(4, 6)):
                a, k, b = rng.choice(T.A_RANGE), rng.randint(0, 12), rng.choice(T.B_RANGE)
                parts += [(f"{a}*{k} is ", "n"), (f"{a * k}+", "y"), (f"{b}", "n")]
                if not VERDICT_DRILLS:
                    parts += [(f" is {a * k + b}.\n", "y")]
                    continue
                # v2.1: the verdict too, right half the time, else a near or random c.
                s = a * k + b
                c = s if rng.random() < 0.5 else max(0, s + rng.choice([-3, -2, -1, 1, 2, 3, 10]))
                parts += [(f" is {s}, c=", "y"), (f"{c}", "n")]
                parts += [(", yes.\n" if c == s else ", no.\n", "y")]
            return parts
        if kind == "vdrill":
            # v3: dense verdict drill in the check line's own words, half the pairs equal; the
            # unequal ones as in real lines (|s-c| = a*|k-x|) or small random gaps.
            parts = []
            for _ in range(rng.randint(8, 12)):
                c = rng.randint(0, 140)
                u = rng.random()
                if T.CHECK_FORMAT == 6 and VDRILL_BALANCE:
                    # v3 D6: given "tens same", ones differ MORE often than not (D4 learnt the
                    # shortcut "tens same -> copy s's ones digit as c's"): equal 25%, tens same
                    # and ones differ 35%, tens differ and ones same 15%, random 25%
                    if u < 0.25:
                        s = c
                    elif u < 0.6:
                        s = 10 * (c // 10) + rng.choice([d for d in range(10) if d != c % 10])
                    elif u < 0.75:
                        s = c + rng.choice([-30, -20, -10, 10, 20, 30])
                    else:
                        s = rng.randint(0, 140)
                    s = min(max(s, 0), 160)
                elif T.CHECK_FORMAT == 6:
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
                elif u < (0.35 if VDRILL_WIDE else 0.5):
                    s = c
                elif VDRILL_WIDE and u < 0.75:
                    # v3 O2: independent pairs, so the gap c-s correlates with c and with s
                    # alone (a first-order signal, as c-b has in the rederive steps)
                    s = rng.randint(0, 140)
                else:
                    while True:
                        d = rng.choice([rng.choice(T.A_RANGE) * rng.randint(1, 3), rng.randint(1, 20)])
                        s = c + d * rng.choice([-1, 1])
                        if 0 <= s <= 160:
                            break
                parts += [(f" is {s}, c=", "n"), (f"{c}", "n")]
                if T.CHECK_FORMAT == 6:
                    parts += [(T.digits_verdict(s, c) + "\n", "y")]
                elif T.CHECK_FORMAT == 4:
                    parts += [(f", off {T.OFF(c, s)}, " + ("yes." if s == c else "no.") + "\n", "y")]
                else:
                    parts += [(", yes.\n" if s == c else ", no.\n", "y")]
            return parts
        if kind == "copy":
            # random numbers, then the same again: only a GENERAL induction head (match any
            # token, copy its successor) lowers the loss on the repeat; the verdict needs one.
            seq = " ".join(str(rng.randint(0, 150)) for _ in range(rng.randint(6, 14)))
            return [(seq + "\n", "n"), (seq + "\n", "y")]
        a, b, x = rng.choice(self.pool)
        q = T.question(a, b, x)
        if kind == "gen":
            return chat([("user", q, "none"), ("assistant", T.generation_response(x), "all")])
        n_others = rng.choices((1, 2, 3), weights=(0.1, 0.8, 0.1))[0]
        others = [T.generation_response(self.guess(x)) for _ in range(n_others)]
        if kind == "summ":
            prompt = T.PROMPTS.summarizer.format(question=q, responses=T.others_text(others))
            return chat([("user", prompt, "none"), ("assistant", T.summary_response(others), "all")])
        own = T.generation_response(self.guess(x))
        prompt = T.PROMPTS.critic.format(
            question=q, own_answer=own, others=T.summary_response(others)
        )
        answer = T.critic_response(a, b, x, T.last_int(own), [T.last_int(o) for o in others])
        return chat(
            [
                ("user", q, "none"),
                ("assistant", own, "none"),
                ("user", prompt, "q"),
                ("assistant", answer, "all"),
            ]
        )


def encode(tok, pieces: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    text = "".join(t for t, _ in pieces)
    taught = []
    for t, flag in pieces:
        taught += [flag == "y"] * len(t)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [i if taught[s] else -100 for i, (s, _) in zip(ids, enc["offset_mapping"], strict=True)]
    return ids, labels


def state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--tokens-per-step", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1_000_003)
    ap.add_argument("--mix", default="0.2,0.15,0.5,0.15")
    ap.add_argument("--p-right", type=float, default=0.35)
    ap.add_argument("--p-near", type=float, default=0.6)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--save-at", default="")
    ap.add_argument("--init", default="")
    ap.add_argument("--check-format", type=int, default=3)
    ap.add_argument("--verdict-drills", action="store_true")
    ap.add_argument("--abs-off", action="store_true", help="format 4 with |c-s| (default c-s)")
    ap.add_argument("--vdrill-balance", action="store_true", help="format 6: D6's pair mix")
    ap.add_argument("--vdrill-wide", action="store_true", help="40%% of drill pairs independent")
    args = ap.parse_args()

    T.CHECK_FORMAT = args.check_format
    T.SIGNED = not args.abs_off
    global VDRILL_WIDE
    VDRILL_WIDE = args.vdrill_wide
    global VDRILL_BALANCE
    VDRILL_BALANCE = args.vdrill_balance
    global VERDICT_DRILLS
    VERDICT_DRILLS = args.verdict_drills
    import torch

    torch.set_num_threads(1)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = numtok.build_tokenizer(max_length=512)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=args.mlp,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if args.init:
        model = LlamaForCausalLM.from_pretrained(args.init)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    n_params = sum(p.numel() for p in model.parameters())
    mix = [float(v) for v in args.mix.split(",")]
    mix += [0.0] * (len(KINDS) - len(mix))  # older 4-kind mixes: no copy rows
    rows = Rows(args.seed, args.p_right, args.p_near)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.wd}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        prog = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))

    save_at = {int(s) for s in args.save_at.split(",") if s}
    model.train()
    t0, c0 = time.time(), time.process_time()
    running = {k: [0.0, 0] for k in KINDS}
    tokens = 0
    print(f"params {n_params} vocab {len(tok)} threads {torch.get_num_threads()}", flush=True)
    for step in range(args.steps):
        kind = rows.rng.choices(KINDS, weights=mix)[0]
        batch = []
        used = 0
        while used < args.tokens_per_step:
            ids, lab = encode(tok, rows.row(kind))
            batch.append((ids, lab))
            used += len(ids)
        tokens += used
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
        running[kind][0] += loss.item()
        running[kind][1] += 1
        if (step + 1) % args.log_every == 0:
            losses = " ".join(
                f"{k} {v[0] / v[1]:.3f}" for k, v in running.items() if v[1]
            )
            print(
                f"step {step + 1} {losses} | {time.time() - t0:.0f}s wall "
                f"{time.process_time() - c0:.0f}s cpu {tokens} tok",
                flush=True,
            )
            running = {k: [0.0, 0] for k in KINDS}
        if step + 1 in save_at:
            save(model, tok, Path(f"{args.out}-s{step + 1}"), args, t0, c0, n_params)
    save(model, tok, Path(args.out), args, t0, c0, n_params)


def save(model, tok, out: Path, args, t0: float, c0: float, n_params: int) -> None:
    model.save_pretrained(out)
    tok.save_pretrained(out)
    info = {
        "hash": state_hash(model),
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "params": n_params,
        "args": vars(args),
    }
    (out / "build.json").write_text(json.dumps(info, indent=1))
    print(f"saved {out} hash {info['hash']} cpu {info['cpu_s']}s", flush=True)


if __name__ == "__main__":
    main()
