"""Gate for a v2 candidate: mean NLL (nats) per token class on fresh critic and summariser rows
of the SOCIETY half (never trained on), and one row printed with costly tokens marked.

usage: python diag2.py MODEL [--rows 64]
Classes: copy (numbers copied from the context: restated question, own answer, candidates, a,
b; summary numbers), compute (a*k, +b), verdict (yes/no), answer (after "Answer ").
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recipe2  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--show", type=int, default=1)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    rows = recipe2.Rows(12345, 0.35, 0.6)
    rows.pool = recipe2.T.space("society")
    nums = {str(n) for n in range(300)}
    copy_keys = {"Solve ", "+", "=", "You said ", "One says ", "Another says ", "A third says ",
                 " "}
    stats: dict[str, list[float]] = defaultdict(list)
    shown = 0
    for kind in ("critic", "summ"):
        for _ in range(args.rows):
            ids, lab = recipe2.encode(tok, rows.row(kind))
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0]
            lp = torch.log_softmax(logits[:-1], -1)
            nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
            out = []
            for i in range(1, len(ids)):
                t, prev = tok.decode([ids[i]]), tok.decode([ids[i - 1]])
                prev_prev = tok.decode([ids[i - 2]])
                v = nll[i - 1].item()
                out.append(t if v < 0.5 else f"[{t}:{v:.1f}]")
                if lab[i] == -100:
                    continue
                if t in nums and prev in copy_keys:
                    cls = "copy"
                elif t in nums and prev == "*":
                    cls = "copy"
                elif t in nums and prev == " is ":
                    cls = "compute"
                elif t in (", yes.", ", no.") or (t == "." and prev in nums and prev_prev == " is "):
                    cls = "verdict"
                elif t in nums and prev == "Answer ":
                    cls = "answer"
                else:
                    cls = "other"
                stats[f"{kind}:{cls}"].append(v)
            if shown < args.show:
                print("".join(out))
                print()
                shown += 1
        shown = 0
    for k, v in sorted(stats.items()):
        print(f"{k:16s} n={len(v):5d} mean {sum(v) / len(v):.3f} max {max(v):.2f}")


if __name__ == "__main__":
    main()
