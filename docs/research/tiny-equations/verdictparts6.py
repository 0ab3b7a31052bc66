"""v3 format 6: where does the digit comparison fail? Teacher-forced P(right token) at each part
of `c=61: 4 6 differ, 7 1 differ, no.` on society-half critic rows, split by fitting lines.
usage: python verdictparts6.py MODEL [--rows 30]"""
import argparse, json, re, sys
from collections import defaultdict
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe3
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
ap = argparse.ArgumentParser(); ap.add_argument("model"); ap.add_argument("--rows", type=int, default=30)
args = ap.parse_args()
recipe3.T.CHECK_FORMAT = 6
tok = AutoTokenizer.from_pretrained(args.model); m = AutoModelForCausalLM.from_pretrained(args.model).eval()
r = recipe3.Rows(999, 0.35, 0.6); r.pool = recipe3.T.space("society")
NAMES = ["tens_s", "tens_c", "word1", "ones_s", "ones_c", "word2", "verdict"]
stats = defaultdict(list)
for _ in range(args.rows):
    text = "".join(t for t, _ in r.row("critic"))
    start = text.rfind("assistant\n")
    with torch.no_grad():
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]; offs = [o[0] for o in enc["offset_mapping"]]
        p = torch.softmax(m(torch.tensor([ids])).logits[0], -1)
    for mt in re.finditer(r"c=(\d+): (\d+) (\d+) (\w+), (\d+) (\d+) (\w+)(, \w+\.)", text[start:]):
        fits = mt.group(8) == ", yes."
        for name, g in zip(NAMES, range(2, 9)):
            pos = start + mt.start(g)
            j = offs.index(pos)
            stats[f"{name}{'_fit' if fits else '_other'}"].append(p[j - 1, ids[j]].item())
print(json.dumps({k: round(sum(v) / len(v), 3) for k, v in sorted(stats.items())}))
