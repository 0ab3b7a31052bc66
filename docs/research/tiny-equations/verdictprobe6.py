"""v3 verdict gate for format 6 (`... is 47, c=61: 4 6 differ, 7 1 differ, no.`): on critic rows
of the SOCIETY half, teacher-force each check line up to `c=61` (so s is right), let the model
write the digit comparison greedily, and take P(", yes.") at its verdict: P(fits). Split by
whether the line fits. Also the teacher-forced P(first token of the right same/differ word).
usage: python verdictprobe6.py MODEL [--rows 40]   (need P(fits) > 0.9 on fitting, < 0.1 on others)"""
import argparse, json, re, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe3
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
ap = argparse.ArgumentParser(); ap.add_argument("model"); ap.add_argument("--rows", type=int, default=40)
ap.add_argument("--show", type=int, default=6)
args = ap.parse_args()
SHOW = args.show
recipe3.T.CHECK_FORMAT = 6
tok = AutoTokenizer.from_pretrained(args.model); m = AutoModelForCausalLM.from_pretrained(args.model).eval()
r = recipe3.Rows(999, 0.35, 0.6); r.pool = recipe3.T.space("society")
yes = tok(", yes.", add_special_tokens=False)["input_ids"][0]
no = tok(", no.", add_special_tokens=False)["input_ids"][0]
fit, other, exact = [], [], []
for _ in range(args.rows):
    text = "".join(t for t, _ in r.row("critic"))
    start = text.rfind("assistant\n")
    for mt in re.finditer(r" is (\d+), c=(\d+)", text[start:]):
        s, c = int(mt.group(1)), int(mt.group(2))
        prefix = text[: start + mt.end()]
        ids = tok(prefix, add_special_tokens=False)["input_ids"]
        gen = []
        with torch.no_grad():
            for _ in range(20):
                p = torch.softmax(m(torch.tensor([ids + gen])).logits[0, -1], -1)
                nxt = int(p.argmax())
                if nxt in (yes, no):
                    pyes = (p[yes] / (p[yes] + p[no])).item()
                    break
                gen.append(nxt)
            else:
                pyes = 0.0
        (fit if s == c else other).append(pyes)
        want = recipe3.T.digits_verdict(s, c)
        got = tok.decode(gen) + (", yes." if pyes > 0.5 else ", no.")
        exact.append(got == want)
        if len(exact) <= SHOW:
            print(f"s={s} c={c} want {want!r} got {got!r} P(yes) {pyes:.2f}")
mean = lambda v: sum(v) / max(1, len(v))
res = dict(model=args.model, p_fit_on_fitting=mean(fit), n_fitting=len(fit), p_fit_on_other=mean(other),
           n_other=len(other), comparison_exact=mean(exact),
           acc=(sum(p > 0.5 for p in fit) + sum(p < 0.5 for p in other)) / max(1, len(fit) + len(other)))
print(json.dumps(res)); print("GATE", "PASS" if res["p_fit_on_fitting"] > 0.9 and res["p_fit_on_other"] < 0.1 else "fail")
