"""v3 verdict gate for format 4 (`..., c=61, off 14, no.`): on teacher-forced critic rows of the
SOCIETY half, P(fits) = P(token "0" right after "off "), split by whether the line fits; also the
top-1 accuracy of the off value, and P(", yes.") after the teacher-forced off value.
usage: python verdictprobe3.py MODEL [--rows 40]   (need P(fits) > 0.9 on fitting, < 0.1 on others)"""
import argparse, json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe3
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
ap = argparse.ArgumentParser(); ap.add_argument("model"); ap.add_argument("--rows", type=int, default=40)
args = ap.parse_args()
b = json.loads((Path(args.model) / "build.json").read_text())["args"]
recipe3.T.CHECK_FORMAT = b.get("check_format", 4); recipe3.T.SIGNED = not b.get("abs_off", False)
tok = AutoTokenizer.from_pretrained(args.model); m = AutoModelForCausalLM.from_pretrained(args.model).eval()
r = recipe3.Rows(999, 0.35, 0.6); r.pool = recipe3.T.space("society")
zero = tok("0", add_special_tokens=False)["input_ids"][0]
yes = tok(", yes.", add_special_tokens=False)["input_ids"][0]
fit, nofit, top1, yes_fit, yes_no = [], [], [], [], []
for _ in range(args.rows):
    ids, lab = recipe3.encode(tok, r.row("critic"))
    with torch.no_grad():
        p = torch.softmax(m(torch.tensor([ids])).logits[0], -1)
    for i in range(4, len(ids) - 1):
        if tok.decode(ids[i - 3:i + 1]).endswith("off "):
            is_fit = ids[i + 1] == zero
            (fit if is_fit else nofit).append(p[i, zero].item())
            top1.append(int(p[i].argmax().item() == ids[i + 1]))
        if ids[i + 1] in (yes, tok(", no.", add_special_tokens=False)["input_ids"][0]) and lab[i + 1] != -100:
            (yes_fit if ids[i + 1] == yes else yes_no).append(p[i, yes].item())
mean = lambda v: sum(v) / max(1, len(v))
res = dict(model=args.model, p_fit_on_fitting=mean(fit), n_fitting=len(fit), p_fit_on_other=mean(nofit),
           n_other=len(nofit), off_top1=mean(top1), p_yes_after_off_fitting=mean(yes_fit), p_yes_after_off_other=mean(yes_no))
print(json.dumps(res)); print("GATE", "PASS" if res["p_fit_on_fitting"] > 0.9 and res["p_fit_on_other"] < 0.1 else "fail")
