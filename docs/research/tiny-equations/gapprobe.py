"""v3: what does a format-4 model predict for the gap c-s on drill lines? (argmax vs truth)
usage: python gapprobe.py MODEL"""
import sys, random
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch; torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1]); m = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
rng = random.Random(5); rows = []
for kind in ("equal", "near", "wide"):
    for _ in range(40):
        c = rng.randint(0, 140)
        s = c if kind == "equal" else (c + rng.choice([-1, 1]) * rng.randint(2, 20) if kind == "near" else rng.randint(0, 140))
        if not 0 <= s <= 160: continue
        text = f" is {s}, c={c}, off "
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad(): lg = m(torch.tensor([ids])).logits[0, -1]
        top = tok.decode([lg.argmax().item()])
        if top == "-":
            with torch.no_grad(): lg2 = m(torch.tensor([ids + [lg.argmax().item()]])).logits[0, -1]
            top = "-" + tok.decode([lg2.argmax().item()])
        rows.append((kind, s, c, c - s, top))
for kind in ("equal", "near", "wide"):
    r = [x for x in rows if x[0] == kind]
    ok = sum(str(x[3]) == x[4] for x in r)
    print(kind, f"exact {ok}/{len(r)}", r[:8])
