"""Verdict gate: P(".") (format 3: the line fits) after the sum, on teacher-forced society-half critic rows,
split by whether the line fits. usage: python verdictprobe.py MODEL (format-3 models)."""
import sys; sys.path.insert(0,'.')
import recipe2, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok=AutoTokenizer.from_pretrained(sys.argv[1]); m=AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
r=recipe2.Rows(999,0.35,0.6); r.pool=recipe2.T.space("society")
dot=tok.convert_tokens_to_ids("."); no=tok("，".replace("，",", no."),add_special_tokens=False)["input_ids"]
print(no)
yes_p=[];no_p=[]
for _ in range(40):
    ids,lab=recipe2.encode(tok,r.row("critic"))
    with torch.no_grad(): p=torch.softmax(m(torch.tensor([ids])).logits[0],-1)
    for i in range(2,len(ids)-1):
      if tok.decode([ids[i-1]])==" is " and tok.decode([ids[i-3]])=="+":
        nxt=tok.decode([ids[i+1]])
        (yes_p if nxt=="." else no_p).append(p[i,dot].item())
print("P('.') when yes", sum(yes_p)/len(yes_p), len(yes_p), " when no", sum(no_p)/len(no_p), len(no_p))
