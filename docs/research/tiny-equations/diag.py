import sys, torch
sys.argv=[sys.argv[0]]+sys.argv[1:]
import recipe
from transformers import AutoModelForCausalLM
from society_trainer.tiny_model import build_tokenizer
torch.set_num_threads(1)
path=sys.argv[1]
tok=build_tokenizer(); model=AutoModelForCausalLM.from_pretrained(path).eval()
r=recipe.Rows(7,(0,0,1,0))
recipe.LOSS_ALL=True
for kind in (sys.argv[2].split(",") if len(sys.argv) > 2 else ("critic","summ")):
  m=r.row(kind); ids,lab=recipe.encode(tok,m)
  with torch.no_grad():
    logits=model(torch.tensor([ids])).logits[0]
  lp=torch.log_softmax(logits[:-1],-1)
  nll=-lp[torch.arange(len(ids)-1),torch.tensor(ids[1:])]
  out=[]
  for i in range(1,len(ids)):
    t=tok.decode([ids[i]])
    out.append(f"{t}" if nll[i-1]<0.5 else f"[{t}:{nll[i-1]:.1f}]")
  print("".join(out)); print()
