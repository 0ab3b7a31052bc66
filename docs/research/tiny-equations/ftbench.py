"""Time one LoRA finetune step of the project (vendored run_finetune: TRL SFTTrainer + PEFT) on
the tiny model. usage: python ftbench.py MODEL DATASET.jsonl OUT [--epochs 2] [--lr 1e-3]
[--threads 1] [--batch 1]"""

from __future__ import annotations

import argparse
import json
import sys
import time

t_start = time.time()
sys.path.insert(0, "/work/scratch13/vendor/trainer")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--init-from", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    import trl  # noqa: F401

    from society_trainer.config import FinetuneConfig
    from society_trainer.finetune import run_finetune

    t_import = time.time() - t0
    cfg = FinetuneConfig(
        iteration=1,
        agent=0,
        role="generation",
        base_model=args.model,
        dataset=args.dataset,
        output_dir=args.out,
        init_from=args.init_from,
        method="lora",
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch,
        max_length=1024,
        gradient_checkpointing=False,
        save_steps=10_000,
        dtype="float32",
    )
    c0 = time.process_time()
    summary = run_finetune(cfg)
    print(
        json.dumps(
            {
                "import_s": round(t_import, 1),
                "process_s": round(time.time() - t_start, 1),
                "finetune_cpu_s": round(time.process_time() - c0, 1),
                **{k: summary.get(k) for k in ("examples", "steps", "firstLoss", "finalLoss",
                                                "trainSeconds", "seconds", "tokens")},
            }
        )
    )


if __name__ == "__main__":
    main()
