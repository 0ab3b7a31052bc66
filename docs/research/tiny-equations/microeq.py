"""v3 micro-test: can the 0.87M model learn a verdict in isolation, from dense drill rows only?
kinds: eq   `47, c=61, no.` / `61, c=61, yes.`  (equality of two nearby tokens, a binary output)
       off  `47, c=61, off 14.` / `61, c=61, off 0.` (a subtraction table; the verdict is then a
            function of one token: 0 means fits)
Half the pairs equal; the others c = s + d, d in +-(1..20) (near misses dominate), s 0..140.
usage: python microeq.py KIND [--steps 200] [--tps 1500]
"""
import argparse, math, random, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numtok
import torch
torch.set_num_threads(1)
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("kind"); ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--tps", type=int, default=1500); ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--layers", type=int, default=3); ap.add_argument("--out", default="")
args = ap.parse_args()
tok = numtok.build_tokenizer(512)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=args.layers,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  tie_word_embeddings=True)
torch.manual_seed(0)
m = LlamaForCausalLM(cfg)
rng = random.Random(7)

def pair(r):
    if args.kind == "eq10":  # equality of two digits: a 10x10 table, not 141x141
        s = r.randint(0, 9)
        return (s, s) if r.random() < 0.5 else (s, r.choice([d for d in range(10) if d != s]))
    s = r.randint(0, 140)
    if r.random() < 0.5: return s, s
    while True:
        d = r.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20]) * r.choice([-1, 1])
        if 0 <= s + d <= 140: return s, s + d

def item(s, c):
    if args.kind in ("eq", "eq10"):
        return f"{s}, c=", f"{c}", ", yes." if s == c else ", no."
    if args.kind == "soff":
        return f"{s}, c=", f"{c}", f", off {c - s}."
    return f"{s}, c=", f"{c}", f", off {abs(s - c)}."

def row(r):
    text, lab = "", []
    pieces = []
    for _ in range(r.randint(6, 10)):
        a, b, v = item(*pair(r))
        pieces += [(a, 0), (b, 0), (v, 1), ("\n", 0)]
    text = "".join(p for p, _ in pieces)
    flags = []
    for p, f in pieces: flags += [f] * len(p)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [i if flags[s] else -100 for i, (s, _) in zip(ids, enc["offset_mapping"])]
    return ids, labels

yes_id = tok.convert_tokens_to_ids(tok.tokenize(", yes.")[0]) if args.kind in ("eq", "eq10") else None
zero = tok("0", add_special_tokens=False)["input_ids"][0]
def probe():
    r = random.Random(99); pe, pn = [], []
    m.eval()
    with torch.no_grad():
        for _ in range(20):
            ids, lab = row(r)
            p = torch.softmax(m(torch.tensor([ids])).logits[0], -1)
            for i in range(len(ids) - 1):
                if lab[i + 1] == -100: continue
                t = tok.decode([ids[i + 1]])
                if args.kind in ("eq", "eq10"):
                    if t in (", yes.", ", no."):
                        (pe if t == ", yes." else pn).append(p[i, yes_id].item())
                else:
                    if tok.decode([ids[i]]) == " " and tok.decode([ids[i - 1]]).endswith("off"):
                        pass
                    prev = tok.decode(ids[max(0, i - 5):i + 1])
                    if prev.endswith("off ") and t.isdigit():
                        (pe if t == "0" else pn).append(p[i, zero].item())
    m.train()
    return sum(pe) / max(1, len(pe)), sum(pn) / max(1, len(pn)), len(pe), len(pn)

opt = torch.optim.AdamW(m.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
c0 = time.process_time(); run = 0.0
for step in range(args.steps):
    lr = args.lr * min(1, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
    for g in opt.param_groups: g["lr"] = lr
    batch, used = [], 0
    while used < args.tps:
        ids, lab = row(rng); batch.append((ids, lab)); used += len(ids)
    w = max(len(i) for i, _ in batch)
    ids = torch.tensor([i + [tok.pad_token_id] * (w - len(i)) for i, _ in batch])
    labels = torch.tensor([l + [-100] * (w - len(l)) for _, l in batch])
    loss = m(input_ids=ids, labels=labels).loss
    loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
    run += loss.item()
    if (step + 1) % 25 == 0:
        pe, pn, ne, nn = probe()
        print(f"{args.kind} step {step+1} loss {run/25:.3f} P(fit|equal) {pe:.3f} (n={ne}) P(fit|unequal) {pn:.3f} (n={nn}) cpu {time.process_time()-c0:.0f}s", flush=True)
        run = 0.0
if args.out: m.save_pretrained(args.out); tok.save_pretrained(args.out)
